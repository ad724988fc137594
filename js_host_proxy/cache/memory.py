"""The memory backend: entries in this process only (tests, a single worker)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from js_host_proxy.cache.base import CacheBackend
from js_host_proxy.cache.keys import namespace_prefix


class MemoryCache(CacheBackend):
    """Entries in this process only (tests, a single worker). Bounded: the oldest
    entries are dropped beyond ``max_entries``."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[0] < time.time():
            self.delete(key)
            return None
        return item[1]

    def set(self, key: str, value: bytes, ttl: float) -> None:
        with self._lock:
            self._data.pop(key, None)
            self._data[key] = (time.time() + ttl, value)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def purge(self, namespace: str | None = None) -> int:
        with self._lock:
            doomed = [k for k in self._data if namespace is None or k.startswith(namespace_prefix(namespace))]
            for k in doomed:
                del self._data[k]
        return len(doomed)
