"""The backend for a cache URL (``JS_HOST_PROXY_CACHE``).

Every backend module is imported here: none needs an optional dependency at
import time (the Redis backend imports redis-py when it is made, and says to
``pip install 'js-host-server[proxy]'`` when it is missing).
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from js_host.exceptions import ConfigError
from js_host_proxy.cache.base import CacheBackend
from js_host_proxy.cache.file import FileCache
from js_host_proxy.cache.memory import MemoryCache
from js_host_proxy.cache.redis import RedisCache


def open_cache(url: str, *, max_size: int = 0) -> CacheBackend:
    """The backend for ``file:///path``, ``redis://host:port/db`` or ``memory://``.

    ``max_size``: bytes of entries the file and memory caches keep at most (0: no
    bound); Redis has its own (``maxmemory``)."""
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return MemoryCache(max_size=max_size)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise ConfigError(f"cache URL {url!r}: expected file:///absolute/path")
        return FileCache(unquote(parts.path), max_size=max_size)
    if parts.scheme in ("redis", "rediss", "unix"):
        return RedisCache(url)
    raise ConfigError(f"cache URL {url!r}: expected file:///path, redis://host:port/db or memory://")
