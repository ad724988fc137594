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
- The key is not the URL: :class:`KeyedCache` turns ``/function/<name>?hash=H`` into
  namespace + code version + name + hash, whichever upstream the call went to; an
  answer is stored under the version it carries (``JS-Host-Code-Version``), never
  under what the proxy believed the upstream ran. CacheControl 0.14
  looks entries up by ``request.url`` but stores them by ``cache_url(request.url)``,
  so overriding ``cache_url`` alone would not do; the mapping is in the cache.
- Freshness: an entry's is computed once, when it is stored (``Entry.fresh_until``);
  lookups compare it with the clock. The app looks itself (``hits.py``) before a
  call, so its session skips CacheControl's lookup (``lookup=False``). No header
  is added to any answer: the default TTL lives in the decision, not in a made-up
  ``Cache-Control``.
- CacheControl's stored format is read here only (:func:`stored_response`); the
  rest of the proxy sees an entry's blob as opaque bytes.
- Connections read answers with :class:`js_host_proxy.connections.AlignedResponse`
  (1xx skipped, a 101 refused, a connection with bytes after an answer not reused).
"""

from __future__ import annotations

import logging
import re
import time
import weakref
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote_to_bytes, urlsplit

import msgpack
import requests
from cachecontrol.adapter import CacheControlAdapter
from cachecontrol.cache import BaseCache
from cachecontrol.controller import CacheController
from requests.adapters import HTTPAdapter

from js_host_proxy.cache.base import CacheBackend
from js_host_proxy.cache.entry import Entry
from js_host_proxy.cache.keys import UNVERSIONED, cache_key
from js_host_proxy.connections import WHOLE_BODY, AlignedAdapter
from js_host_proxy.paths import FUNCTION_PREFIX
from js_host_proxy.policy import Storage, decide
from js_host_proxy.versions import HEADER, CodeVersions

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping
    from datetime import datetime

    from requests import PreparedRequest
    from urllib3 import HTTPResponse

logger = logging.getLogger(__name__)

#: CacheControl's serializer prefixes its format version.
CC_PREFIX = b"cc=4,"
# The usual URL of a cached call: a name with nothing quoted and ?hash=<lower-case sha1>
# (what key_for_url's full parse gives for it, without the parse).
_PLAIN_CALL = re.compile(r"^([a-z][a-z0-9+.-]*://[^/?#]*)/function/([A-Za-z0-9._~-]+)\?hash=([0-9a-f]{40})$")


def stored_response(blob: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, header fields, body) of the response CacheControl serialized as ``blob``.

    Raises ValueError, KeyError or TypeError for bytes CacheControl did not write."""
    if not blob.startswith(CC_PREFIX):
        raise ValueError("not a CacheControl v4 entry")
    stored = msgpack.loads(blob[len(CC_PREFIX) :], raw=False)["response"]
    return stored["status"], stored["headers"], stored["body"]


def stored_blob(status: int, headers: Mapping[str, str], body: bytes) -> bytes:
    """The bytes CacheControl 0.14's serializer writes for an answer (``Serializer.dumps``
    with no ``Vary``), for answers that did not come through a requests session (a
    batch's jobs, ``js_host_proxy/batch.py``): read back by :func:`stored_response`."""
    response = {
        "body": body,
        "headers": {str(k): str(v) for k, v in headers.items()},
        "status": status,
        "version": 11,
        "reason": "OK" if status == 200 else "",
        "decode_content": True,
    }
    return CC_PREFIX + msgpack.dumps({"response": response, "vary": {}}, use_bin_type=True)


