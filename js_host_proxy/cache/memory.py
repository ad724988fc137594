"""The memory backend: entries in this process only (tests, a single worker)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from js_host_proxy.cache.base import LOW_WATER, CacheBackend
from js_host_proxy.cache.entry import fresh_until
from js_host_proxy.cache.keys import Selection


class MemoryCache(CacheBackend):
    """Entries in this process only (tests, a single worker).

    Bounded by ``max_entries`` and by ``max_size`` bytes of entries (0: no byte
    bound): past either, entries are evicted down to ``LOW_WATER`` of it, those past
    their lifetime first, then stale ones, then the least recently used."""

    def __init__(self, max_entries: int = 10_000, *, max_size: int = 0) -> None:
        self.max_entries = max_entries
        self.max_size = max_size
        #: key -> (kept until, fresh until, bytes), least recently used first.
        self._data: OrderedDict[str, tuple[float, float, bytes]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """Bytes of the entries held."""
        return self._bytes

    def stats(self) -> tuple[int | None, int | None]:
        return len(self._data), self._bytes

    def get(self, key: str) -> bytes | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            if item[0] < time.time():
                self._pop(key)
                return None
            self._data.move_to_end(key)
            return item[2]

    def set(self, key: str, value: bytes, ttl: float) -> None:
        if self.max_size and len(value) > self.max_size:
            return  # it would evict everything and then itself
        now = time.time()
        with self._lock:
            self._pop(key)
            self._data[key] = (now + ttl, fresh_until(value, now + ttl), value)
            self._bytes += len(value)
            if len(self._data) > self.max_entries or (self.max_size and self._bytes > self.max_size):
                self._evict(now)

    def delete(self, key: str) -> None:
        with self._lock:
            self._pop(key)

    def _purge(self, selection: Selection, expired_only: bool) -> int:
        now = time.time()
        with self._lock:
            doomed = [
                k
                for k, (until, _, _) in self._data.items()
                if k in selection and (not expired_only or until < now)
            ]
            for k in doomed:
                self._pop(k)
        return len(doomed)

    def _pop(self, key: str) -> None:
        item = self._data.pop(key, None)
        if item is not None:
            self._bytes -= len(item[2])

    def _evict(self, now: float) -> None:
        """Down to LOW_WATER of the bounds: expired, then stale, then least recently used."""
        max_bytes = int(self.max_size * LOW_WATER) if self.max_size else None
        max_count = int(self.max_entries * LOW_WATER)

        def over() -> bool:
            return len(self._data) > max_count or (max_bytes is not None and self._bytes > max_bytes)

        before = len(self._data)
        for doomed in (lambda kept, _: kept < now, lambda _, fresh: fresh < now):
            for key in [k for k, (kept, fresh, _) in self._data.items() if doomed(kept, fresh)]:
                if not over():
                    break
                self._pop(key)
        while over():
            self._pop(next(iter(self._data)))
        if self.evicted is not None and before > len(self._data):
            self.evicted(before - len(self._data))
