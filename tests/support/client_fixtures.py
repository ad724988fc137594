"""Fixtures for the Python client tests: both host implementations, configs on
free ports, managers in a private runtime dir (stopped after each test), and a
small recording HTTP server that speaks the host protocol.

A plugin: tests/conftest.py registers it, test modules name these fixtures as
parameters and never import them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from js_host import verbosity
from js_host.conf import settings
from js_host.manager import JSHostManager
from tests.support.client import bin_setting, config_port, write_config
from tests.support.processes import (
    BUNDLED_BIN,
    HOST_KINDS,
    NodeProcess,
    free_port,
    kind_config,
    suite_processes,
    wait_for_new_processes_to_end,
)
from tests.support.recording_server import RecordingServer
from tests.support.threaded_server import closing_servers


@pytest.fixture(params=sorted(HOST_KINDS))
def impl(request: pytest.FixtureRequest) -> str:
    """Each client test runs against the bundled host, js-host 0.11 from npm, and the
    bundled host with a pool of workers ("pool")."""
    if request.param != "npm-0.11" and not BUNDLED_BIN.exists():
        pytest.skip(f"the bundled host {BUNDLED_BIN} does not exist yet")
    return request.param


@pytest.fixture
def client_settings() -> Iterator[Callable[..., None]]:
    """``configure(**kw)`` with SILENT output; the settings are reset after the test."""

    def configure(**kw: Any) -> None:
        kw.setdefault("VERBOSITY", verbosity.SILENT)
        settings.configure(**kw)

    yield configure
    settings.reset()


@pytest.fixture
def host_config(tmp_path: Path) -> Path:
    """A config file on a free port."""
    return write_config(tmp_path, port=free_port())


@pytest.fixture
def running_host(impl: str, host_config: Path, start_host: Callable[..., NodeProcess]) -> NodeProcess:
    """A host of ``impl`` running ``host_config`` at the config's port."""
    return start_host(host_config, "--port", str(config_port(host_config)), impl=impl)


@pytest.fixture
def configured(
    impl: str, running_host: NodeProcess, host_config: Path, client_settings: Callable[..., None]
) -> NodeProcess:
    """The settings point at ``running_host`` (connected)."""
    client_settings(SOURCE_ROOT=str(host_config.parent), **bin_setting(impl))
    return running_host


@pytest.fixture
def manager_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, impl: str) -> Iterator[dict[str, Any]]:
    """A private runtime dir and a config on a free port (short disconnectTimeout).

    Every manager started for that config is stopped after the test, and the
    test waits for its processes to be gone.
    """
    runtime = tmp_path / "runtime"
    monkeypatch.setenv("JS_HOST_RUNTIME_DIR", str(runtime))
    before = suite_processes()
    config = write_config(tmp_path, port=free_port(), disconnectTimeout=300, **kind_config(impl))
    yield {
        "config": config,
        "runtime": runtime,
        "settings": {"SOURCE_ROOT": str(tmp_path), "USE_MANAGER": True, **bin_setting(impl)},
    }
    settings.reset()
    try:
        manager = JSHostManager(str(config), bin_path=bin_setting(impl).get("BIN_PATH"))
        if manager.is_running():
            manager.stop()
    except Exception:
        pass
    wait_for_new_processes_to_end(before)


@pytest.fixture
def recording_server() -> Iterator[Callable[..., RecordingServer]]:
    def server(functions: list[str] | None = None, **kw: Any) -> RecordingServer:
        return RecordingServer(functions or ["hello_world", "echo"], **kw)

    with closing_servers(server) as make:
        yield make
