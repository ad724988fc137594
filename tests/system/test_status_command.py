"""``python -m js_host status`` and ``js-host-proxy status`` against real servers: a pooled
bundled host after known calls (its workers, calls by status, slowest functions, last
errors without their messages), a host whose config sends them, js-host 0.11 from npm (no
/health, no /metrics: said so), the proxy under gunicorn (hit ratio, upstreams), the host
found from its config file, nothing listening (a line, not a traceback), and without
prometheus_client (the rest still shown)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

from js_host.function import Function
from js_host.host import JSHost
from js_host.metrics_text import histogram_quantile
from tests.support.client import FUNCTIONS_JS, write_config
from tests.support.processes import BUNDLED_BIN, NPM_BIN, ROOT, NodeProcess, free_port
from tests.support.servers import Server, base_env
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def pool_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A bundled host with 2 workers, after 3 calls of echo and 1 failed call of double."""
    folder = tmp_path_factory.mktemp("status-pool")
    process = NodeProcess(BUNDLED_BIN, FUNCTIONS_JS, "--port", "0", "--workers", "2", logdir=folder).start()
    client = JSHost(str(FUNCTIONS_JS), url_override=process.url, bin_path=str(BUNDLED_BIN))
    wait_for(lambda: getattr(client.get_workers(), "ready", 0) == 2, what="both workers ready")
    for n in range(3):
        Function("echo", host=client).call(n=n)
    with pytest.raises(Exception, match="No number was provided"):
        Function("double", host=client).call()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def npm_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    if not NPM_BIN.exists():
        pytest.skip("js-host 0.11 from npm is not installed (scripts/install.sh)")
    process = NodeProcess(NPM_BIN, FUNCTIONS_JS, "--port", "0", logdir=tmp_path_factory.mktemp("npm")).start()
    yield process
    process.stop()


