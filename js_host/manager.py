"""The development manager: a detached Node process that spawns hosts on demand.

``node <bin> <config> --manager --detached`` starts it on the config's address
and port (default 127.0.0.1:9009); it outlives the Python process. Hosts are
pooled by config path: ``/host/status``, ``/host/start``, ``/host/connect``
(which returns a connection id) and ``/host/disconnect``. The manager stops a
host ``disconnectTimeout`` ms after its last connection closes, and exits when
no host is left. When the js-host binary announces it (``"auth"`` in the
status of ``--config --manager``), the manager must prove that it knows the
user's secret before each request, which is then signed for one use (see
:mod:`js_host.manager_auth`); js-host 0.11 from npm has no authentication, and
nothing secret is sent to it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from . import verbosity
from .conf import settings
from .config_status import read_config_status
from .endpoint import DEFAULT_ADDRESS, config_url, is_loopback, parse_status, request
from .exceptions import (
    ConfigError,
    ConnectionError,  # noqa: A004 - the spec's name
    FunctionTimeout,
    ProcessError,
    UnexpectedResponse,
)
from .log import emit
from .manager_auth import AUTH_NAME, NotTheManager, exchange
from .manager_spawn import spawn
from .runtime import manager_secret, secret_path
from .transport import Response

logger = logging.getLogger(__name__)

#: Seconds to wait for the manager's answers (starting a host can take a while).
REQUEST_TIMEOUT = 30.0
#: Seconds to wait for the answer to GET /status: a manager answers at once; whatever
#: holds the port without answering is not one.
STATUS_TIMEOUT = 5.0
#: Seconds to wait for a detached manager to report that it listens.
START_TIMEOUT = 30.0


# The manager URLs whose failed proof was logged (see JSHostManager._not_the_manager_error).
_refused_logged: set[str] = set()
_refused_lock = threading.Lock()


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
        self.config_file, self.path_to_node, self.bin_path = settings.resolve_paths(
            config_file, path_to_node, bin_path
        )

    def __repr__(self) -> str:
        # Nothing is read or run for a repr (get_name() reads the config file with node).
        return f"<JSHostManager {self.config_file}>"

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
        return config_url(self._listen_config())

    def _listen_config(self) -> dict[str, Any]:
        # The manager's status gives both its address and port and whether it
        # authenticates itself: one node run (cached), as a managed host reads none.
        return self.get_status()["config"]

    # HTTP

    def _send(
        self, method: str, path: str, data: dict[str, Any] | None = None, *, timeout: float = REQUEST_TIMEOUT
    ) -> Response:
        status = self.get_status()
        config = status["config"]
        address = str(config.get("address", DEFAULT_ADDRESS))
        if not is_loopback(address):
            # A manager spawns processes as this user: only one on this machine is ever asked to.
            raise ConfigError(
                f"The manager for {self.config_file} would listen on {address!r}, which is not a loopback "
                "address (127.0.0.1, ::1, localhost); js_host talks to a manager on this machine only. "
                f"Set `address` in {self.config_file} to '127.0.0.1', or run the host yourself "
                "without USE_MANAGER (managers are for development)."
            )
        body = b"" if data is None else json.dumps(data).encode()
        headers = b"" if data is None else b"Content-Type: application/json\r\n"
        url = config_url(config)
        if not self._needs_proof(status):
            return request(url, method, path, body, headers=headers, timeout=timeout)
        try:
            return exchange(
                url,
                method,
                path,
                body,
                secret=manager_secret(),
                headers=headers,
                timeout=timeout,
                challenge_timeout=STATUS_TIMEOUT,
            )
        except NotTheManager as err:
            raise self._not_the_manager_error(url, str(err)) from err

    def _needs_proof(self, status: dict[str, Any]) -> bool:
        """Whether the manager this client would start authenticates itself (the trusted
        binary says so in its ``--config --manager`` status; js-host 0.11's does not)."""
        auth = status.get("auth")
        if auth is None:
            return False
        if auth != AUTH_NAME:
            raise ConfigError(
                f"{self.bin_path} announces the manager authentication {auth!r}, which this js_host does not "
                f"know (it speaks {AUTH_NAME!r}): install matching versions of js_host and js-host."
            )
        return True

    def _not_the_manager_error(self, url: str, reason: str) -> ProcessError:
        netloc = urlsplit(url).netloc
        message = (
            f"Something else holds {netloc} (the `address` and `port` of {self.config_file}): it is not "
            "your js-host manager (it could not prove that it knows the secret in "
            f"{os.path.abspath(secret_path())}: {reason}). It may be another user's process or another "
            "program, a manager started with another runtime dir (JS_HOST_RUNTIME_DIR, XDG_RUNTIME_DIR or "
            f"TMPDIR) or one without authentication (js-host 0.11): stop that process, or set `port` in "
            f"{self.config_file} to a free port. If it is your own manager of another runtime dir, run this "
            "process with the same JS_HOST_RUNTIME_DIR instead."
        )
        with _refused_lock:
            first = url not in _refused_logged
            _refused_logged.add(url)
        if first:  # logged once per process: callers may ask again and again
            logger.error("%s", message)
        return ProcessError(message)

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
        """GET /status from the running manager, or None if nothing answers there.

        Raises ProcessError if something answers that cannot prove it is this user's manager.
        """
        return self._probe()[0]

    def _probe(self) -> tuple[dict[str, Any] | None, Exception | None]:
        """GET /status: (the status, None) or (None, the error if the request failed)."""
        try:
            response = self._send("GET", "/status", timeout=STATUS_TIMEOUT)
        except (ConnectionError, FunctionTimeout, UnexpectedResponse) as err:
            return None, err
        return parse_status(response, f"{self.get_url()}/status")[0], None

    def is_running(self) -> bool:
        status = self.request_status()
        return status is not None and status.get("type") == self.expected_type_name

    # Process

    def start(self) -> JSHostManager:
        """Spawn the detached manager unless one already runs; returns self."""
        if self.is_running():
            return self
        # Make sure the port is not a stale cached one (see js_host.config_status).
        read_config_status(self.path_to_node, self.bin_path, self.config_file, manager=True, fresh=True)
        status, error = self._probe()
        if status is not None and status.get("type") == self.expected_type_name:
            return self
        spawned = spawn(self.path_to_node, self.bin_path, self.config_file, timeout=START_TIMEOUT)
        if spawned.code == 0 and self._wait_running(2.0):
            emit(logger, verbosity.PROCESS_START, "Started %s", self.get_name())
            return self
        # Another process may have started it at the same moment (EADDRINUSE for us).
        if self._wait_running(1.0):
            return self
        if isinstance(error, FunctionTimeout):
            raise ProcessError(
                f"Cannot start {self.get_name()}: something else holds {urlsplit(self.get_url()).netloc} "
                f"(the `address` and `port` of {self.config_file}): it does not answer GET /status within "
                f"{STATUS_TIMEOUT:g} s, so it is not your js-host manager. Stop that process, or set "
                f"`port` in {self.config_file} to a free port."
            )
        if "EADDRINUSE" in spawned.output:
            raise ProcessError(
                f"Cannot start {self.get_name()}: another process listens on {self.get_url()}. "
                "Set the `port` property of your config file to a free port, or stop that process."
            )
        command = " ".join(spawned.command)
        raise ProcessError(
            f"Cannot start {self.get_name()} with `{command}` (exit {spawned.code}):\n{spawned.output}"
        )

    def _wait_running(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while True:
            if self.is_running():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)

    def stop(self) -> None:
        """Ask the manager to stop its hosts and exit; a manager that has already exited (after
        its last host stopped, say) is left alone."""
        try:
            response = self._send("POST", "/manager/stop")
        except ConnectionError as err:
            if self.is_running():
                raise
            logger.debug("%s is not running: nothing to stop (%s)", self.get_name(), err)
            return
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
