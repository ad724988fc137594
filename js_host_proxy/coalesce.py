"""One upstream call per key at a time: concurrent misses wait for the first one.

Within a process the first thread to miss a key becomes its leader; the others
wait on a ``threading.Event`` that the leader sets the moment its call returns,
and take its answer when it is shareable (a 200 that may be stored). Across
processes (and machines, with Redis) the leader also takes the backend's lock
for the key (:meth:`CacheBackend.lock`); a process that finds it taken waits for
its release and then reads the entry the other process stored.

Waits are bounded (``lock_timeout``): a waiter that times out, or that finds no
shareable answer (an error, ``no-store``), calls the host itself, as nginx does
with ``proxy_cache_lock``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from js_host_proxy.cache.base import CacheBackend

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class _Flight(Generic[T]):
    done: threading.Event = field(default_factory=threading.Event)
    result: T | None = None


class Coalescer(Generic[T]):
    """Runs ``call()`` once for concurrent requests of the same key.

    ``lookup()`` reads the cache (None on a miss); ``call()`` asks the host (and
    stores); ``shareable(result)`` says whether waiters may use the leader's result.
    """

    def __init__(self, backend: CacheBackend, *, timeout: float) -> None:
        self.backend = backend
        self.timeout = timeout
        self._flights: dict[str, _Flight[T]] = {}
        self._lock = threading.Lock()

    def run(
        self,
        key: str,
        lookup: Callable[[], T | None],
        call: Callable[[], T],
        shareable: Callable[[T], bool],
    ) -> tuple[T, bool]:
        """(result, whether it came from another call or the cache rather than ``call()``)."""
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
        assert flight is not None
        if not leader:
            logger.debug("waiting for this process's call of %s", key)
            if flight.done.wait(self.timeout) and flight.result is not None and shareable(flight.result):
                return flight.result, True
            found = lookup()
            if found is not None:
                return found, True
            logger.debug("no shareable answer for %s: calling the host", key)
            return call(), False
        try:
            with self.backend.lock(key, self.timeout) as holder:
                if not holder:
                    logger.debug("another process called the host for %s", key)
                # Another process may have stored it since this request missed.
                found = lookup()
                if found is not None:
                    flight.result = found
                    return found, True
                if not holder:
                    logger.debug("no entry for %s after the other call: calling the host", key)
                flight.result = call()
                return flight.result, False
        finally:
            with self._lock:
                self._flights.pop(key, None)
            flight.done.set()
