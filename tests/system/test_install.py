"""What a new user gets from ``pip install``: the wheel, built from this checkout and installed
in a fresh virtual environment (no system site-packages, its dependencies from the package
index), runs the bundled host and ``js-host-proxy serve`` from an empty folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

import js_host
from tests.support.processes import ROOT, free_port
from tests.support.proxy import Server, call_path

#: What the wheel is built from (what docker/proxy.Dockerfile copies too).
SOURCES = ["setup.py", "pyproject.toml", "README.md", "js_host", "js_host_proxy"]

HOST_CONFIG = """module.exports = {
  functions: {
    hello_world: function(data, cb) { cb(null, 'Hello, ' + (data.name || 'World') + '!'); }
  }
};
"""


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{cmd} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel of this checkout and its proxy extra installed."""
    base = tmp_path_factory.mktemp("install")
    # Built from a copy: an in-tree build would leave build/ and *.egg-info in the checkout.
    source = base / "source"
    source.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "node_modules", "test", "*.pyc")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=skip)
        else:
            shutil.copy2(ROOT / name, source / name)
    wheels = base / "wheels"
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, source],
        timeout=300,
    )
    (wheel,) = wheels.glob("js_host_server-*.whl")
    env = base / "venv"
    run([sys.executable, "-m", "venv", env], timeout=120)
    pip = [str(env / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    run([*pip, "install", f"{wheel}[proxy]"], timeout=600)
    return env


def clean_env() -> dict[str, str]:
    """The environment without what points at this checkout or configures the proxy."""
    prefixes = ("PYTHON", "JS_HOST_", "GUNICORN", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}


@pytest.mark.timeout(900)
def test_the_installed_wheel_runs_the_host_and_serves_the_proxy_from_an_empty_folder(
    venv: Path, tmp_path: Path
) -> None:
    python = str(venv / "bin" / "python")
    empty = tmp_path / "empty"
    empty.mkdir()
    env = clean_env()
    where = run([python, "-c", "import js_host, js_host_proxy; print(js_host.__file__)"], cwd=empty, env=env)
    assert where.stdout.startswith(str(venv)), where.stdout
    version = run([python, "-m", "js_host", "--version"], cwd=empty, env=env)
    assert version.stdout.strip() == js_host.__version__

    config = tmp_path / "app" / "host.config.js"
    config.parent.mkdir()
    config.write_text(HOST_CONFIG)
    host_port, proxy_port = free_port(), free_port()
    host = Server(
        [python, "-m", "js_host", str(config), "--port", str(host_port)],
        log=tmp_path / "host.log",
        env=env,
        cwd=empty,
    )
    serve = [str(venv / "bin" / "js-host-proxy"), "serve", "--upstream", f"http://127.0.0.1:{host_port}"]
    proxy = Server(
        [*serve, "--bind", f"127.0.0.1:{proxy_port}", "--workers", "1", "--cache", "memory://"],
        log=tmp_path / "proxy.log",
        env=env,
        cwd=empty,
    )
    try:
        host.start(host_port)
        proxy.start(proxy_port, ready=lambda: "Booting worker" in proxy.log)
        status = requests.get(f"http://127.0.0.1:{proxy_port}/status", timeout=10)
        assert status.status_code == 200 and status.json()["type"] == "Host", status.text
        path, body = call_path("hello_world", {"name": "pip"})
        answer = requests.post(f"http://127.0.0.1:{proxy_port}{path}", data=body, timeout=10)
        assert (answer.status_code, answer.text) == (200, "Hello, pip!")
    finally:
        proxy.stop()
        host.stop()
    # The packaged settings ran (their on_starting hook logs this line), and nothing was left
    # in the folder serve started from.
    assert f"js-host-proxy: upstream http://127.0.0.1:{host_port}" in proxy.log
    assert list(empty.iterdir()) == []
