"""``JSHost``: the bridge to one JavaScript environment (one config file).

``js_host.host.host`` is the default host, built from ``js_host.conf.settings``
on first use (never on import)::

    from js_host.host import host
    host.get_url()

Without a manager, a host is a process you run yourself
(``node_modules/.bin/js-host host.config.js``) and ``connect()`` checks that it
answers at the config's address (or ``URL_OVERRIDE``). With ``USE_MANAGER``,
``connect()`` starts the manager and the host when needed and opens a
connection that is closed when the Python process exits (each process, forked
children included, closes the connection it opened itself).

With ``URL_OVERRIDE`` (production, e.g. behind the caching proxy) the host's
status comes from ``GET <URL_OVERRIDE>/status``: neither node nor the config
file needs to be on the machine.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import stat
import threading
import time
import weakref
from collections import deque
from typing import Any, NamedTuple

from . import verbosity
from .conf import (
    config_file_path,
    lenient_path,
    resolve_bin,
    resolve_config_file,
    resolve_node,
    settings,
    validate_url_override,
)
from .endpoint import config_url, parse_status, request, split_url
from .exceptions import (
    ConfigError,
    ConnectionError,  # noqa: A004 - the spec's name
    FunctionTimeout,
    JSHostError,
    ProcessError,
    UnexpectedResponse,
)
from .log import emit
from .manager import JSHostManager
from .runtime import host_start_lock
from .status import read_config_status

logger = logging.getLogger(__name__)

#: Lines of a crashed host's logfile shown in the ProcessError.
LOG_TAIL_LINES = 20
#: Seconds to wait for an answer to GET /status.
STATUS_TIMEOUT = 10.0

# Every JSHost, so that a forked child can forget its parent's connections (see _after_fork).
_hosts: weakref.WeakSet[JSHost] = weakref.WeakSet()


class Target(NamedTuple):
    """Where function calls go, fixed once connected."""

    address: str
    port: int
    prefix: str
    functions: frozenset[str]


class JSHost:
    """A host running ``config_file`` (default: ``settings.CONFIG_FILE``).

    Options left as None take their value from ``js_host.conf.settings``.
    """

    expected_type_name = "Host"

    def __init__(
        self,
        config_file: str | None = None,
        *,
        use_manager: bool | None = None,
        url_override: str | None = None,
        path_to_node: str | None = None,
        bin_path: str | None = None,
    ) -> None:
        root = settings.source_root
        self.use_manager = settings.USE_MANAGER if use_manager is None else use_manager
        self.url_override = url_override if url_override is not None else settings.URL_OVERRIDE
        if self.url_override is not None:
            validate_url_override(self.url_override)
            if self.use_manager:
                raise ConfigError(f"url_override ({self.url_override!r}) cannot be used with a manager.")
            # Nothing is run here: the paths need not exist, they only appear in messages.
            self.config_file = config_file_path(
                config_file if config_file is not None else settings.CONFIG_FILE, root
            )
            self.path_to_node = lenient_path(
                lambda: resolve_node(path_to_node) if path_to_node else settings.get_path_to_node(),
                path_to_node or settings.PATH_TO_NODE,
            )
            self.bin_path = lenient_path(
                lambda: (
                    resolve_bin(bin_path, root, explicit=True) if bin_path else settings.get_path_to_bin()
                ),
                os.path.join(root, bin_path or settings.BIN_PATH),
            )
        else:
            self.config_file = (
                resolve_config_file(config_file, root)
                if config_file is not None
                else settings.get_config_file()
            )
            self.path_to_node = resolve_node(path_to_node) if path_to_node else settings.get_path_to_node()
            self.bin_path = (
                resolve_bin(bin_path, root, explicit=True) if bin_path else settings.get_path_to_bin()
            )
        #: The JSHostManager that spawns this host (None without USE_MANAGER).
        self.manager: JSHostManager | None = (
            JSHostManager(self.config_file, path_to_node=self.path_to_node, bin_path=self.bin_path)
            if self.use_manager
            else None
        )
        #: The file a managed host writes its logs to (known once started).
        self.logfile: str | None = None
        #: The manager's id for this process's connection.
        self.connection: str | None = None
        self._connection_pid: int | None = None  # the process that opened self.connection
        self._exit_hooks: set[int] = set()  # the processes whose atexit closes their connection
        self._managed_status: dict[str, Any] | None = None
        self._target: Target | None = None
        self._lock = threading.RLock()
        self._connected_pid: int | None = None
        # After a failed connect(retry_after=...): until then get_target() raises this error.
        self._retry_at = 0.0
        self._retry_error: JSHostError | None = None
        _hosts.add(self)

    def __repr__(self) -> str:
        return f"<JSHost {self.config_file}>"

    def get_name(self) -> str:
        """A description for messages (starts nothing: a managed host not running is "not started")."""
        try:
            url = self.get_url()
        except JSHostError:
            url = "not started" if self.manager is not None else "?"
        return f"Host [{url}] ({self.config_file})"

    # Introspection (the spec's API)

    def get_path_to_bin(self) -> str:
        return self.bin_path

    def get_path_to_config_file(self) -> str:
        return self.config_file

    def get_config_status(self) -> dict[str, Any]:
        """The status the config file describes (``--config``), without any process."""
        return read_config_status(self.path_to_node, self.bin_path, self.config_file)

    def get_status(self) -> dict[str, Any]:
        """The host's status: what a managed host reported when it started, the live ``GET /status``
        through URL_OVERRIDE, else what the config file describes.

        Starts nothing: a managed host that the manager does not run raises ConnectionError.
        """
        if self.manager is not None:
            status = self._managed_status or self._managed_host_status()
            if status is None:
                raise ConnectionError(
                    f"The managed host for {self.config_file} is not started: host.connect() or "
                    "host.start() starts it."
                )
            return status
        if self.url_override:
            status, reason = self._request_status()
            if status is None:
                raise ConnectionError(self._cannot_connect_message(reason))
            return status
        return self.get_config_status()

    def get_config(self) -> dict[str, Any]:
        return self.get_status()["config"]

    def get_url(self) -> str:
        """The host's root URL; a managed host that is not started raises ConnectionError."""
        if self.url_override:
            return self.url_override
        return config_url(self.get_config())

    def request_status(self) -> dict[str, Any] | None:
        """GET /status from the running host, or None if nothing answers (or a managed host is not
        started)."""
        return self._request_status()[0]

    def _request_status(self, timeout: float | None = None) -> tuple[dict[str, Any] | None, str]:
        """GET /status: (the status, "") or (None, why there is none)."""
        try:
            url = self.get_url()
            response = request(url, "GET", "/status", timeout=STATUS_TIMEOUT if timeout is None else timeout)
        except (ConnectionError, FunctionTimeout, UnexpectedResponse) as err:
            return None, str(err)
        return parse_status(response, f"{url}/status")

    def is_running(self) -> bool:
        """True if the host answers its GET /status; a managed host must also be one that the
        manager runs (nothing is started to find out)."""
        if self.manager is not None and self._managed_host_status() is None:
            return False
        status = self.request_status()
        return status is not None and status.get("type") == self.expected_type_name

    def _managed_host_status(self) -> dict[str, Any] | None:
        """The managed host's status if the manager runs and has started it, else None (starts nothing)."""
        assert self.manager is not None
        with self._lock:
            if not self.manager.is_running():
                return None
            try:
                data = self.manager.request_host_status(self.config_file)
            except (ConnectionError, FunctionTimeout):  # the manager has just exited
                return None
            if not data.get("started"):
                return None
            self._remember_managed(data["host"])
            return self._managed_status

    # Connection

    @property
    def has_connected(self) -> bool:
        return self._target is not None and self._connected_pid == os.getpid()

    def connect(self, *, status_timeout: float | None = None, retry_after: float = 0.0) -> JSHost:
        """Connect to the running host (starting it through the manager if used); returns self.

        ``status_timeout``: seconds to wait for GET /status (default STATUS_TIMEOUT).
        ``retry_after``: if connecting fails, get_target() (every Function call) raises the same
        error for that many seconds instead of trying again (a server that cannot wait for a host
        that hangs: see js_host.middleware); :meth:`retry_wait` says how long is left.
        """
        with self._lock:
            try:
                self._connect(status_timeout)
            except JSHostError as err:
                if retry_after > 0:
                    self._target = None
                    self._retry_at = time.monotonic() + retry_after
                    self._retry_error = err
                raise
            self._retry_at, self._retry_error = 0.0, None
        return self

    def retry_wait(self) -> float:
        """Seconds until a connect that failed with ``retry_after`` may be tried again (0: now)."""
        if self._retry_error is None:
            return 0.0
        return max(0.0, self._retry_at - time.monotonic())

    def _connect(self, status_timeout: float | None) -> None:
        if self.manager is not None:
            self._connect_managed()
        remote, reason = self._request_status(status_timeout)
        if remote is None and self.manager is None and not self.url_override:
            # The cached status may be stale (see js_host.status): read it again.
            before = self.get_url()
            read_config_status(self.path_to_node, self.bin_path, self.config_file, fresh=True)
            if self.get_url() != before:
                remote, reason = self._request_status(status_timeout)
        if remote is None:
            raise ConnectionError(self._cannot_connect_message(reason))
        url = self.get_url()
        if remote.get("type") != self.expected_type_name:
            raise UnexpectedResponse(
                f"{url}/status answered type {remote.get('type')!r}, not 'Host': "
                f"another kind of server listens there. Check the address and port of {self.config_file}."
            )
        functions = (remote.get("config") or {}).get("functions") or []
        if self.manager is None and not self.url_override:
            local = self.get_config_status()["config"].get("functions") or []
            if sorted(local) != sorted(functions):
                logger.warning(
                    "%s runs functions %s but %s defines %s: restart the host to load its config.",
                    url,
                    sorted(functions),
                    self.config_file,
                    sorted(local),
                )
        self._target = Target(*split_url(url), frozenset(functions))
        self._connected_pid = os.getpid()
        emit(logger, verbosity.CONNECT, "Connected to %s", self.get_name())

    def _cannot_connect_message(self, reason: str = "") -> str:
        if self.manager is not None:
            return f"Cannot connect to the managed {self.get_name()}; see its logfile {self.logfile}"
        if self.url_override:
            return (
                f"Cannot connect to the host through URL_OVERRIDE {self.url_override}; check that the host "
                f"(and the proxy in front of it, if any) runs and can be reached from here. {reason}"
            )
        return (
            f"Cannot connect to a host at {self.get_url()}. Start it with "
            f"`{self.path_to_node} {self.bin_path} {self.config_file}`, or set USE_MANAGER=True in "
            "development."
        )

    def _connect_managed(self) -> None:
        assert self.manager is not None
        self.start()
        pid = os.getpid()
        if self.connection is None or self._connection_pid != pid:
            data = self.manager.open_connection_to_host(self.config_file)
            self._remember_managed(data)
            self.connection = data["connection"]
            self._connection_pid = pid
            if pid not in self._exit_hooks:
                # One hook per process: a forked child (gunicorn --preload) inherits its
                # parent's hooks, which skip it (see _disconnect_at_exit), and adds its own.
                atexit.register(self._disconnect_at_exit, pid)
                self._exit_hooks.add(pid)

    def _remember_managed(self, data: dict[str, Any]) -> None:
        """Keep what the manager says about the host (its status, logfile); forget our connection
        if the host does not count it (it belonged to a host process that has gone)."""
        try:
            self._managed_status = json.loads(data["output"])
        except (KeyError, TypeError, ValueError) as err:
            raise UnexpectedResponse(
                f"The manager described the host with unexpected data: {data!r}"
            ) from err
        self.logfile = data.get("logfile") or self.logfile
        connections = data.get("connections")
        if (
            self.connection is not None
            and isinstance(connections, list)
            and self.connection not in connections
        ):
            self._forget_connection()

    def _forget_connection(self) -> None:
        # Without a request: the manager has already dropped it with its host process.
        self.connection = None
        self._connection_pid = None
        self._target = None

    def _disconnect_at_exit(self, pid: int) -> None:
        # A forked child inherits its parent's atexit hooks: each closes only the
        # connection that its own process opened.
        if pid == os.getpid() and self._connection_pid == pid:
            try:
                self.disconnect()
            except Exception as err:  # at exit, report and carry on
                logger.debug("Disconnecting %s at exit failed: %s", self.get_name(), err)

    def _after_fork(self) -> None:
        # The child starts unconnected: its parent's connection is not its own (the
        # parent closes it), and a lock held by another thread at fork() is never released.
        self._lock = threading.RLock()
        self._target = None
        self.connection = None
        self._connection_pid = None
        self._retry_at, self._retry_error = 0.0, None

    def disconnect(self) -> None:
        """Close this process's connection (a managed host stops a few seconds after its last one)."""
        with self._lock:
            self._target = None
            if self.manager is None or self.connection is None or self._connection_pid != os.getpid():
                return
            connection, self.connection = self.connection, None
            self._connection_pid = None
            try:
                data = self.manager.close_connection_to_host(self.config_file, connection)
            except ConnectionError:
                return  # the manager has gone: nothing left to disconnect from
            message = f"Closed connection {connection} to {self.get_name()}"
            if data.get("started") and data.get("stopTimeout"):
                message += (
                    f"; the host stops in {data['stopTimeout'] / 1000:g} s unless another connection opens"
                )
            emit(logger, verbosity.DISCONNECT, "%s", message)

    # Managed processes

    def _require_manager(self, action: str) -> JSHostManager:
        if self.manager is None:
            raise ConfigError(
                f"{action} needs a manager: set USE_MANAGER=True (development), or run the host yourself "
                f"with `{self.path_to_node} {self.bin_path} {self.config_file}`."
            )
        return self.manager

    def start(self) -> JSHost:
        """Ask the manager (started if needed) to run this host, unless it already does; returns self.

        Hosts are started under a lock shared by the processes of this machine
        (see :func:`js_host.runtime.host_start_lock`), so that one host runs per
        config file. Starting a new host process forgets this process's connection
        (it belonged to the process that has gone): ``connect()`` opens a new one.
        """
        manager = self._require_manager("Starting a host")
        with self._lock:
            manager.start()
            data = manager.request_host_status(self.config_file)
            if data.get("started"):
                self._remember_managed(data["host"])
                return self
            with host_start_lock(self.config_file):
                self._start_locked(manager)
        return self

    def _start_locked(self, manager: JSHostManager) -> None:
        # Another process may have started it while we waited for the lock.
        data = manager.request_host_status(self.config_file)
        if data.get("started"):
            self._remember_managed(data["host"])
            return
        # Crashed, stopped or never started: a connection to an earlier host process is gone with it.
        self._forget_connection()
        try:
            data = manager.start_host(self.config_file)
        except UnexpectedResponse:
            # Started at the same moment by a process that does not take the lock.
            data = manager.request_host_status(self.config_file)
            if not data.get("started"):
                raise
            self._remember_managed(data["host"])
            return
        self._remember_managed(data)
        emit(logger, verbosity.PROCESS_START, "Started %s (log: %s)", self.get_name(), self.logfile)

    def stop(self) -> None:
        """Ask the manager to stop this host."""
        manager = self._require_manager("Stopping a host")
        with self._lock:
            manager.stop_host(self.config_file)
            self._managed_status = None  # get_url() and get_name() now say "not started"
            self._forget_connection()
            emit(logger, verbosity.PROCESS_STOP, "Stopped the host for %s", self.config_file)

    def restart(self) -> JSHost:
        """Ask the manager to restart this host (it reloads the config file); returns self.

        A host that is not running (it crashed, or was stopped) is started
        instead. Reconnects if this process was connected.
        """
        manager = self._require_manager("Restarting a host")
        with self._lock:
            was_connected = self._target is not None or self.connection is not None
            manager.start()
            with host_start_lock(self.config_file):
                restarted = False
                if manager.request_host_status(self.config_file).get("started"):
                    try:
                        data = manager.restart_host(self.config_file)
                    except UnexpectedResponse:
                        # It has gone since (js-host 0.11 cannot restart a host it no longer knows).
                        if manager.request_host_status(self.config_file).get("started"):
                            raise
                    else:
                        self._remember_managed(data)
                        restarted = True
                if not restarted:
                    self._start_locked(manager)
            self._target = None
            emit(logger, verbosity.PROCESS_START, "Restarted %s", self.get_name())
            if was_connected:
                self.connect()
        return self

    # Requests

    def get_target(self) -> Target:
        """Where function calls go (connects first if needed)."""
        target = self._target
        if target is None or self._connected_pid != os.getpid():
            with self._lock:  # one thread connects, the others wait for it
                target = self._target
                if target is None or self._connected_pid != os.getpid():
                    left = self.retry_wait()
                    if self._retry_error is not None and left > 0:
                        # The same kind of error, saying when the next try may happen.
                        raise type(self._retry_error)(
                            f"{self._retry_error} (not tried again for another {left:.1f} s)"
                        ) from self._retry_error
                    self.connect()
                    target = self._target
                    assert target is not None
        return target

    def crashed_error(self, err: Exception) -> Exception:
        """The error to raise when the host cannot be reached: a managed host has crashed."""
        if self.manager is None or not self.logfile:
            return err
        return ProcessError(
            f"{self.get_name()} appears to have crashed ({err}). Inspect its logfile {self.logfile}, "
            f"fix the cause, then restart it (host.restart()) or your Python process.\n"
            f"Last lines of {self.logfile}:\n{tail(self.logfile, LOG_TAIL_LINES)}"
        )


def _after_fork_in_child() -> None:
    for host in list(_hosts):
        host._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def tail(path: str, lines: int) -> str:
    # Never through a link, and only a regular file: what is shown may reach a web page.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        with open(fd, encoding="utf-8", errors="replace") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return "(cannot read it: not a regular file)"
            return "".join(deque(fh, maxlen=lines)).rstrip("\n") or "(empty)"
    except OSError as err:
        return f"(cannot read it: {err})"


# The default host, built from the settings on first use.

_default: JSHost | None = None
_default_lock = threading.Lock()


def get_default_host() -> JSHost:
    global _default
    host = _default
    if host is None:
        with _default_lock:
            if _default is None:
                _default = JSHost()
            host = _default
    return host


def get_default_host_if_built() -> JSHost | None:
    """The default host if it has been built (never builds it)."""
    return _default


def reset_default_host() -> None:
    """Forget the default host, closing its connection (used when the settings change)."""
    global _default
    with _default_lock:
        old, _default = _default, None
    if old is not None:
        try:
            old.disconnect()
        except Exception as err:
            logger.warning("Disconnecting %s failed: %s", old.get_name(), err)


def __getattr__(name: str) -> Any:
    if name == "host":
        return get_default_host()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
