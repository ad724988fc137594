"""Which code each upstream runs, known before a lookup: the version in every cache key.

A host reports the version of the code it runs (a digest of its config and every
module it loaded) as ``"codeVersion"`` in ``GET /status`` and as the
``JS-Host-Code-Version`` field of every answer; npm js-host 0.11 reports neither,
and gets a stable marker instead (:func:`js_host_proxy.cache.keys.unversioned`).

A version stays known while the host process that reported it is alive, and no
longer. Each worker process fetches ``/status`` from an upstream on first use and
keeps that connection open as a *watch*: the host closes it when it exits (and when
the connection has been idle for its ``keepAliveTimeout``, 5 s by default), which a
non-blocking peek of the socket sees before the next lookup (one ``recv`` syscall,
at most every ``LOOK_EVERY`` seconds: no host restarts faster than that).
So a host restarted with changed code is asked again before any entry is looked
up, without a setting touched and without a round trip per call. The version is
fetched again, too, after ``max_age`` seconds (``JS_HOST_PROXY_VERSION_TTL``: the
bound when something between the proxy and the host keeps connections open across
a restart), when an answer carries another version than the known one, and while
the upstream cannot be reached (every lookup tries again, so the first one after the
host is back gets its new version; after a slow failure, a timeout rather than a
refusal, once a second).

Not shared between workers on purpose: a worker that trusted another's belief
could not tell when it became stale; each worker's watch costs one idle connection
to each host and one ``/status`` per ``keepAliveTimeout`` of activity.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import threading
import time
from urllib.parse import urlsplit

from js_host.peer_owner import ForeignListener, OwnerCheck
from js_host_proxy.cache.keys import clean_version
from js_host_proxy.connections import upstream_owners

logger = logging.getLogger(__name__)

#: The answer's field with the version of the code that produced it.
HEADER = "JS-Host-Code-Version"
#: Largest /status body read (a status carries the host's config).
MAX_STATUS = 1 << 20
#: Seconds between two looks at a watch (a peek costs a few microseconds with its
#: exception; a host's restart, Node's start-up alone, takes longer than this).
LOOK_EVERY = 0.005
#: A fetch that failed after this many seconds (a timeout, not a refusal) is not tried
#: again for SLOW_RETRY seconds: lookups meanwhile use the last known version.
SLOW_FAILURE = 0.2
SLOW_RETRY = 1.0
#: Seconds a version is trusted without a watch (asked again after that).
UNWATCHED_MAX_AGE = 1.0
_PEEK = socket.MSG_PEEK | socket.MSG_DONTWAIT


class _Known:
    """What one process knows of one upstream: its version and the connection that watches it."""

    __slots__ = ("confirmed", "connection", "fetched_at", "looked_until", "pid", "retry_at", "version")

    def __init__(
        self, version: str, connection: http.client.HTTPConnection | None, *, confirmed: bool
    ) -> None:
        self.version = version
        self.connection = connection
        self.confirmed = confirmed
        self.fetched_at = time.monotonic()
        self.looked_until = 0.0  # the watch was open a moment ago: no need to look before this
        self.retry_at = 0.0  # not known: not asked again before this (after a slow failure)
        self.pid = os.getpid()

    def alive(self, max_age: float) -> bool:
        """Whether the version may be used without asking the host again."""
        now = time.monotonic()
        if now < self.looked_until and self.confirmed:
            return True
        if not self.confirmed or self.pid != os.getpid():
            return False
        if now - self.fetched_at >= max_age:
            return False
        connection = self.connection
        if connection is None:  # no watch (https, or a host that closes every connection)
            return time.monotonic() - self.fetched_at < UNWATCHED_MAX_AGE
        sock = connection.sock
        if sock is None:
            return False
        try:
            sock.recv(1, _PEEK)  # b"": closed by the host; bytes: nothing a host sends unasked
        except BlockingIOError:
            self.looked_until = now + LOOK_EVERY
            return True
        except OSError:
            pass
        return False

    def close(self) -> None:
        if self.connection is not None and self.pid == os.getpid():
            self.connection.close()
        self.connection = None


class CodeVersions:
    """The code version of each upstream, as this process knows it."""

    def __init__(
        self,
        *,
        unversioned: str,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        max_age: float = 60.0,
        owners: OwnerCheck | None = None,
    ) -> None:
        #: The version of the hosts that report none.
        self.unversioned = unversioned
        #: Who may hold a loopback upstream's port: another user's listener is not asked.
        self.owners = owners if owners is not None else upstream_owners()
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_age = max_age
        self._known: dict[str, _Known] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def current(self, base: str) -> str:
        """The version of the code the upstream at ``base`` runs (asked when not known)."""
        known = self._known.get(base)
        if known is not None and (known.alive(self.max_age) or time.monotonic() < known.retry_at):
            return known.version
        with self._lock:
            lock = self._locks.setdefault(base, threading.Lock())
        with lock:  # one fetch per upstream at a time; the others take its result
            known = self._known.get(base)
            if known is not None and (known.alive(self.max_age) or time.monotonic() < known.retry_at):
                return known.version
            if known is not None:
                known.close()
            fresh = self._fetch(base, known)
            self._known[base] = fresh
            return fresh.version

    def saw(self, base: str, reported: str | None) -> str:
        """An answer of ``base`` carried ``reported``: the version to store it under.

        When it is not the known one, the host is asked again before the next lookup."""
        version = clean_version(reported, self.unversioned)
        known = self._known.get(base)
        if known is None:
            # Not trusted for lookups before /status says so, but the version to look for
            # stale entries under should the host be down by then.
            self._known[base] = _Known(version, None, confirmed=False)
        elif known.version != version:
            logger.info("upstream %s answered with code version %s (known: %s)", base, version, known.version)
            known.confirmed = False
        return version

    def close(self) -> None:
        with self._lock:
            for known in self._known.values():
                known.close()
            self._known.clear()

    def _fetch(self, base: str, previous: _Known | None) -> _Known:
        parts = urlsplit(base)
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        connection = kind(parts.hostname or "127.0.0.1", parts.port, timeout=self.connect_timeout)
        started = time.monotonic()
        try:
            connection.connect()
            if connection.sock is not None:
                self.owners.check(connection.sock.getpeername())
                connection.sock.settimeout(self.read_timeout)
            connection.request("GET", "/status", headers={"Accept": "application/json"})
            response = connection.getresponse()
            body = response.read(MAX_STATUS + 1)
            # Whatever it answers, it answered: a host that reports no version is unversioned.
            reported = response.getheader(HEADER)
            if reported is None and response.status == 200:
                reported = _status_version(body)
            keep = len(body) <= MAX_STATUS and not response.will_close
            keep = keep and kind is http.client.HTTPConnection
        except (OSError, http.client.HTTPException, ForeignListener) as err:
            connection.close()
            # Not known: every lookup asks again; until the host answers, the last known
            # version (its entries may be served stale while the host is down).
            version = previous.version if previous is not None else self.unversioned
            logger.debug("code version of %s unknown (%s): using %s until it answers", base, err, version)
            unknown = _Known(version, None, confirmed=False)
            if time.monotonic() - started >= SLOW_FAILURE:
                # It did not refuse at once (a timeout): lookups do not each wait for it again.
                unknown.retry_at = unknown.fetched_at + SLOW_RETRY
            return unknown
        if keep and connection.sock is not None:
            # Non-blocking from now on: Python waits for data before recv() on a socket
            # with a timeout, even with MSG_DONTWAIT.
            connection.sock.setblocking(False)
        else:
            keep = False
            connection.close()
        version = clean_version(reported, self.unversioned)
        if previous is None or previous.version != version:
            logger.info("upstream %s runs code version %s", base, version)
        return _Known(version, connection if keep else None, confirmed=True)


def _status_version(body: bytes) -> str | None:
    """``codeVersion`` of a ``/status`` body, when it is JSON that has one."""
    try:
        status = json.loads(body)
    except (ValueError, RecursionError):
        return None
    version = status.get("codeVersion") if isinstance(status, dict) else None
    return version if isinstance(version, str) else None
