"""The cache backend interface: bytes by key, plus a cross-process lock per key.

A backend stores :class:`~js_host_proxy.cache.entry.Entry` bytes under the keys of
:mod:`js_host_proxy.cache.keys`; the lock lets one process call the host for a key
while the others wait (:mod:`js_host_proxy.coalesce`). :class:`FailureLog` is how
every backend reports trouble without failing a request.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator

from js_host_proxy.cache.keys import Selection

logger = logging.getLogger(__name__)

#: A bounded backend past its bound evicts down to this share of it, so that the
#: next writes do not evict again at once.
LOW_WATER = 0.9


class CacheBackend:
    """Bytes by key, plus a cross-process lock per key (see :mod:`js_host_proxy.coalesce`).

    Backend failures never fail a request: ``get`` returns None, ``set`` and
    ``delete`` do nothing, and the failure is logged (at most every few seconds).
    """

    #: Whether several processes see the same entries (the lock only matters then).
    shared = False
    #: Called with how many entries were evicted to stay under the bound (the metrics).
    evicted: Callable[[int], None] | None = None

    def get(self, key: str) -> bytes | None:
        raise NotImplementedError

    def set(self, key: str, value: bytes, ttl: float) -> None:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def purge(
        self,
        namespace: str | None = None,
        *,
        version: str | None = None,
        function: str | None = None,
        expired_only: bool = False,
    ) -> int:
        """Remove the entries of ``namespace``, code ``version`` and ``function`` (each:
        all when None; all given at once), only those past their stale window with
        ``expired_only``; returns how many.

        What ``js-host-proxy purge`` and ``POST /purge`` call, the same for every
        backend; each backend implements :meth:`_purge`."""
        return self._purge(Selection(namespace, version, function), expired_only)

    def _purge(self, selection: Selection, expired_only: bool) -> int:
        """Remove the entries whose keys are in ``selection`` (only those past their
        stale window with ``expired_only``); returns how many."""
        raise NotImplementedError

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[bool]:
        """Hold the key's lock across processes while the body runs, and yield True.

        When another process holds it, wait (at most ``timeout`` seconds) until it
        is released and yield False: the caller then looks in the cache again.
        The wait ends as soon as the holder releases the lock (no polling).
        """
        yield True

    def stats(self) -> tuple[int | None, int | None]:
        """(entries, bytes of entries) held, each None when not known cheaply."""
        return None, None

    def close(self) -> None:
        pass


class FailureLog:
    """Logs a backend failure, then at most once every ``every`` seconds."""

    def __init__(self, what: str, every: float = 10.0) -> None:
        self.what = what
        self.every = every
        self._last = 0.0

    def __call__(self, action: str, err: BaseException) -> None:
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            logger.warning("%s: %s failed, serving uncached: %s", self.what, action, err)
        else:
            logger.debug("%s: %s failed: %s", self.what, action, err)
