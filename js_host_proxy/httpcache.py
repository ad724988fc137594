"""CacheControl, configured to cache the host's POST calls.

CacheControl caches GET only by default and its maintainers consider POST out of
scope, so everything it must do here is set explicitly and checked by the tests
(tests/proxy/test_httpcache.py), against the pinned series (CacheControl 0.14):

- ``cacheable_methods=("POST",)`` on the adapter; no invalidating methods (a later
  release may make POST invalidate entries; a call must never drop its own entry).
- Only 200s are stored (CacheControl would also store 203, 300, 301, 308).
- No ETag revalidation (the host sends none for calls; an ETag would keep entries 14 days).
- The key is not the URL: :class:`KeyedCache` turns ``/function/<name>?hash=H`` into
  namespace + name + hash, whichever upstream the call went to. CacheControl 0.14
  looks entries up by ``request.url`` but stores them by ``cache_url(request.url)``,
  so overriding ``cache_url`` alone would not do; the mapping is in the cache.
- Freshness: the host's Cache-Control (``no-store``, ``max-age``) or Expires wins
  (RFC 9111 §4.2.1); without either, :class:`DefaultTTL` adds ``max-age=<TTL>``.
"""

from __future__ import annotations

import logging
import time
from email.utils import formatdate
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote_to_bytes, urlsplit

import requests
from cachecontrol.adapter import CacheControlAdapter
from cachecontrol.cache import BaseCache
from cachecontrol.controller import CacheController
from cachecontrol.heuristics import BaseHeuristic
from requests.adapters import HTTPAdapter

from js_host_proxy.caches import CacheBackend, Entry, cache_key

if TYPE_CHECKING:
    from datetime import datetime

    from requests import PreparedRequest
    from urllib3 import HTTPResponse

logger = logging.getLogger(__name__)

FUNCTION_PREFIX = "/function/"


class KeyedCache(BaseCache):
    """CacheControl's cache interface over a proxy backend, keyed on name + hash + namespace.

    ``get`` returns fresh entries only: an expired entry stays in the backend (to
    be served if the host is down) but CacheControl never sees it, so it never
    deletes it either.
    """

    def __init__(self, backend: CacheBackend, *, namespace: str, stale_ttl: float) -> None:
        self.backend = backend
        self.namespace = namespace
        self.stale_ttl = stale_ttl

    def key_for_url(self, url: str) -> str | None:
        parts = urlsplit(url)
        if not parts.path.startswith(FUNCTION_PREFIX):
            return None
        digest = parse_qs(parts.query).get("hash")
        if not digest:
            return None
        # The app quoted the name's WSGI (latin-1) string; undo exactly that.
        name = unquote_to_bytes(parts.path[len(FUNCTION_PREFIX) :]).decode("latin-1")
        return cache_key(self.namespace, name, digest[0].lower())

    def get(self, key: str) -> bytes | None:
        cache_key_ = self.key_for_url(key)
        if cache_key_ is None:
            return None
        entry = Entry.loads(self.backend.get(cache_key_))
        if entry is None or not entry.is_fresh():
            return None
        return entry.blob

    def set(self, key: str, value: bytes, expires: int | datetime | None = None) -> None:
        cache_key_ = self.key_for_url(key)
        if cache_key_ is None:
            return
        if not isinstance(expires, (int, float)) or expires <= 0:
            # No lifetime (or a date we cannot trust): RFC 9111 §4.2.1 makes it stale at once.
            logger.debug("not storing %s: no positive freshness lifetime (%r)", cache_key_, expires)
            return
        now = time.time()
        logger.debug("storing %s, fresh for %ss", cache_key_, expires)
        entry = Entry(now, now + expires, value)
        self.backend.set(cache_key_, entry.dumps(), ttl=expires + self.stale_ttl)

    def delete(self, key: str) -> None:
        cache_key_ = self.key_for_url(key)
        if cache_key_ is not None:
            self.backend.delete(cache_key_)


class OnlyOKController(CacheController):
    """Stores 200 responses only: a function's output, never an error or a redirect."""

    def __init__(self, cache: BaseCache | None = None, cache_etags: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("status_codes", (200,))
        super().__init__(cache, cache_etags=False, **kwargs)


class DefaultTTL(BaseHeuristic):
    """``max-age=<ttl>`` for responses whose host said nothing about freshness.

    The host's own Cache-Control or Expires is left untouched (it wins). A Date is
    added when missing, since CacheControl stores nothing without one.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = int(ttl)

    def update_headers(self, response: HTTPResponse) -> dict[str, str]:
        headers: dict[str, str] = {}
        if "date" not in response.headers:
            headers["Date"] = formatdate(usegmt=True)
        said = "cache-control" in response.headers or "expires" in response.headers
        if response.status == 200 and not said:
            headers["Cache-Control"] = f"max-age={self.ttl}" if self.ttl > 0 else "no-store"
        return headers

    def warning(self, response: HTTPResponse) -> str | None:
        return None  # the proxy's own default, not a guess about someone else's response


class POSTCacheAdapter(CacheControlAdapter):
    """CacheControl's adapter with the POST-caching choices above."""

    # Explicit, so that a release making POST invalidating does not change behaviour.
    invalidating_methods: frozenset[str] = frozenset()  # type: ignore[assignment]

    def __init__(self, cache: KeyedCache, *, ttl: float, lookup: bool = True, pool_maxsize: int = 16) -> None:
        # lookup=False: the caller has just missed in the cache itself, so skip CacheControl's two
        # reads of the entry (cached_request, conditional_headers); storing works as usual.
        self.lookup = lookup
        super().__init__(
            cache=cache,
            cache_etags=False,
            controller_class=OnlyOKController,
            heuristic=DefaultTTL(ttl),
            cacheable_methods=("POST",),
            pool_connections=4,
            pool_maxsize=pool_maxsize,
        )

    def send(  # type: ignore[override]
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
        cacheable_methods: Any = None,
    ) -> requests.Response:
        if self.lookup:
            return super().send(request, stream, timeout, verify, cert, proxies, cacheable_methods)
        # HTTPAdapter.send calls self.build_response, which is where CacheControl stores.
        return HTTPAdapter.send(self, request, stream, timeout, verify, cert, proxies)


def caching_session(
    cache: KeyedCache, *, ttl: float, lookup: bool = True, pool_maxsize: int = 16
) -> requests.Session:
    """A requests session whose POSTs are stored to ``cache`` (and looked up there, with ``lookup``)."""
    session = requests.Session()
    session.trust_env = False  # never send the host's traffic through an HTTP(S)_PROXY
    adapter = POSTCacheAdapter(cache, ttl=ttl, lookup=lookup, pool_maxsize=pool_maxsize)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def plain_session(pool_maxsize: int = 16) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_maxsize)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
