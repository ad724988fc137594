"""``HostConnection``: one Python process's connection to a host, and where its calls go.

Connecting checks what answers ``GET /status`` (a host, running the config's
functions) and fixes the :class:`Target` of the function calls. The connection
belongs to the process that opened it: a forked child (gunicorn ``--preload``)
starts unconnected, and at exit each process closes only the manager
connection it opened itself. After a failed ``connect(retry_after=...)`` the
same error is raised without trying again until that time has passed.

The requests sent to the target, and their errors, are
:class:`js_host.host_calls.HostCalls`'s.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from typing import Any, Callable, NamedTuple

from . import verbosity
from .endpoint import split_url
from .exceptions import (
    ConfigError,
    ConnectionError,  # noqa: A004 - the spec's name
    JSHostError,
    UnexpectedResponse,
)
from .host_status import HostStatus
from .log import emit
from .managed_host import ManagedHost

logger = logging.getLogger(__name__)


# Every HostConnection, so that a forked child can forget its parent's (see _after_fork).
_connections: weakref.WeakSet[HostConnection] = weakref.WeakSet()


class Target(NamedTuple):
    """Where function calls go, fixed once connected."""

    address: str
    port: int
    prefix: str
    functions: frozenset[str]


class HostConnection:
    """The connection to the host that ``status`` describes.

    ``managed``: the host's manager side, if a manager runs it; ``start()``
    makes it run (and says so) before a connection is opened.
    """

    def __init__(self, status: HostStatus, managed: ManagedHost | None, *, start: Callable[[], Any]) -> None:
        self.status = status
        self.managed = managed
        self._start = start
        #: Held while connecting, disconnecting, starting, stopping and restarting.
        self.lock = threading.RLock()
        self._target: Target | None = None
        self._connected_pid: int | None = None
        self._exit_hooks: set[int] = set()  # the processes whose atexit closes their connection
        # After a failed connect(retry_after=...): until then target() raises this error.
        self._retry_at = 0.0
        self._retry_error: JSHostError | None = None
        _connections.add(self)

    @property
    def connected(self) -> bool:
        return self._target is not None and self._connected_pid == os.getpid()

    @property
    def has_target(self) -> bool:
        """Whether a target is held (perhaps a parent process's)."""
        return self._target is not None

    def drop(self) -> None:
        """Forget the target: the next call connects again."""
        self._target = None

    def connect(self, status_timeout: float | None = None, retry_after: float = 0.0) -> None:
        """See :meth:`js_host.host.JSHost.connect`."""
        with self.lock:
            try:
                self._connect(status_timeout)
            except JSHostError as err:
                if retry_after > 0:
                    self._target = None
                    self._retry_at = time.monotonic() + retry_after
                    self._retry_error = err
                raise
            self._retry_at, self._retry_error = 0.0, None

    def retry_wait(self) -> float:
        """Seconds until a connect that failed with ``retry_after`` may be tried again (0: now)."""
        if self._retry_error is None:
            return 0.0
        return max(0.0, self._retry_at - time.monotonic())

    def _connect(self, status_timeout: float | None) -> None:
        status = self.status
        if self.managed is not None:
            self._connect_managed(self.managed)
        remote, reason = status.request(status_timeout)
        from_config = self.managed is None and not status.url_override
        if remote is None and from_config:
            # The cached status may be stale (see js_host.config_status): read it again.
            before = status.url()
            status.config_status(fresh=True)
            if status.url() != before:
                remote, reason = status.request(status_timeout)
        if remote is None:
            raise ConnectionError(status.cannot_connect_message(reason))
        url = status.url()
        if remote.get("type") != status.expected_type_name:
            raise UnexpectedResponse(
                f"{url}/status answered type {remote.get('type')!r}, not 'Host': "
                f"another kind of server listens there. Check the address and port of {status.config_file}."
            )
        functions = (remote.get("config") or {}).get("functions") or []
        if from_config:
            local = status.config_status()["config"].get("functions") or []
            if sorted(local) != sorted(functions):
                logger.warning(
                    "%s runs functions %s but %s defines %s: restart the host to load its config.",
                    url,
                    sorted(functions),
                    status.config_file,
                    sorted(local),
                )
        self._target = Target(*split_url(url), frozenset(functions))
        self._connected_pid = os.getpid()
        emit(logger, verbosity.CONNECT, "Connected to %s", status.name())

    def _connect_managed(self, managed: ManagedHost) -> None:
        self._start()
        pid = os.getpid()
        if managed.open_connection() and pid not in self._exit_hooks:
            # One hook per process: a forked child (gunicorn --preload) inherits its
            # parent's hooks, which skip it (see _disconnect_at_exit), and adds its own.
            atexit.register(self._disconnect_at_exit, pid)
            self._exit_hooks.add(pid)

    def current_target(self) -> Target | None:
        """The target this process holds, or None (then :meth:`target` would connect): never
        takes the lock, so it never waits for a thread that connects or restarts."""
        target = self._target
        if target is None or self._connected_pid != os.getpid():
            return None
        return target

    def retry_error(self) -> JSHostError | None:
        """The error :meth:`target` raises at once while a connect that failed with
        ``retry_after`` may not be tried again (None: it may be tried now)."""
        left = self.retry_wait()
        if self._retry_error is None or left <= 0:
            return None
        # The same kind of error, saying when the next try may happen.
        err = type(self._retry_error)(f"{self._retry_error} (will try again in {left:.1f} s at the earliest)")
        err.__cause__, err.__suppress_context__ = self._retry_error, True
        return err

    def target(self) -> Target:
        """Where function calls go (connects first if needed)."""
        target = self.current_target()
        if target is None:
            with self.lock:  # one thread connects, the others wait for it
                target = self.current_target()
                if target is None:
                    err = self.retry_error()
                    if err is not None:
                        raise err
                    self.connect()
                    target = self._target
                    assert target is not None
        return target

    def require_function(self, name: str, target: Target | None = None) -> None:
        """See :meth:`js_host.host.JSHost.require_function`."""
        functions = (target or self.target()).functions
        if name not in functions:
            raise ConfigError(
                f"The host at {self.status.url()} has no function {name!r} (it has "
                f"{', '.join(sorted(functions)) or 'none'}). Add it to {self.status.config_file} and "
                "restart the host."
            )

    def disconnect(self) -> None:
        """See :meth:`js_host.host.JSHost.disconnect`."""
        with self.lock:
            self._target = None
            closed = self.managed.close_connection() if self.managed is not None else None
            if closed is None:
                return
            connection, data = closed
            message = f"Closed connection {connection} to {self.status.name()}"
            if data.get("started") and data.get("stopTimeout"):
                message += (
                    f"; the host stops in {data['stopTimeout'] / 1000:g} s unless another connection opens"
                )
            emit(logger, verbosity.DISCONNECT, "%s", message)

    def _disconnect_at_exit(self, pid: int) -> None:
        # A forked child inherits its parent's atexit hooks: each closes only the
        # connection that its own process opened.
        if pid == os.getpid() and self.managed is not None and self.managed.owns_connection():
            try:
                self.disconnect()
            except Exception as err:  # at exit, report and carry on
                logger.debug("Disconnecting %s at exit failed: %s", self.status.name(), err)

    def _after_fork(self) -> None:
        # The child starts unconnected: its parent's connection is not its own (the
        # parent closes it), and a lock held by another thread at fork() is never released.
        self.lock = threading.RLock()
        self._target = None
        if self.managed is not None:
            self.managed.after_fork()
        self._retry_at, self._retry_error = 0.0, None


def _after_fork_in_child() -> None:
    for connection in list(_connections):
        connection._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
