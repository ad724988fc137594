"""``ManagedHost``: a host that the development manager runs, as one Python process sees it.

It keeps what the manager last said about the host (its status, its logfile)
and this process's connection to it (opened once per process; forgotten when
the host process that counted it has gone), and starts, stops and restarts the
host under the lock that the processes of this machine share
(:func:`js_host.runtime.host_start_lock`). :class:`~js_host.host.JSHost` holds
one when it uses a manager and calls it under its own lock; the messages are
the host's to log.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Callable

from .exceptions import ConnectionError, FunctionTimeout, UnexpectedResponse  # noqa: A004 - the spec's name
from .manager import JSHostManager
from .runtime import host_start_lock


class ManagedHost:
    """The host that ``manager`` runs for ``config_file``.

    ``on_connection_lost`` is called whenever this process's connection is
    forgotten (the host process it belonged to has gone, or is about to be
    replaced), so that the next call connects again.
    """

    def __init__(
        self, manager: JSHostManager, config_file: str, *, on_connection_lost: Callable[[], None]
    ) -> None:
        self.manager = manager
        self.config_file = config_file
        #: The file the host writes its logs to (known once started).
        self.logfile: str | None = None
        #: The manager's id for this process's connection.
        self.connection: str | None = None
        #: The status the host reported when it started (None: not known to run).
        self.status: dict[str, Any] | None = None
        #: The user's modules that host process loaded: {path: mtime in ns, as a string}.
        self.loaded_files: dict[str, str] = {}
        #: The manager's id of that host process (None from js-host 0.11's manager).
        self.host_id: str | None = None
        self._connection_pid: int | None = None  # the process that opened self.connection
        self._on_connection_lost = on_connection_lost
        # Each public method runs alone: the host calls most of them under its own lock,
        # but not running_status() (get_status() and is_running() take no host lock).
        self._lock = threading.RLock()

    def owns_connection(self) -> bool:
        """Whether this process opened the connection it holds (a forked child did not)."""
        return self.connection is not None and self._connection_pid == os.getpid()

    def _remember(self, data: dict[str, Any]) -> None:
        """Keep what the manager says about the host (its status, logfile); forget our connection
        if the host does not count it (it belonged to a host process that has gone)."""
        try:
            status = json.loads(data["output"])
            # The user's modules the host loaded, with their mtimes (this project's hosts tell
            # their manager only): what the development reloader watches. Not part of /status.
            loaded = status.pop("loadedFiles", None)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise UnexpectedResponse(
                f"The manager described the host with unexpected data: {data!r}"
            ) from err
        self.status = status
        self.loaded_files = loaded if isinstance(loaded, dict) else {}
        #: The manager's id of the host process (None from js-host 0.11's manager).
        self.host_id = data.get("id")
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
        self._on_connection_lost()

    def after_fork(self) -> None:
        # The parent's connection is not the child's (the parent closes it), and a lock
        # held by another thread at fork() is never released.
        self._lock = threading.RLock()
        self.connection = None
        self._connection_pid = None

    def running_status(self) -> dict[str, Any] | None:
        """The host's status if the manager runs and has started it, else None (starts nothing)."""
        with self._lock:
            if not self.manager.is_running():
                return None
            try:
                data = self.manager.request_host_status(self.config_file)
            except (ConnectionError, FunctionTimeout):  # the manager has just exited
                return None
            if not data.get("started"):
                return None
            self._remember(data["host"])
            return self.status

    # Connections

    def open_connection(self) -> bool:
        """Open this process's connection unless it holds one; True if it opened one."""
        with self._lock:
            if self.owns_connection():
                return False
            data = self.manager.open_connection_to_host(self.config_file)
            self._remember(data)
            self.connection = data["connection"]
            self._connection_pid = os.getpid()
            return True

    def close_connection(self) -> tuple[str, dict[str, Any]] | None:
        """Close the connection this process opened: (its id, the manager's answer), or None
        when there was none to close (or the manager has gone, and the connection with it)."""
        with self._lock:
            if not self.owns_connection():
                return None
            connection, self.connection = self.connection, None
            self._connection_pid = None
            assert connection is not None
            try:
                return connection, self.manager.close_connection_to_host(self.config_file, connection)
            except ConnectionError:
                return None

    # Processes

    def start(self) -> bool:
        """Have the manager (started if needed) run the host unless it does; True if a host
        process was started."""
        with self._lock:
            self.manager.start()
            data = self.manager.request_host_status(self.config_file)
            if data.get("started"):
                self._remember(data["host"])
                return False
            with host_start_lock(self.config_file):
                return self._start_locked()

    def _start_locked(self) -> bool:
        # Another process may have started it while we waited for the lock.
        data = self.manager.request_host_status(self.config_file)
        if data.get("started"):
            self._remember(data["host"])
            return False
        # Crashed, stopped or never started: a connection to an earlier host process is gone with it.
        self._forget_connection()
        try:
            data = self.manager.start_host(self.config_file)
        except UnexpectedResponse:
            # Started at the same moment by a process that does not take the lock.
            data = self.manager.request_host_status(self.config_file)
            if not data.get("started"):
                raise
            self._remember(data["host"])
            return False
        self._remember(data)
        return True

    def stop(self) -> None:
        with self._lock:
            self.manager.stop_host(self.config_file)
            self.status = None  # the host's URL and name now say "not started"
            self._forget_connection()

    def restart(self) -> bool:
        """Have the manager restart the host (it reloads the config file), or start it when it
        does not run (it crashed, or was stopped); True if it was started instead."""
        with self._lock:
            manager = self.manager
            manager.start()
            with host_start_lock(self.config_file):
                if manager.request_host_status(self.config_file).get("started"):
                    try:
                        data = manager.restart_host(self.config_file)
                    except UnexpectedResponse:
                        # It has gone since (js-host 0.11 cannot restart a host it no longer knows).
                        if manager.request_host_status(self.config_file).get("started"):
                            raise
                    else:
                        self._remember(data)
                        return False
                return self._start_locked()
