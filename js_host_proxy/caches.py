"""Cache backends: the stored entry format, the backend interface, the memory
backend, and :func:`open_cache` which picks one from a URL.

An entry is one byte string, written and read whole (so a backend only needs
get/set/delete of bytes)::

    b"JSHP1 <stored_at> <fresh_until> <len>[ no-stale]\\n" + <CacheControl's serialized response>

``fresh_until`` is computed once, when the response is stored, from the freshness
lifetime CacheControl derived (max-age, Expires, or the proxy's default TTL), so a
hit only compares two floats. ``len`` lets a reader refuse a truncated entry.
A backend keeps an entry ``stale_ttl`` seconds past its freshness so that it can
be served when the host is down, unless it is marked ``no-stale`` (its answer
said ``must-revalidate``, ``proxy-revalidate`` or ``s-maxage``: RFC 9111 §4.2.4).

The file and Redis backends live in their own modules and are imported lazily.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import msgpack

from js_host.exceptions import ConfigError

logger = logging.getLogger(__name__)

MAGIC = b"JSHP1"
#: The header line's flag of an entry that must not be served stale.
NO_STALE = b"no-stale"
#: CacheControl's serializer prefixes its format version.
CC_PREFIX = b"cc=4,"


@dataclass(frozen=True)
class Entry:
    stored_at: float
    fresh_until: float
    blob: bytes  # CacheControl's serialized response
    serve_stale: bool = True  # may it be served expired while the host is down?

    def dumps(self) -> bytes:
        flag = b"" if self.serve_stale else b" " + NO_STALE
        head = b"%s %.3f %.3f %d%s\n" % (MAGIC, self.stored_at, self.fresh_until, len(self.blob), flag)
        return head + self.blob

    @classmethod
    def loads(cls, data: bytes | None) -> Entry | None:
        """The entry, or None when ``data`` is empty, foreign or truncated."""
        if not data or not data.startswith(MAGIC):
            return None
        end = data.find(b"\n", 0, 80)
        try:
            _, stored_at, fresh_until, length, *flags = data[:end].split()
            blob = data[end + 1 :]
            if end < 0 or len(blob) != int(length) or flags not in ([], [NO_STALE]):
                raise ValueError("truncated")
            return cls(float(stored_at), float(fresh_until), blob, serve_stale=not flags)
        except ValueError:
            logger.warning("ignoring a malformed cache entry (%d bytes)", len(data))
            return None

    def is_fresh(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) < self.fresh_until

    def response(self) -> dict[str, Any]:
        """CacheControl's stored response: ``status``, ``headers`` (a dict), ``body`` (bytes)."""
        if not self.blob.startswith(CC_PREFIX):
            raise ValueError("not a CacheControl v4 entry")
        return msgpack.loads(self.blob[len(CC_PREFIX) :], raw=False)["response"]


class CacheBackend:
    """Bytes by key, plus a cross-process lock per key (see :mod:`js_host_proxy.coalesce`).

    Backend failures never fail a request: ``get`` returns None, ``set`` and
    ``delete`` do nothing, and the failure is logged (at most every few seconds).
    """

    #: Whether several processes see the same entries (the lock only matters then).
    shared = False

    def get(self, key: str) -> bytes | None:
        raise NotImplementedError

    def set(self, key: str, value: bytes, ttl: float) -> None:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def purge(self, namespace: str | None = None) -> int:
        """Remove every entry (of ``namespace`` only, when given); returns how many."""
        raise NotImplementedError

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[bool]:
        """Hold the key's lock across processes while the body runs, and yield True.

        When another process holds it, wait (at most ``timeout`` seconds) until it
        is released and yield False: the caller then looks in the cache again.
        The wait ends as soon as the holder releases the lock (no polling).
        """
        yield True

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


def cache_key(namespace: str, name: str, digest: str) -> str:
    """The key of a call: namespace, function name and the body's sha1."""
    return f"{namespace_prefix(namespace)}{name}:{digest}"


def namespace_prefix(namespace: str) -> str:
    # The namespace's length comes first, so that no namespace is a prefix of another's keys.
    return f"{len(namespace)}:{namespace}:"


def split_key(key: str) -> tuple[str, str, str]:
    """The inverse of :func:`cache_key`: (namespace, name, digest)."""
    length, rest = key.split(":", 1)
    namespace, rest = rest[: int(length)], rest[int(length) + 1 :]
    name, digest = rest.rsplit(":", 1)
    return namespace, name, digest


def open_cache(url: str) -> CacheBackend:
    """The backend for ``file:///path``, ``redis://host:port/db`` or ``memory://``."""
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return MemoryCache()
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise ConfigError(f"cache URL {url!r}: expected file:///absolute/path")
        from js_host_proxy.file_cache import FileCache

        return FileCache(unquote(parts.path))
    if parts.scheme in ("redis", "rediss", "unix"):
        from js_host_proxy.redis_cache import RedisCache

        return RedisCache(url)
    raise ConfigError(f"cache URL {url!r}: expected file:///path, redis://host:port/db or memory://")
