"""CacheControl, configured to cache the host's POST calls.

CacheControl caches GET only by default and its maintainers consider POST out of
scope, so everything it must do here is set explicitly and checked by the tests
(tests/proxy/test_httpcache.py), against the pinned series (CacheControl 0.14):

- ``cacheable_methods=("POST",)`` on the adapter; no invalidating methods (a later
  release may make POST invalidate entries; a call must never drop its own entry).
- What is stored, and for how long, is :func:`js_host_proxy.policy.decide`'s: the
  rules of a shared cache (RFC 9111), which CacheControl, a private cache, does not
  apply (``private``, ``s-maxage``, ``Set-Cookie``, ``Vary``, ...). The adapter makes
  the decision once per answer, before its body is read, and sets it on the response
  (``response.storage``); the controller stores by it and by nothing else.
- No revalidation: no conditional headers are sent and a 304 updates nothing.
- The key is not the URL: :class:`KeyedCache` (``keyed_cache.py``) turns
  ``/function/<name>?hash=H`` into namespace + code version + name + hash, whichever
  upstream the call went to; an answer is stored under the version it carries
  (``JS-Host-Code-Version``), never under what the proxy believed the upstream ran.
  CacheControl 0.14 looks entries up by ``request.url`` but stores them by
  ``cache_url(request.url)``, so overriding ``cache_url`` alone would not do; the
  mapping is in the cache.
- Freshness: an entry's is computed once, when it is stored (``Entry.fresh_until``);
  lookups compare it with the clock. The app looks itself (``hits.py``) before a
  call, so its session skips CacheControl's lookup (``lookup=False``). No header
  is added to any answer: the default TTL lives in the decision, not in a made-up
  ``Cache-Control``.
- CacheControl's stored format is read and written beside this module only
  (``httpcache_format.py``); the rest of the proxy sees an entry's blob as opaque bytes.
- Connections read answers with :class:`js_host_proxy.connections.AlignedResponse`
  (1xx skipped, a 101 refused, a connection with bytes after an answer not reused).
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any

import requests
from cachecontrol.adapter import CacheControlAdapter
from cachecontrol.cache import BaseCache
from cachecontrol.controller import CacheController
from requests.adapters import HTTPAdapter

from js_host_proxy.connections import WHOLE_BODY, AlignedAdapter
from js_host_proxy.keyed_cache import KeyedCache
from js_host_proxy.policy import Storage, decide
from js_host_proxy.versions import HEADER

if TYPE_CHECKING:
    from collections.abc import Collection

    from requests import PreparedRequest
    from urllib3 import HTTPResponse

    from js_host.peer_owner import OwnerCheck

logger = logging.getLogger(__name__)


#: The attribute of a urllib3 response that holds its :class:`Storage` decision.
STORAGE = "js_host_proxy_storage"


class SharedCacheController(CacheController):
    """CacheControl's controller, reduced to storing by the proxy's one decision.

    Lookups return what :class:`KeyedCache` holds (fresh entries only, by the
    freshness computed when they were stored), unless ``lookup`` is off (the caller
    has just looked itself); no conditional request is made.
    """

    #: Whether :meth:`cached_request` reads the cache (set by :class:`POSTCacheAdapter`).
    lookup = True

    def __init__(self, cache: BaseCache | None = None, cache_etags: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("status_codes", (200,))
        super().__init__(cache, cache_etags=False, **kwargs)

    def cached_request(self, request: PreparedRequest) -> HTTPResponse | bool:
        if not self.lookup:
            return False
        assert isinstance(self.cache, KeyedCache) and request.url is not None
        entry = self.cache.entry(request.url)
        if entry is None:
            return False
        response = self.serializer.loads(request, entry.blob)
        if response is None:
            return False
        response.js_host_proxy_stored_at = entry.stored_at  # type: ignore[attr-defined]  # for Age
        return response

    def conditional_headers(self, request: PreparedRequest) -> dict[str, str]:
        return {}  # no revalidation (RFC 9111 §4.3 is not implemented)

    def update_cached_response(self, request: PreparedRequest, response: HTTPResponse) -> HTTPResponse:
        return response  # a 304 to an unconditional request updates nothing

    def cache_response(
        self,
        request: PreparedRequest,
        response_or_ref: HTTPResponse | weakref.ReferenceType[HTTPResponse],
        body: bytes | None = None,
        status_codes: Collection[int] | None = None,
    ) -> None:
        response = (
            response_or_ref() if isinstance(response_or_ref, weakref.ReferenceType) else response_or_ref
        )
        if response is None or request.url is None:
            return
        storage: Storage | None = getattr(response, STORAGE, None)
        if storage is None or not storage.storable:
            return
        length = response.headers.get("Content-Length")
        if body is None or (length is not None and (not length.isdigit() or int(length) != len(body))):
            # The connection closed before the end: a short body is never an entry.
            logger.debug(
                "not storing %s: %s of %s bytes", request.url, None if body is None else len(body), length
            )
            return
        self.cache.set(  # type: ignore[call-arg]
            self.cache_url(request.url),
            self.serializer.dumps(request, response, body),
            expires=storage.lifetime,
            serve_stale=storage.serve_stale,
            version=response.headers.get(HEADER),
            revalidate_for=storage.revalidate_for,
        )


class POSTCacheAdapter(CacheControlAdapter, AlignedAdapter):
    """CacheControl's adapter with the POST-caching choices above."""

    # Explicit, so that a release making POST invalidating does not change behaviour.
    invalidating_methods: frozenset[str] = frozenset()  # type: ignore[assignment]

    def __init__(
        self,
        cache: KeyedCache,
        *,
        ttl: float,
        lookup: bool = True,
        pool_maxsize: int = 16,
        stale_while_revalidate: float = 0.0,
    ) -> None:
        self.ttl = ttl
        self.stale_while_revalidate = stale_while_revalidate
        self.stale_ttl = cache.stale_ttl
        super().__init__(
            cache=cache,
            cache_etags=False,
            controller_class=SharedCacheController,
            cacheable_methods=("POST",),
            pool_connections=4,
            pool_maxsize=pool_maxsize,
        )
        # lookup=False: the caller has just missed in the cache itself, so CacheControl's
        # read of the entry is skipped; storing works as usual.
        assert isinstance(self.controller, SharedCacheController)
        self.controller.lookup = lookup

    def build_response(  # type: ignore[override]
        self,
        request: PreparedRequest,
        response: HTTPResponse,
        from_cache: bool = False,
        cacheable_methods: Collection[str] | None = None,
    ) -> requests.Response:
        """The requests response, with its storage decision made (``.storage``; None from the cache)."""
        if from_cache:
            built = super().build_response(request, response, from_cache=True)
            built.storage = None  # type: ignore[attr-defined]
            return built
        storage = decide(
            response.status,
            response.headers,
            framed=bool(response.chunked) or response.headers.get("Content-Length", "").strip().isdigit(),
            default_ttl=self.ttl,
            request_headers=request.headers,
            stale_while_revalidate=self.stale_while_revalidate,
            stale_ttl=self.stale_ttl,
        )
        logger.debug(
            "%s %s: %s", "storable" if storage.storable else "not storable", request.url, storage.reason
        )
        whole = getattr(response, WHOLE_BODY, None)
        if storage.storable and whole is not None:
            # Read whole already (AlignedAdapter): stored now, without CacheControl's copy of
            # the body to a temporary file on its way to the controller.
            setattr(response, STORAGE, storage)
            self.controller.cache_response(request, response, whole)
            built = HTTPAdapter.build_response(self, request, response)
            built.from_cache = False  # type: ignore[attr-defined]
        elif storage.storable:
            setattr(response, STORAGE, storage)
            built = super().build_response(request, response)  # CacheControl stores it once read whole
        else:
            # Nothing to store: skip CacheControl's copy of the body to a temporary file.
            built = HTTPAdapter.build_response(self, request, response)
            built.from_cache = False  # type: ignore[attr-defined]
        built.storage = storage  # type: ignore[attr-defined]
        return built


def caching_session(
    cache: KeyedCache,
    *,
    ttl: float,
    lookup: bool = True,
    pool_maxsize: int = 16,
    stale_while_revalidate: float = 0.0,
    owners: OwnerCheck | None = None,
) -> requests.Session:
    """A requests session whose POSTs are stored to ``cache`` (and looked up there, with
    ``lookup``); ``ttl`` and ``stale_while_revalidate``: the defaults of ``policy.decide``;
    ``owners``: who may hold a loopback host's port (``AlignedAdapter``'s)."""
    session = requests.Session()
    session.trust_env = False  # never send the host's traffic through an HTTP(S)_PROXY
    adapter = POSTCacheAdapter(
        cache,
        ttl=ttl,
        lookup=lookup,
        pool_maxsize=pool_maxsize,
        stale_while_revalidate=stale_while_revalidate,
    )
    if owners is not None:
        adapter.owners = owners
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def plain_session(pool_maxsize: int = 16, owners: OwnerCheck | None = None) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    adapter = AlignedAdapter(pool_connections=4, pool_maxsize=pool_maxsize)
    if owners is not None:
        adapter.owners = owners
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
