"""Development: restart a managed host when its config file (or another watched file) changes.

:class:`Reloader` is what :class:`~js_host.middleware.JSHostMiddleware` runs in
development (``USE_MANAGER``), at most once every ``interval`` seconds per
process. It compares the watched files' mtimes with the last ones it saw, and
with a record shared by every process of the machine (a
:class:`~js_host.runtime.MachineLock` record, ``middleware-<key>.json`` in the
runtime dir), so that one worker restarts the host and the others only
reconnect. It also notices when the host was restarted by another process, has
crashed, or has lost this process's connection: the middleware then reconnects.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional

from .runtime import MachineLock

if TYPE_CHECKING:
    from .host import JSHost

logger = logging.getLogger(__name__)

#: The MachineLock purpose of the record (its file name is kept for existing runtime dirs).
RECORD_PURPOSE = "middleware"

Mtimes = dict[str, Optional[int]]


class Reloader:
    """Watches ``watch`` (and the host's config file) and restarts the host when they change.

    Not thread-safe: the middleware calls it under its lock.
    """

    def __init__(self, watch: Sequence[str | os.PathLike[str]] = (), interval: float = 0.5) -> None:
        #: More files whose change restarts the host (absolute paths).
        self.watch = [os.path.abspath(os.fspath(path)) for path in watch]
        #: Seconds between two checks.
        self.interval = interval
        self._mtimes: Mtimes | None = None  # what this process saw last (None: not looked yet)
        self._host_output: str | None = None  # the managed host's output when we connected
        self._next_check = 0.0  # time.monotonic()

    def due(self) -> bool:
        """True when the next check is due."""
        return time.monotonic() >= self._next_check

    def forget(self) -> None:
        """Start afresh (another host): its first check compares with the machine's record only."""
        self._mtimes = None

    def connected(self, host: JSHost) -> None:
        """Remember which host process ``host`` is connected to (to notice when it changes)."""
        assert host.manager is not None
        described = host.manager.request_host_status(host.config_file).get("host") or {}
        self._host_output = described.get("output")

    def check(self, host: JSHost, *, connected: bool) -> bool:
        """Restart ``host`` if watched files changed; returns whether the connection is still good
        (False: connect again). ``connected``: this process is connected to it."""
        changed = self._check_watched_files(host)
        still_good = connected and not changed and self._same_host_process(host)
        self._next_check = time.monotonic() + self.interval
        return still_good

    def watched_files(self, host: JSHost) -> list[str]:
        return [host.config_file, *self.watch]

    def _stat(self, host: JSHost) -> Mtimes:
        mtimes: Mtimes = {}
        for path in self.watched_files(host):
            try:
                mtimes[path] = os.stat(path).st_mtime_ns
            except OSError:
                mtimes[path] = None
        return mtimes

    def _check_watched_files(self, host: JSHost) -> bool:
        """Restart the host if needed; True when this process saw the files change."""
        current = self._stat(host)
        if self._mtimes is None:
            # First look in this process: a change since another process's last
            # restart (e.g. while the server was stopped) still restarts the host.
            with MachineLock(RECORD_PURPOSE, host.config_file, record=True) as lock:
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
        with MachineLock(RECORD_PURPOSE, host.config_file, record=True) as lock:
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

    def _same_host_process(self, host: JSHost) -> bool:
        """False if the host was restarted (by another worker), has crashed, or lost our connection."""
        assert host.manager is not None
        data = host.manager.request_host_status(host.config_file)
        described = data.get("host") or {}
        connections = described.get("connections")
        lost = isinstance(connections, list) and host.connection not in connections
        return bool(data.get("started")) and described.get("output") == self._host_output and not lost
