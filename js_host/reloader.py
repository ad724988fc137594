"""Development: restart a managed host when its code changes (a crash shown once: host_crash.py).

:class:`Reloader` is what :class:`~js_host.middleware.JSHostMiddleware` runs in
development (``USE_MANAGER``). Before each request it makes a cheap check,
:meth:`Reloader.changed` (no manager request, no stat of the loaded files; a
few microseconds with thousands of them): has a file the host loaded changed,
or has the host process gone? Only then does it make the full check,
:meth:`Reloader.check` (blocking: it asks the manager, and may restart the
host). The cheap check watches, with a :class:`~js_host.file_watch.FileWatcher`
(inotify, or a polling thread), every file the running host reports it loaded
(the config file and every module it required, ``node_modules`` out), plus the
config file and the files in ``watch``; after each restart or reconnect it
watches the files the new host process reports. It checks that the host
process is alive with one signal-0 ``kill`` of the pid its manager reports.
Hosts whose manager reports neither (js-host 0.11) get the full check before
every request.

The full check restarts the host when

- the config file or a file in ``watch`` changed: their mtimes are compared with
  the last ones this process saw, and with a record shared by every process of
  the machine (:func:`js_host.runtime.development_record`,
  ``middleware-<key>.json`` in the runtime dir), so that one worker restarts the
  host and the others only reconnect;
- a module the running host loaded (this project's hosts tell their manager
  which, with their mtimes when loaded) is not the one it loaded: this also
  catches an edit made while no server ran, or before this process started
  (the host outlives Python processes). The host's own report is the record
  shared by the machine here: once one worker has restarted the host, the new
  host process reports the new mtimes, and the other workers only reconnect.

It also notices when the host was restarted by another process, or has lost
this process's connection: the middleware then reconnects. A host that crashed
(the manager remembers how it ended) is shown once on the machine: the first
check that sees the crash, in any process, raises a ProcessError naming the
cause, and records the crashed process's id in the shared record; every later
check (in any worker) just lets the middleware start the host again. A crash
seen by a function call in the middle of a request is recorded the same way
(:meth:`Reloader.crash_seen`); the showing once is :mod:`js_host.host_crash`.

From async code (an ASGI server), call :meth:`Reloader.changed` on the event
loop, and :meth:`Reloader.check`, :meth:`Reloader.connected` and
:meth:`Reloader.crash_seen` in a thread: they block on the manager.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional

from . import host_crash
from .exceptions import ConnectionError, FunctionTimeout  # noqa: A004 - the spec's name
from .file_watch import FileWatcher, mtime_ns
from .runtime import development_record

if TYPE_CHECKING:
    from .host import JSHost

logger = logging.getLogger(__name__)

Mtimes = dict[str, Optional[int]]


class Reloader:
    """Watches the files the host loaded, ``watch`` and the host's config file, and restarts the
    host when they change.

    Not thread-safe, except :meth:`changed`: the middleware calls the others under its lock.
    """

    def __init__(self, watch: Sequence[str | os.PathLike[str]] = (), interval: float = 0.0) -> None:
        self._watch = [os.path.abspath(os.fspath(path)) for path in watch]
        #: Seconds between two checks.
        self.interval = interval
        self._mtimes: Mtimes | None = None  # what this process saw last (None: not looked yet)
        self._host_output: str | None = None  # the managed host's output when we connected
        self._host_id: str | None = None  # the manager's id of that host process (None: 0.11)
        self._host_pid: int | None = None  # its pid, as its manager says (None: 0.11)
        self._next_check = 0.0  # time.monotonic()
        #: The files of the connected host process, and the watched ones.
        self.files = FileWatcher()
        self._watching = False  # self.files watches the connected host process's files

    @property
    def watch(self) -> list[str]:
        """More files whose change restarts the host (absolute paths)."""
        return self._watch

    @watch.setter
    def watch(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        self._watch = [os.path.abspath(os.fspath(path)) for path in paths]
        self._watching = False  # the next check is a full one, and watches them

    def due(self) -> bool:
        """True when the next check is due (``interval`` seconds after the last one)."""
        return time.monotonic() >= self._next_check

    def changed(self) -> bool:
        """Cheap (a stat only for a file an event names), thread-safe, and never waits for the
        watches being set up (FileWatcher builds them outside its lock): whether :meth:`check`
        is needed, because a watched
        file has changed, the host process has gone, or this process watches nothing yet (or
        cannot: js-host 0.11's manager reports neither the files nor the pid)."""
        if not self._watching or self.files.changed():
            return True
        pid = self._host_pid
        return pid is None or not _alive(pid)

    def forget(self) -> None:
        """Start afresh (another host): its first check compares with the machine's record only."""
        self._mtimes = None
        self._watching = False

    def connected(self, host: JSHost) -> None:
        """Remember which host process ``host`` is connected to (to notice when it changes), and
        watch the files it loaded."""
        assert host.manager is not None
        described = host.manager.request_host_status(host.config_file).get("host") or {}
        self._host_output = described.get("output")
        self._host_id = described.get("id")
        self._watch_host_files(host, described)

    def _watch_host_files(self, host: JSHost, described: dict[str, Any]) -> None:
        """Watch the files the host process ``described`` (by its manager) loaded, with the
        config file and ``watch``."""
        loaded = _loaded_files(described)
        pid = described.get("pid")
        if loaded is None or not isinstance(pid, int):
            self._watching = False  # js-host 0.11: every check asks the manager
            return
        self._host_pid = pid
        extra = self._mtimes if self._mtimes is not None else self._stat(host)
        # The host's mtimes first: a file it loaded counts as changed from the version it runs.
        self.files.watch({**extra, **loaded})
        self._watching = True
        logger.debug("Watching %d files of %s (%s)", len(self.files), host.get_name(), self.files.mode)

    def check(self, host: JSHost, *, connected: bool, show_crash: bool = True) -> bool:
        """Restart ``host`` if its code changed; returns whether the connection is still good
        (False: connect again). ``connected``: this process is connected to it. Blocking: it
        asks the manager (one request, more when the host changed).

        Raises a ProcessError for a crash of the host that no process has shown yet, and records
        it as shown (unless ``show_crash`` is False: it is still to be shown then).
        """
        assert host.manager is not None
        self._next_check = time.monotonic() + self.interval
        if self._check_watched_files(host):
            return False
        try:
            data = host.manager.request_host_status(host.config_file)
        except (ConnectionError, FunctionTimeout):
            return False  # the manager has gone: connecting starts it again
        if not data.get("started"):
            crashed = data.get("crashed")
            if isinstance(crashed, dict):
                host_crash.show_crash_once(host, crashed, record=show_crash)
            return False  # the middleware connects, which starts the host
        described = data.get("host") or {}
        if self._restart_if_loaded_files_changed(host, described):
            return False
        connections = described.get("connections")
        lost = isinstance(connections, list) and host.connection not in connections
        good = connected and described.get("output") == self._host_output and not lost
        if good and (not self._watching or self.files.changed()):
            # Watch (again: a change seen was undone) for cheap checks from now on.
            self._watch_host_files(host, described)
        return good

    def watched_files(self, host: JSHost) -> list[str]:
        return [host.config_file, *self.watch]

    def _stat(self, host: JSHost) -> Mtimes:
        return {path: mtime_ns(path) for path in self.watched_files(host)}

    def _check_watched_files(self, host: JSHost) -> bool:
        """Restart the host if needed; True when this process saw the files change."""
        current = self._stat(host)
        if self._mtimes is None:
            # First look in this process: a change since another process's last
            # restart (e.g. while the server was stopped) still restarts the host.
            with development_record(host.config_file) as lock:
                if lock.record.get("mtimes") is None:
                    lock.record["mtimes"] = current
                elif lock.record["mtimes"] != current:
                    self._restart_host(host, lock.record, current)
            self._mtimes = current
            return False
        if current == self._mtimes:
            return False
        self._mtimes = current
        # Every worker sees the change; the first one restarts the host, the others reconnect.
        with development_record(host.config_file) as lock:
            if lock.record.get("mtimes") != current:
                self._restart_host(host, lock.record, current)
        return True

    def _restart_host(self, host: JSHost, record: dict[str, Any], current: Mtimes) -> None:
        # Recorded first: if the restart fails, the other workers do not repeat it.
        previous = record.get("mtimes") or {}
        record["mtimes"] = current
        changed = [path for path in current if previous.get(path) != current[path]]
        logger.info("Restarting %s: %s changed", host.get_name(), ", ".join(changed))
        host.restart()  # starts it if it is not running

    def _restart_if_loaded_files_changed(self, host: JSHost, described: dict[str, Any]) -> bool:
        """Restart the host if a module it loaded has changed since; True if so (or if another
        process restarted it meanwhile)."""
        if not _changed_files(described):
            return False  # (None: js-host 0.11, only the watched files count)
        assert host.manager is not None
        with development_record(host.config_file):
            # Every worker sees the change: only if it still is the host process that loaded
            # them, and it still runs the old code (a pool reloaded by another worker keeps
            # its process, and reports the files its new workers loaded).
            now = host.manager.request_host_status(host.config_file)
            current = now.get("host") or {}
            changed = _changed_files(current) if current.get("id") == described.get("id") else None
            if changed:
                logger.info("Restarting %s: %s changed", host.get_name(), ", ".join(changed))
                host.restart()  # starts it if it is not running
        return True

    def crash_seen(self, host: JSHost) -> str | None:
        """A call of this request found the host gone: how the host process this process was
        connected to ended (e.g. ``signal SIGKILL``), once the manager has noticed, and that crash
        is recorded as shown (the next request starts the host); None if it has not crashed (or
        the manager does not say: js-host 0.11)."""
        return host_crash.crash_seen(host, self._host_id)


def _loaded_files(described: dict[str, Any]) -> dict[str, int] | None:
    """The files the host process ``described`` loaded, with their mtimes when it loaded them;
    None when its host does not say (js-host 0.11)."""
    try:
        loaded = json.loads(described["output"]).get("loadedFiles")
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if not isinstance(loaded, dict):
        return None
    try:
        return {path: int(mtime) for path, mtime in loaded.items()}
    except (TypeError, ValueError):
        return None


def _changed_files(described: dict[str, Any]) -> list[str] | None:
    """The files the host process ``described`` loaded that have changed since (None: its host
    does not say which it loaded)."""
    loaded = _loaded_files(described)
    if loaded is None:
        return None
    return [path for path, mtime in loaded.items() if mtime_ns(path) != mtime]


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (signal 0 checks, sends nothing). Another user's process
    that took the number counts as gone."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