class KeyedCache(BaseCache):
    """CacheControl's cache interface over a proxy backend, keyed on namespace + code
    version + name + hash.

    ``get`` returns fresh entries only: an expired entry stays in the backend (to
    be served if the host is down) but CacheControl never sees it, so it never
    deletes it either. Lookups use the version ``versions`` knows for the URL's
    upstream; stores the one the answer carries.
    """

    def __init__(
        self,
        backend: CacheBackend,
        *,
        namespace: str,
        stale_ttl: float,
        versions: CodeVersions | None = None,
    ) -> None:
        self.backend = backend
        self.namespace = namespace
        self.stale_ttl = stale_ttl
        self.versions = versions if versions is not None else CodeVersions(unversioned=UNVERSIONED)

    def key_for_url(self, url: str) -> str | None:
        """The key to look ``url``'s call up: under the version its upstream runs."""
        call = call_of(url)
        if call is None:
            return None
        base, name, digest = call
        return cache_key(self.namespace, self.versions.current(base), name, digest)

    def stored_key(self, url: str, reported: str | None) -> str | None:
        """The key to store the answer to ``url``'s call under: the version it carried
        (``reported``; None when it carried none)."""
        call = call_of(url)
        if call is None:
            return None
        base, name, digest = call
        return cache_key(self.namespace, self.versions.saw(base, reported), name, digest)

    def entry(self, url: str) -> Entry | None:
        """The fresh entry for ``url``, if any."""
        cache_key_ = self.key_for_url(url)
        if cache_key_ is None:
            return None
        entry = Entry.loads(self.backend.get(cache_key_))
        if entry is None or not entry.is_fresh():
            return None
        return entry

    def get(self, key: str) -> bytes | None:
        entry = self.entry(key)
        return None if entry is None else entry.blob

    def set(
        self,
        key: str,
        value: bytes,
        expires: int | float | datetime | None = None,
        *,
        serve_stale: bool = True,
        version: str | None = None,
        revalidate_for: float = 0.0,
    ) -> None:
        """Store ``value`` for the call of URL ``key``, whose answer carried ``version``."""
        cache_key_ = self.stored_key(key, version)
        if cache_key_ is None:
            return
        if not isinstance(expires, (int, float)) or expires <= 0:
            # No lifetime (or a date we cannot trust): RFC 9111 §4.2.1 makes it stale at once.
            logger.debug("not storing %s: no positive freshness lifetime (%r)", cache_key_, expires)
            return
        now = time.time()
        logger.debug("storing %s, fresh for %ss", cache_key_, expires)
        entry = Entry(now, now + expires, value, serve_stale=serve_stale, revalidate_for=revalidate_for)
        self.backend.set(cache_key_, entry.dumps(), ttl=expires + (self.stale_ttl if serve_stale else 0))

    def store_answer(self, url: str, headers: Mapping[str, str], body: bytes, storage: Storage) -> None:
        """Store a 200 answer to the call of ``url`` that came without a requests session (a
        batch's job), by the same decision (``storage``, :func:`policy.decide`) and under the
        same key as the answer to a single call would be."""
        if not storage.storable:
            return
        self.set(
            url,
            stored_blob(200, headers, body),
            expires=storage.lifetime,
            serve_stale=storage.serve_stale,
            version=headers.get(HEADER),
            revalidate_for=storage.revalidate_for,
        )

    def delete(self, key: str) -> None:
        cache_key_ = self.key_for_url(key)
        if cache_key_ is not None:
            self.backend.delete(cache_key_)


def call_of(url: str) -> tuple[str, str, str] | None:
    """(upstream base URL, function name, hash) of a function call's URL; None for others."""
    plain = _PLAIN_CALL.match(url)
    if plain is not None:  # the app's own form: nothing to unquote, a lower-case hex hash
        return plain[1], plain[2], plain[3]
    parts = urlsplit(url)
    if not parts.path.startswith(FUNCTION_PREFIX):
        return None
    digest = parse_qs(parts.query).get("hash")
    if not digest:
        return None
    # The app quoted the name's WSGI (latin-1) string; undo exactly that.
    name = unquote_to_bytes(parts.path[len(FUNCTION_PREFIX) :]).decode("latin-1")
    return f"{parts.scheme}://{parts.netloc}", name, digest[0].lower()


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
) -> requests.Session:
    """A requests session whose POSTs are stored to ``cache`` (and looked up there, with
    ``lookup``); ``ttl`` and ``stale_while_revalidate``: the defaults of ``policy.decide``."""
    session = requests.Session()
    session.trust_env = False  # never send the host's traffic through an HTTP(S)_PROXY
    adapter = POSTCacheAdapter(
        cache,
        ttl=ttl,
        lookup=lookup,
        pool_maxsize=pool_maxsize,
        stale_while_revalidate=stale_while_revalidate,
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def plain_session(pool_maxsize: int = 16) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    adapter = AlignedAdapter(pool_connections=4, pool_maxsize=pool_maxsize)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
