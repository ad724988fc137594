"""RFC 9211 ``Cache-Status``: how the proxy handled each answer it forwards or serves.

The proxy adds one member, named ``JS_HOST_PROXY_CACHE_NAME`` (``js-host-proxy`` by
default), after any the host's answer already carries: the first member is the cache
nearest the origin, and existing values are kept (§2). Beside ``X-Cache``:

============================  =========  ====================================================
answer                        X-Cache    Cache-Status
============================  =========  ====================================================
fresh hit                     HIT        ``js-host-proxy; hit; ttl=42`` (freshness left, §2.4)
stale, refreshed meanwhile    STALE      ``js-host-proxy; hit; ttl=-3; detail=stale-while-revalidate``
                                         (not forwarded: "a stale hit just has negative
                                         freshness", §3)
miss                          MISS       ``js-host-proxy; fwd=miss; fwd-status=200; stored; ttl=300``
                                         (``stored`` and ``ttl`` when the answer was stored)
another request's call        HIT        ``js-host-proxy; fwd=miss; collapsed`` (§2.6)
host failed, stale served     STALE      ``js-host-proxy; fwd=stale; fwd-status=503; ttl=-7;
                                         detail=stale-if-error`` (no ``fwd-status`` when no
                                         answer came)
no hash, ``GET /status``      BYPASS     ``js-host-proxy; fwd=bypass; fwd-status=200``
============================  =========  ====================================================

``fwd=miss`` rather than ``uri-miss``: the proxy does not tell an absent entry from one
expired past its stale windows (§2.2 gives ``miss`` for that case). The proxy's own
answers (400, 403, 404, 405, 413, and the 502/504 it makes when no host answered)
carry none: §2 says an intermediary should not add it to answers it generates.
"""

from __future__ import annotations

import math

FIELD = "Cache-Status"


class CacheStatus:
    """The values of this proxy's ``Cache-Status`` member (``name`` must be a token)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def hit(self, remaining: float) -> str:
        """A fresh hit, ``remaining`` seconds of freshness left."""
        return f"{self.name}; hit; ttl={math.floor(remaining)}"

    def revalidating(self, remaining: float) -> str:
        """A stale entry served at once while a background call refreshes it."""
        return f"{self.name}; hit; ttl={math.floor(remaining)}; detail=stale-while-revalidate"

    def forwarded(self, fwd: str, status: int, stored_for: float | None = None) -> str:
        """Sent on to a host for reason ``fwd`` (``miss``, ``bypass``), which answered ``status``;
        ``stored_for``: the seconds of freshness it was stored with, if it was."""
        value = f"{self.name}; fwd={fwd}; fwd-status={status}"
        return value if stored_for is None else f"{value}; stored; ttl={math.floor(stored_for)}"

    def collapsed(self) -> str:
        """Answered by another request's call of the same key (or what it stored)."""
        return f"{self.name}; fwd=miss; collapsed"

    def stale_if_error(self, status: int | None, remaining: float) -> str:
        """The host failed (answered ``status``, or nothing: None); a stale entry is served."""
        fwd_status = "" if status is None else f"; fwd-status={status}"
        return f"{self.name}; fwd=stale{fwd_status}; ttl={math.floor(remaining)}; detail=stale-if-error"
