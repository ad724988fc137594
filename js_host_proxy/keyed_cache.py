"""The cache CacheControl stores into: a proxy backend keyed on namespace + code version +
function name + hash, not on the URL.

:class:`KeyedCache` turns ``/function/<name>?hash=H`` into the key whichever upstream
the call went to (``cache/keys.py``); a lookup uses the code version the proxy knows the
upstream runs (``versions.py``), a store the one the answer carries
(``JS-Host-Code-Version``). Entries are written whole (``cache/entry.py``), with the
freshness the storage decision gave (``policy.decide``), by CacheControl's controller
(``httpcache.py``) for single calls and by :meth:`KeyedCache.store_answer` for a batch's
jobs, under the same key.
"""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote_to_bytes, urlsplit

from cachecontrol.cache import BaseCache

from js_host_proxy.cache.base import CacheBackend
from js_host_proxy.cache.entry import Entry
from js_host_proxy.cache.keys import UNVERSIONED, cache_key
from js_host_proxy.httpcache_format import stored_blob
from js_host_proxy.paths import FUNCTION_PREFIX
from js_host_proxy.policy import Storage
from js_host_proxy.versions import HEADER, CodeVersions

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

# Under the name users configure for the cache decisions' records, whichever module writes them.
logger = logging.getLogger("js_host_proxy.httpcache")

# The usual URL of a cached call: a name with nothing quoted and ?hash=<lower-case sha1>
# (what key_for_url's full parse gives for it, without the parse).
_PLAIN_CALL = re.compile(r"^([a-z][a-z0-9+.-]*://[^/?#]*)/function/([A-Za-z0-9._~-]+)\?hash=([0-9a-f]{40})$")


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