def status(*args: str, module: str = "js_host", prelude: str = "", env: dict[str, str] | None = None):
    """Run ``python -m <module> status <args>``; (exit status, output lines)."""
    code = "\n".join(
        [
            "import sys",
            prelude,
            f"from {module}.__main__ import main",
            "sys.exit(main(['status', *sys.argv[1:]]))",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=base_env(**(env or {})),
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in result.stderr and "Error" not in result.stderr, result.stderr
    return result.returncode, result.stdout.splitlines()


def section(lines: list[str], start: str) -> list[str]:
    """The lines of the server whose line starts with ``start``, up to the next server."""
    (first,) = [i for i, line in enumerate(lines) if line.startswith(start)]
    rest = [i for i in range(first + 1, len(lines)) if not lines[i].startswith(" ")]
    return lines[first : rest[0] if rest else len(lines)]


def test_a_pooled_host_and_an_npm_host(pool_host: NodeProcess, npm_host: NodeProcess) -> None:
    missing = f"http://127.0.0.1:{free_port()}"
    code, lines = status("--host", f"{pool_host.url},{npm_host.url}", "--proxy", missing)
    assert code == 1  # the proxy did not answer
    assert lines[0].startswith("js-host status, ")

    pool = section(lines, f"host {pool_host.url}:")
    assert re.fullmatch(rf"host {pool_host.url}: up, healthy \(js-host [\d.]+, code version \w+\)", pool[0])
    assert "  functions: crash, double, echo, hello_world, pid, sleep" in pool
    workers = r"  workers: 2 ready of 2, 0 busy, queue 0; restarts 0; code loaded "
    assert any(re.match(workers, line) for line in pool)
    assert "  calls: 4 (200: 3, 500: 1)" in [x.split(";")[0] for x in pool]
    heading = pool.index("  slowest functions (2 called, by mean time):")
    assert {pool[heading + 2].split()[0], pool[heading + 3].split()[0]} == {"echo", "double"}
    assert pool[heading + 2].split()[-1] in ("3", "1")
    # Each last error by its request id and kind; its message only in the host's logfile.
    (request_id,) = [error["requestId"] for error in last_errors(pool_host.url)]
    heading = pool.index("  last errors (1, newest last):")
    assert re.fullmatch(rf"    \S+Z  double  500  Error  request id {request_id}", pool[heading + 1])
    assert pool[heading + 2] == "    their messages are in the host's logfile, under each request id"
    assert not any("No number was provided" in line for line in lines)

    npm = section(lines, f"host {npm_host.url}:")
    assert npm == [
        f"host {npm_host.url}: up, no /health (js-host 0.11.7)",
        "  functions: crash, double, echo, hello_world, pid, sleep",
        "  workers: none (a single process)",
        "  metrics: this host has no /metrics (it answered 404, as js-host 0.11 from npm does)",
        "  last errors: not reported by this host (no lastErrors in /status)",
    ]
    assert lines[-1].startswith(f"proxy {missing}: not reachable (")


def test_the_messages_of_a_host_that_sends_them(tmp_path: Path) -> None:
    """A host whose config sets lastErrorMessages: each error's message under its line."""
    config = write_config(tmp_path, lastErrorMessages=True)
    process = NodeProcess(BUNDLED_BIN, config, "--port", "0", logdir=tmp_path).start()
    try:
        client = JSHost(str(config), url_override=process.url, bin_path=str(BUNDLED_BIN))
        with pytest.raises(Exception, match="No number was provided"):
            Function("double", host=client).call()
        (request_id,) = [error["requestId"] for error in last_errors(process.url)]
        code, lines = status("--host", process.url)
    finally:
        process.stop()
    assert code == 0, lines
    heading = lines.index("  last errors (1, newest last):")
    assert re.fullmatch(rf"    \S+Z  double  500  Error  request id {request_id}", lines[heading + 1])
    assert lines[heading + 2] == "      Error: No number was provided"
    assert not any("logfile" in line for line in lines)


def last_errors(url: str) -> list[dict[str, object]]:
    with urllib.request.urlopen(f"{url}/status?errors", timeout=5) as answer:
        return json.load(answer)["lastErrors"]


def test_the_host_is_found_from_its_config_file(pool_host: NodeProcess, tmp_path: Path) -> None:
    config = write_config(tmp_path, port=pool_host.status["config"]["port"])
    code, lines = status("--config", str(config))
    assert code == 0, lines
    assert lines[1].startswith(f"host {pool_host.url}: up, healthy")


def test_nothing_listening_is_a_line_and_exit_status_1() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, lines = status("--host", url)
    assert code == 1
    refused = "[Errno 111] Connection refused"
    assert lines[1:] == [f"host {url}: not reachable (Cannot connect to {url}: {refused})"]


def test_without_prometheus_client_the_rest_is_shown(pool_host: NodeProcess) -> None:
    prelude = "sys.modules['prometheus_client'] = sys.modules['prometheus_client.parser'] = None"
    code, lines = status("--host", pool_host.url, prelude=prelude)
    assert code == 0
    assert "  metrics: /metrics not read: pip install js-host-server[metrics] (prometheus_client)" in lines
    assert any(line.startswith("  workers: 2 ready of 2") for line in lines)


def test_the_proxy_status_command(
    pool_host: NodeProcess, start_gunicorn: Callable[..., tuple[str, Server]]
) -> None:
    """js-host-proxy status with the proxy's own settings: its URL from JS_HOST_PROXY_BIND,
    the hosts from JS_HOST_PROXY_UPSTREAM; one MISS then one HIT: 50%."""
    proxy_url, _server = start_gunicorn(upstream=pool_host.url)
    client = JSHost(str(FUNCTIONS_JS), url_override=proxy_url, bin_path=str(BUNDLED_BIN))
    text = f"status-{free_port()}"
    assert Function("echo", host=client).call(text=text) == text
    assert Function("echo", host=client).call(text=text) == text
    bind = proxy_url.removeprefix("http://")
    code, lines = status(
        module="js_host_proxy", env={"JS_HOST_PROXY_BIND": bind, "JS_HOST_PROXY_UPSTREAM": pool_host.url}
    )
    assert code == 0, lines
    assert lines[1].startswith(f"host {pool_host.url}: up, healthy")
    proxy = section(lines, f"proxy {proxy_url}:")
    assert proxy[0] == f"proxy {proxy_url}: up, ready"
    ratio = r"  requests: \d+, hit ratio 50\.0% \(HIT: 1, MISS: 1"
    assert any(re.match(ratio, line) for line in proxy), proxy
    assert f"  upstreams: {pool_host.url} up" in proxy


def test_quantiles_are_interpolated_as_promql_does() -> None:
    buckets = [(0.1, 50.0), (0.5, 90.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.3)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.05)
    assert histogram_quantile(0.99, [(1.0, 1.0), (float("inf"), 2.0)]) == 1.0  # at least the last bound
    assert histogram_quantile(0.5, [(1.0, 0.0), (float("inf"), 0.0)]) is None
