"""The Redis cache: shared by the proxies of many machines.

Entries are ``js-host-proxy:<key>`` strings that expire by themselves (freshness
+ the stale window). Coalescing across processes and machines: the process that
calls the host holds ``js-host-proxy-lock:<key>`` (``SET NX PX``); the others
block in ``BLPOP js-host-proxy-wake:<key>``, and the holder pushes a token there
when it is done; each waiter that wakes pushes it on to the next one.

Every key the proxy makes has a TTL (entries: freshness + the stale window; locks:
the lock timeout; wake-up lists: ``WAKE_TTL_MS``), so Redis may evict with
``maxmemory-policy volatile-lru`` (or ``allkeys-lru`` when Redis holds only caches).
Under the default ``noeviction`` a full Redis refuses writes: the proxy then serves
uncached and its warning names the setting.

When Redis cannot be reached the proxy keeps serving, uncached: every operation
fails fast for a few seconds (no connect timeout per request), and it is logged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

from js_host_proxy.cache.base import CacheBackend, FailureLog
from js_host_proxy.cache.keys import Selection, prefix

logger = logging.getLogger(__name__)

ENTRY = "js-host-proxy:"
LOCK = "js-host-proxy-lock:"
WAKE = "js-host-proxy-wake:"

#: Milliseconds a wake-up list lives: every key the proxy makes has a TTL, so that Redis
#: can evict under ``volatile-lru`` and nothing outlives its use.
WAKE_TTL_MS = 10_000

# Deletes the lock only if it is still ours (it may have expired and been taken).
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]) end
redis.call('del', KEYS[2])
redis.call('rpush', KEYS[2], '1')
redis.call('pexpire', KEYS[2], ARGV[2])
return 1
"""

# Passes a wake-up token on, with the list's TTL (RPUSH alone would make a key without one).
_PASS_ON = """
redis.call('rpush', KEYS[1], '1')
redis.call('pexpire', KEYS[1], ARGV[1])
return 1
"""


class RedisUnavailable(Exception):
    pass


class RedisCache(CacheBackend):
    shared = True

    def __init__(self, url: str, *, retry_after: float = 3.0) -> None:
        try:
            import redis
        except ImportError as err:
            raise ImportError(
                "the Redis cache needs redis-py: pip install 'js-host-server[proxy]' (or pip install redis)"
            ) from err
        self._redis = redis
        self.url = url
        self.retry_after = retry_after
        self._client: Any = None
        self._blocking: Any = None
        self._pid = 0
        self._down_until = 0.0
        self._failed = FailureLog(f"Redis cache {url!r}")
        self._init_lock = threading.Lock()

    # Connections are made on first use, once per process (after gunicorn forks).
    def _clients(self) -> tuple[Any, Any]:
        if time.monotonic() < self._down_until:
            raise RedisUnavailable(f"{self.url} was unreachable less than {self.retry_after:g}s ago")
        if self._pid != os.getpid():
            with self._init_lock:
                if self._pid != os.getpid():
                    redis = self._redis
                    opts = {"socket_connect_timeout": 0.5, "health_check_interval": 30}
                    self._client = redis.Redis.from_url(self.url, socket_timeout=2.0, **opts)
                    # BLPOP blocks longer than any sane socket timeout.
                    self._blocking = redis.Redis.from_url(self.url, socket_timeout=None, **opts)
                    self._pid = os.getpid()
        return self._client, self._blocking

    @contextlib.contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        try:
            yield
        except RedisUnavailable:
            raise
        except self._redis.RedisError as err:
            if isinstance(err, (self._redis.ConnectionError, self._redis.TimeoutError)):
                self._down_until = time.monotonic() + self.retry_after
            if "maxmemory" in str(err):  # OOM: full under noeviction
                err = type(err)(f"{err} (set maxmemory-policy volatile-lru or allkeys-lru on {self.url})")
            self._failed(action, err)
            raise RedisUnavailable(str(err)) from err

    def get(self, key: str) -> bytes | None:
        try:
            with self._guard("get"):
                return self._clients()[0].get(ENTRY + key)
        except RedisUnavailable:
            return None

    def set(self, key: str, value: bytes, ttl: float) -> None:
        with contextlib.suppress(RedisUnavailable), self._guard("set"):
            self._clients()[0].set(ENTRY + key, value, px=max(1, int(ttl * 1000)))

    def delete(self, key: str) -> None:
        with contextlib.suppress(RedisUnavailable), self._guard("delete"):
            self._clients()[0].delete(ENTRY + key)

    def _purge(self, selection: Selection, expired_only: bool) -> int:
        """SCAN (never KEYS) for the entries' prefix, unlinked in batches. With a namespace
        the prefix says it all (and the version too, when given); otherwise each key found
        is checked. ``expired_only``: nothing to do, Redis expires entries by itself."""
        # Purging must not pass silently: errors propagate to the command.
        if expired_only:
            return 0
        self._down_until = 0.0
        client = self._clients()[0]
        namespace, version = selection.namespace, selection.version
        if namespace is not None:
            pattern = _glob_escape(ENTRY + prefix(namespace, version)) + "*"
        elif version is not None:
            pattern = _glob_escape(ENTRY) + "*:" + _glob_escape(f"{version}:") + "*"
        else:
            pattern = _glob_escape(ENTRY) + "*"
        removed = 0
        batch: list[bytes] = []
        for name in client.scan_iter(match=pattern, count=1000):
            key = name[len(ENTRY) :].decode("utf-8", "surrogateescape")
            if key not in selection:
                continue
            batch.append(name)
            if len(batch) >= 1000:
                removed += client.unlink(*batch)
                batch = []
        if batch:
            removed += client.unlink(*batch)
        return removed

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[bool]:
        token = secrets.token_hex(8)
        ttl_ms = max(1, int(timeout * 1000))
        try:
            with self._guard("lock"):
                client, blocking = self._clients()
                acquired = client.set(LOCK + key, token, nx=True, px=ttl_ms)
                if acquired:
                    client.delete(WAKE + key)  # tokens left over from an earlier round
        except RedisUnavailable:
            yield True
            return
        if not acquired:
            with contextlib.suppress(RedisUnavailable), self._guard("wait"):
                popped = blocking.blpop([WAKE + key], timeout=max(0.01, timeout))
                if popped:  # wake the next waiter; the list is new when BLPOP emptied it
                    client.eval(_PASS_ON, 1, WAKE + key, WAKE_TTL_MS)
            yield False
            return
        try:
            yield True
        finally:
            with contextlib.suppress(RedisUnavailable), self._guard("unlock"):
                client.eval(_RELEASE, 2, LOCK + key, WAKE + key, token, WAKE_TTL_MS)

    def close(self) -> None:
        for client in (self._client, self._blocking):
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
