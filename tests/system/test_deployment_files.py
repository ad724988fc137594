"""The monitoring and deployment examples, checked without a cluster or a Grafana:

- docs/grafana-dashboard.json parses, and every metric its queries use is one the code
  defines (the host's, the proxy's or the client's);
- docker/kubernetes.yaml parses: each server has liveness and readiness probes on its
  ``/health`` (or ``/ready``), every port a probe or a Service names exists, the Services
  select the pods, the metrics Services are ready for a ServiceMonitor (the one in
  docs/kubernetes.md selects them), the proxy reads every variable it is given, and the
  host's command is one the real CLI accepts;
- compose.yaml's health checks are the images' and use ``/health``.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import BUNDLED_BIN, NODE_ENV, ROOT

yaml = pytest.importorskip("yaml")

DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
KUBERNETES = ROOT / "docker" / "kubernetes.yaml"
KUBERNETES_DOC = ROOT / "docs" / "kubernetes.md"
#: Where metrics are defined: the host's (hand-written), the proxy's and the client's.
METRIC_SOURCES = [
    *sorted((ROOT / "js_host" / "node" / "lib").glob("*.js")),
    *sorted((ROOT / "js_host_proxy").glob("*.py")),
    ROOT / "js_host" / "metrics.py",
]
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def defined(name: str, source: str) -> bool:
    """Whether ``name`` is defined in ``source``: quoted as it is, or (prometheus_client
    adds ``_total`` to counters) without ``_total``."""
    names = {name, name.removesuffix("_total")}
    return any(f'"{n}"' in source or f"'{n}'" in source or f"`{n}`" in source for n in names)


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def test_dashboard_is_grafana_json_with_the_main_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 30
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    titles = " | ".join(p["title"] for p in panels).lower()
    for wanted in ("hit ratio", "p50 per function", "p99 per function", "worker restarts", "queue length"):
        assert wanted in titles, f"no {wanted!r} panel in {DASHBOARD}"
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["targets"], panel["title"]
    variables = [v["name"] for v in dashboard["templating"]["list"]]
    assert "datasource" in variables


def test_dashboard_queries_use_only_metrics_the_code_defines() -> None:
    sources = "\n".join(path.read_text() for path in METRIC_SOURCES if path.exists())
    used = set()
    for title, expr in dashboard_queries():
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), (title, expr)
        for name in re.findall(r"\bjs_host_[a-z0-9_]+", expr):
            for suffix in HISTOGRAM_SUFFIXES:
                if name.endswith(suffix) and "_seconds" in name:
                    name = name.removesuffix(suffix)
            used.add(name)
    assert used
    missing = sorted(name for name in used if not defined(name, sources))
    assert not missing, f"{DASHBOARD} uses metrics no source defines: {missing}"


def kubernetes_objects() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(KUBERNETES.read_text()) if doc]


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in kubernetes_objects() if o["kind"] == kind}


def test_kubernetes_servers_are_probed_on_their_health_endpoints() -> None:
    deployments = by_kind("Deployment")
    assert {"js-host", "js-host-proxy", "js-host-redis"} <= set(deployments)
    for name in ("js-host", "js-host-proxy"):
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe in ("livenessProbe", "readinessProbe"):
            get = container[probe]["httpGet"]
            assert get["path"] in ("/health", "/ready", "/health?ready"), (name, probe, get)
            assert get["port"] in ports, (name, probe, get)
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        _repo, _, tag = container["image"].partition(":")
        assert re.fullmatch(r"\d+\.\d+\.\d+", tag), f"{name}: image {container['image']} is not pinned"
    # The proxy's readiness is the upstreams' (its liveness only its own).
    (proxy,) = deployments["js-host-proxy"]["spec"]["template"]["spec"]["containers"]
    assert proxy["readinessProbe"]["httpGet"]["path"] in ("/ready", "/health?ready")


def test_the_kubernetes_host_command_is_accepted_by_the_host() -> None:
    """The host container's args: the image's program and config file (mapped to the
    repository, as tests/system/test_docker.py does), options the CLI accepts (checked with
    ``--config``, which reads the config and starts nothing)."""
    (container,) = by_kind("Deployment")["js-host"]["spec"]["template"]["spec"]["containers"]
    paths = {"/opt/js-host/": f"{ROOT / 'js_host' / 'node'}/", "/app/": f"{ROOT / 'example'}/"}
    args = []
    for arg in container["args"]:
        for image_path, local in paths.items():
            arg = arg.replace(image_path, local)
        args.append(arg)
    assert args[:3] == ["node", str(BUNDLED_BIN), str(ROOT / "example" / "host.config.js")]
    if not (ROOT / "example" / "node_modules").exists():
        pytest.skip("the example's npm packages are not installed (scripts/install.sh)")
    command = [*args, "--config"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False, env=NODE_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["type"] == "Host"


def test_kubernetes_services_select_their_pods_and_ports() -> None:
    deployments = by_kind("Deployment")
    services = by_kind("Service")
    for name, service in services.items():
        selector = service["spec"]["selector"]
        matching = [
            d
            for d in deployments.values()
            if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matching) == 1, f"Service {name} selects {len(matching)} Deployments"
        (deployment,) = matching
        assert deployment["spec"]["selector"]["matchLabels"].items() <= selector.items() or (
            selector.items() <= deployment["spec"]["selector"]["matchLabels"].items()
        )
        container_ports = {
            p["name"]: p["containerPort"]
            for c in deployment["spec"]["template"]["spec"]["containers"]
            for p in c["ports"]
        }
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            assert target in container_ports or target in container_ports.values(), (name, port)
    # The application calls the proxy's Service; the proxy calls the hosts' one.
    (proxy,) = deployments["js-host-proxy"]["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in proxy["env"]}
    assert (
        env["JS_HOST_PROXY_UPSTREAM"] == f"http://js-host:{services['js-host']['spec']['ports'][0]['port']}"
    )
    redis_port = services["js-host-redis"]["spec"]["ports"][0]["port"]
    assert env["JS_HOST_PROXY_CACHE"].startswith(f"redis://js-host-redis:{redis_port}/")
    known = (ROOT / "js_host_proxy" / "gunicorn_settings.py").read_text() + (
        ROOT / "js_host_proxy" / "config.py"
    ).read_text()
    for key in env:
        suffix = key.removeprefix("JS_HOST_PROXY_")
        assert f'"{suffix}"' in known or key in known, f"the proxy does not read {key}"


def service_monitor() -> dict[str, Any]:
    blocks = re.findall(r"```yaml\n(.*?)```", KUBERNETES_DOC.read_text(), re.S)
    monitors = [doc for doc in map(yaml.safe_load, blocks) if doc and doc.get("kind") == "ServiceMonitor"]
    assert len(monitors) == 1, f"{KUBERNETES_DOC} should show one ServiceMonitor"
    return monitors[0]


def test_the_service_monitor_scrapes_the_metrics_services() -> None:
    monitor = service_monitor()
    labels = monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["endpoints"]
    scraped = {
        name: service
        for name, service in by_kind("Service").items()
        if labels.items() <= service["metadata"]["labels"].items()
    }
    assert set(scraped) == {"js-host-metrics", "js-host-proxy-metrics"}
    for name, service in scraped.items():
        assert service["spec"].get("clusterIP") == "None", f"{name}: headless, so that every pod is scraped"
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}, name
    assert endpoint["path"] == "/metrics"


def healthcheck_of(dockerfile: Path) -> list[str]:
    """The command of a Dockerfile's ``HEALTHCHECK ... CMD [...]`` (continuations joined)."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    (line,) = [line for line in text.splitlines() if line.startswith("HEALTHCHECK")]
    return json.loads(line[line.index("CMD ") + 4 :])


def test_health_checks_use_health_in_the_images_and_compose() -> None:
    """compose.yaml's health checks (what `depends_on: service_healthy` waits for) are the
    images' HEALTHCHECKs, which tests/system/test_docker.py runs: both on `/health`."""
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())["services"]
    for name in ("host", "proxy"):
        image = healthcheck_of(ROOT / "docker" / f"{name}.Dockerfile")
        assert any("/health" in arg for arg in image), f"{name}.Dockerfile: {image}"
        assert compose[name]["healthcheck"]["test"] == ["CMD", *image], name


def test_kubernetes_doc_links_exist() -> None:
    text = KUBERNETES_DOC.read_text()
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        if "://" not in link:
            assert (KUBERNETES_DOC.parent / link).resolve().exists(), link
    assert Path(KUBERNETES).exists()
