"""The development manager: a detached Node process that spawns hosts on demand.

``node <bin> <config> --manager --detached`` starts it on the config's address
and port (default 127.0.0.1:9009); it outlives the Python process. Hosts are
pooled by config path: ``/host/status``, ``/host/start``, ``/host/connect``
(which returns a connection id) and ``/host/disconnect``. The manager stops a
host ``disconnectTimeout`` ms after its last connection closes, and exits when
no host is left. Every request carries ``Authorization: Bearer <secret>``
(see :mod:`js_host.runtime`); js-host 0.11 from npm ignores it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
from typing import Any
from urllib.parse import urlsplit

from . import verbosity
from .conf import resolve_bin, resolve_config_file, resolve_node, settings
from .exceptions import ConnectionError, ProcessError, UnexpectedResponse  # noqa: A004 - the spec's name
from .log import emit
from .runtime import manager_secret
from .status import node_env, read_config_status
from .transport import Response, pool

logger = logging.getLogger(__name__)

#: Seconds to wait for the manager's answers (starting a host can take a while).
REQUEST_TIMEOUT = 30.0
#: Seconds to wait for a detached manager to report that it listens.
START_TIMEOUT = 30.0


class JSHostManager:
    """A client of the manager that serves ``config_file`` (default: settings.CONFIG_FILE)."""

    expected_type_name = "Manager"

    def __init__(
        self,
        config_file: str | None = None,
        *,
        path_to_node: str | None = None,
        bin_path: str | None = None,
    ) -> None:
        root = settings.source_root
        self.config_file = (
            resolve_config_file(config_file, root) if config_file is not None else settings.get_config_file()
        )
        self.path_to_node = resolve_node(path_to_node) if path_to_node else settings.get_path_to_node()
        self.bin_path = resolve_bin(bin_path, root, explicit=True) if bin_path else settings.get_path_to_bin()

    def __repr__(self) -> str:
        return f"<JSHostManager {self.get_name()}>"

    def get_name(self) -> str:
        return f"Manager [{self.get_url()}] for {self.config_file}"

    def get_path_to_bin(self) -> str:
        return self.bin_path

    def get_path_to_config_file(self) -> str:
        return self.config_file

    def get_status(self) -> dict[str, Any]:
        """The status the manager reports for this config (read with ``--config --manager``)."""
        return read_config_status(self.path_to_node, self.bin_path, self.config_file, manager=True)

    def get_config(self) -> dict[str, Any]:
        return self.get_status()["config"]

    def get_url(self) -> str:
        # The manager listens on the config's address and port: read them from the
        # host's status (already cached by the host) rather than run node once more.
        config = read_config_status(self.path_to_node, self.bin_path, self.config_file)["config"]
        return f"http://{config.get('address', '127.0.0.1')}:{int(config.get('port', 9009))}"

    # HTTP

    def _send(self, method: str, path: str, data: dict[str, Any] | None = None) -> Response:
        parts = urlsplit(self.get_url())
        body = b"" if data is None else json.dumps(data).encode()
        headers = f"Authorization: Bearer {manager_secret()}\r\n".encode()
        if data is not None:
            headers += b"Content-Type: application/json\r\n"
        return pool.request(
            parts.hostname or "127.0.0.1",
            parts.port or 80,
            method,
            path,
            body,
            headers=headers,
            timeout=REQUEST_TIMEOUT,
        )

    def _post_json(self, path: str, data: dict[str, Any], action: str) -> dict[str, Any]:
        response = self._send("POST", path, data)
        if response.status != 200:
            raise UnexpectedResponse(
                f"{action} failed: {self.get_name()} answered {response.status} to POST {path}: "
                f"{response.text.strip()}"
            )
        try:
            return json.loads(response.body)
        except ValueError as err:
            raise UnexpectedResponse(
                f"{action}: {self.get_name()} answered POST {path} with invalid JSON: {response.text!r}"
            ) from err

    def request_status(self) -> dict[str, Any] | None:
        """GET /status from the running manager, or None if nothing answers there."""
        try:
            response = self._send("GET", "/status")
        except (ConnectionError, UnexpectedResponse):
            return None
        if response.status != 200:
            if response.status == 401:
                logger.warning("%s refused the secret: %s", self.get_name(), response.text.strip())
            return None
        try:
            status = json.loads(response.body)
        except ValueError:
            return None
        return status if isinstance(status, dict) else None

    def is_running(self) -> bool:
        status = self.request_status()
        return bool(status) and status.get("type") == self.expected_type_name

    # Process

    def start(self) -> JSHostManager:
        """Spawn the detached manager unless one already runs; returns self."""
        if self.is_running():
            return self
        # Make sure the port is not a stale cached one (see js_host.status).
        read_config_status(self.path_to_node, self.bin_path, self.config_file, fresh=True)
        if self.is_running():
            return self
        cmd = [self.path_to_node, self.bin_path, self.config_file, "--manager", "--detached"]
        # The intermediate process exits once the detached manager listens; its
        # output goes to files (never to a pipe nobody reads once it has exited).
        with tempfile.TemporaryFile() as out:
            try:
                code = subprocess.call(
                    cmd,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=node_env(),
                    cwd=os.path.dirname(self.config_file),
                    start_new_session=True,
                    timeout=START_TIMEOUT,
                )
            except subprocess.TimeoutExpired as err:
                raise ProcessError(f"{' '.join(cmd)} did not report within {START_TIMEOUT} s") from err
            except OSError as err:
                raise ProcessError(f"Cannot run {' '.join(cmd)}: {err}") from err
            out.seek(0)
            output = out.read().decode("utf-8", "replace").strip()
        if code == 0 and self._wait_running(2.0):
            emit(logger, verbosity.PROCESS_START, "Started %s", self.get_name())
            return self
        # Another process may have started it at the same moment (EADDRINUSE for us).
        if self._wait_running(1.0):
            return self
        if "EADDRINUSE" in output:
            raise ProcessError(
                f"Cannot start {self.get_name()}: another process listens on {self.get_url()}. "
                "Set the `port` property of your config file to a free port, or stop that process."
            )
        raise ProcessError(f"Cannot start {self.get_name()} with `{' '.join(cmd)}` (exit {code}):\n{output}")

    def _wait_running(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while True:
            if self.is_running():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def stop(self) -> None:
        """Ask the manager to stop its hosts and exit."""
        response = self._send("POST", "/manager/stop")
        if response.status != 200:
            raise UnexpectedResponse(
                f"Stopping {self.get_name()} failed: {response.status}: {response.text.strip()}"
            )
        emit(logger, verbosity.PROCESS_STOP, "Stopped %s", self.get_name())

    # Hosts, pooled by config path

    def request_host_status(self, config_file: str) -> dict[str, Any]:
        return self._post_json("/host/status", {"config": config_file}, "Reading a managed host's status")

    def start_host(self, config_file: str) -> dict[str, Any]:
        return self._post_json("/host/start", {"config": config_file}, f"Starting a host for {config_file}")

    def stop_host(self, config_file: str) -> dict[str, Any]:
        return self._post_json("/host/stop", {"config": config_file}, f"Stopping the host for {config_file}")

    def restart_host(self, config_file: str) -> dict[str, Any]:
        return self._post_json(
            "/host/restart", {"config": config_file}, f"Restarting the host for {config_file}"
        )

    def open_connection_to_host(self, config_file: str) -> dict[str, Any]:
        return self._post_json(
            "/host/connect", {"config": config_file}, f"Connecting to the host for {config_file}"
        )

    def close_connection_to_host(self, config_file: str, connection: str) -> dict[str, Any]:
        return self._post_json(
            "/host/disconnect",
            {"config": config_file, "connection": connection},
            f"Disconnecting from the host for {config_file}",
        )
