"""A pytest plugin for projects that use js_host: a real host for your tests, on a free port.

Installed with js_host and loaded by pytest through its ``pytest11`` entry
point; importing it starts nothing and reads no settings. Fixtures:

``js_host_server(config_path, **settings)``
    Starts a host (``node <bundled js-host> <config> --port 0``) for the
    config, configures ``js_host.conf.settings`` to call it (``URL_OVERRIDE``
    pointing at it, plus ``settings``), and returns ``js_host.host.host``. The
    host is stopped and the settings are reset after the test.

``js_host``
    The same for the config named by the ``js_host_config`` ini option
    (relative to the rootdir), started once per session::

        # pytest.ini
        [pytest]
        js_host_config = host.config.js

        # test_render.py
        from js_host.function import Function

        def test_render(js_host):
            assert Function("render").call(name="World") == "<p>Hello, World!</p>"

The host's output goes to a logfile in pytest's temporary directory; a host
that fails to start fails the test with the end of it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

#: Seconds a host may take to listen.
START_TIMEOUT = 30.0
#: Seconds a host may take to exit after SIGTERM, before SIGKILL.
STOP_TIMEOUT = 10.0


class HostProcess:
    """``node <bin> <config> --json --port 0``, in its own process group, its output in ``log``."""

    def __init__(self, config: str | os.PathLike[str], *, log: Path, path_to_node: str = "node") -> None:
        from .conf import BUNDLED_BIN_PATH, resolve_node

        self.config = os.path.abspath(os.fspath(config))
        self.log = log
        self.cmd = [resolve_node(path_to_node), BUNDLED_BIN_PATH, self.config, "--json", "--port", "0"]
        self.process: subprocess.Popen[bytes] | None = None
        #: The root URL the host listens at (known once started).
        self.url = ""

    def start(self) -> HostProcess:
        from .config_status import node_env

        if not os.path.isfile(self.config):
            raise pytest.UsageError(f"js_host: the config file {self.config} does not exist.")
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                self.cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=os.path.dirname(self.config),
                env=node_env(),
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            status = self._status_line()
            if status is not None:
                config = status["config"]
                address = config.get("address")
                if address in (None, "", "0.0.0.0", "::"):  # every interface: call it on loopback
                    address = "127.0.0.1"
                host = f"[{address}]" if ":" in address else address
                self.url = f"http://{host}:{config['port']}"
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(
            f"js_host: the host for {self.config} did not start (`{' '.join(self.cmd)}`). "
            f"Its output:\n{self.log.read_text(errors='replace')[-4000:]}"
        )

    def _status_line(self) -> dict[str, Any] | None:
        first, newline, _ = self.log.read_text(errors="replace").partition("\n")
        if not newline:
            return None
        try:
            status = json.loads(first)
        except ValueError:
            return None
        return status if isinstance(status, dict) and isinstance(status.get("config"), dict) else None

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(STOP_TIMEOUT)
        except ProcessLookupError:
            pass


def configure_for(host: HostProcess, **settings: Any) -> Any:
    """Point js_host's settings at ``host``; returns the default host, connected."""
    from .conf import settings as js_settings
    from .host import get_default_host

    options = {
        "SOURCE_ROOT": os.path.dirname(host.config),
        "CONFIG_FILE": host.config,
        "URL_OVERRIDE": host.url,
        "CONNECT_ONCE_CONFIGURED": False,
        **settings,
    }
    js_settings.configure(**options)
    return get_default_host().connect()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("js_host_config", "The config file the js_host fixture runs (relative to the rootdir).")


@pytest.fixture
def js_host_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    """``js_host_server(config_path, **settings)``: a host for the config, js_host configured to
    call it; returns ``js_host.host.host``. Stopped, and the settings reset, after the test."""
    from .conf import settings as js_settings

    started: list[HostProcess] = []

    def start(config_path: str | os.PathLike[str], **settings: Any) -> Any:
        log = tmp_path_factory.mktemp("js_host") / "host.log"
        host = HostProcess(config_path, log=log).start()
        started.append(host)
        return configure_for(host, **settings)

    try:
        yield start
    finally:
        js_settings.reset()
        for host in started:
            host.stop()


@pytest.fixture(scope="session")
def _js_host_session_process(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HostProcess]:
    name = request.config.getini("js_host_config")
    if not name:
        raise pytest.UsageError(
            "The js_host fixture needs the js_host_config ini option (e.g. `js_host_config = "
            "host.config.js` in pytest.ini), or use js_host_server(config_path)."
        )
    config = Path(request.config.rootpath, name)
    host = HostProcess(config, log=tmp_path_factory.mktemp("js_host") / "host.log").start()
    try:
        yield host
    finally:
        host.stop()


@pytest.fixture
def js_host(_js_host_session_process: HostProcess) -> Iterator[Any]:
    """``js_host.host.host`` configured to call the session's host for ``js_host_config``."""
    from .conf import settings as js_settings

    try:
        yield configure_for(_js_host_session_process)
    finally:
        js_settings.reset()
