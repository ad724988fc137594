"""The proxy's WSGI application: caches the host's function calls.

Use it in front of one or more js-host hosts, with the client's
``URL_OVERRIDE`` pointing at it; gunicorn runs it (``js-host-proxy serve``, with
``js_host_proxy.gunicorn_settings``). In code::

    from js_host_proxy.app import ProxyApp
    from js_host_proxy.config import ProxyConfig

    app = ProxyApp(ProxyConfig(upstreams=("http://127.0.0.1:9009",), cache_url="memory://"))

What it answers:

- ``POST /function/<name>?hash=H`` with ``H == sha1(body)``: from the cache when a
  fresh entry exists (``X-Cache: HIT``), else from the host (``MISS``), stored when
  a shared cache may store the answer (``policy.py``). The key is the namespace, the
  code version the host runs (``versions.py``), the name and the body's hash, so such
  calls reach the host without the client's ``Cookie`` and ``Authorization``.
  An entry expired less than its stale-while-revalidate window ago is served at once
  (``STALE``) while one background call refreshes it (``revalidate.py``).
  A wrong hash is refused (400); no hash is forwarded uncached (``BYPASS``).
  Host down or timing out: a stale entry when there is one (``STALE``), else 502/504.
- ``POST /batch``: many calls in one request, each job answered as its single call
  would be (from the cache or, all misses in one upstream batch, from the host): ``batch.py``.
- ``GET /status``: forwarded, so that clients connect through the proxy.
- ``POST /purge``: only when ``JS_HOST_PROXY_PURGE_TOKEN`` is set (``purge_endpoint.py``).
- ``GET /health``, ``GET /ready``, ``GET /metrics``: the proxy's own (``observe.py``, which
  every request passes first: it also gives each one its ``X-Request-Id``).
- The manager's endpoints (``/manager/*``, ``/host/*``): refused (403).

A MISS carries exactly the host's end-to-end header fields plus ``X-Cache`` and
``Cache-Status`` (RFC 9211, ``cache_status.py``); a HIT or STALE answer the stored ones
plus ``Age`` (RFC 9111 §5.1), ``X-Cache`` and ``Cache-Status``. The proxy adds nothing else.

This module routes the requests and answers hits; ``request_body.py`` reads their
bodies, ``hits.py`` reads the cache (for hits, waiting requests and stale answers
alike), ``calls.py`` calls the hosts.
The hit path reads the backend directly and compares two floats; CacheControl
stores on the miss path what ``policy.decide`` allows (see ``httpcache.py``, and
the README for the measurements behind this split).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, quote

from js_host_proxy import purge_endpoint
from js_host_proxy.batch import BatchEndpoint
from js_host_proxy.cache.base import CacheBackend
from js_host_proxy.cache.factory import open_cache
from js_host_proxy.cache.keys import cache_key, unversioned
from js_host_proxy.cache_status import CacheStatus
from js_host_proxy.calls import HostCalls
from js_host_proxy.coalesce import Coalescer
from js_host_proxy.config import ProxyConfig
from js_host_proxy.connections import upstream_owners
from js_host_proxy.fields import forwarded_headers
from js_host_proxy.hits import HitReader
from js_host_proxy.keyed_cache import KeyedCache
from js_host_proxy.observe import Observer
from js_host_proxy.paths import FUNCTION_PREFIX
from js_host_proxy.replies import Reply, StartResponse, text_reply
from js_host_proxy.request_body import body_or_refusal, read_body
from js_host_proxy.revalidate import Revalidator
from js_host_proxy.versions import CodeVersions

# read_body: importable from here, as it always was (bench/support/cachecontrol_hits.py).
__all__ = ["ProxyApp", "create_app", "read_body"]

logger = logging.getLogger(__name__)


class ProxyApp:
    """The caching reverse proxy as a WSGI callable (one per gunicorn worker)."""

    def __init__(self, config: ProxyConfig, *, backend: CacheBackend | None = None) -> None:
        self.config = config
        self.backend = (
            backend if backend is not None else open_cache(config.cache_url, max_size=config.max_size)
        )
        if hasattr(self.backend, "stale_ttl"):
            self.backend.stale_ttl = config.stale_ttl
        # The code version each upstream runs: part of every key (see versions.py).
        self.versions = CodeVersions(
            unversioned=unversioned(config.upstreams),
            connect_timeout=config.connect_timeout,
            read_timeout=min(config.upstream_timeout, 5.0),  # /status answers at once
            max_age=config.version_ttl,
            owners=upstream_owners(config.upstream_uids),
        )
        self.cache = KeyedCache(
            self.backend, namespace=config.namespace, stale_ttl=config.stale_ttl, versions=self.versions
        )
        self.hits = HitReader(self.backend, names=CacheStatus(config.cache_name))
        self.calls = HostCalls(config, self.cache, self.hits)
        self.coalescer: Coalescer[Reply] = Coalescer(self.backend, timeout=config.lock_timeout)
        self.revalidator = Revalidator()
        self.batch = BatchEndpoint(
            config, hits=self.hits, calls=self.calls, cache=self.cache, versions=self.versions
        )
        # Request ids, metrics, /metrics and /health (observe.py): every request passes it.
        self.observer = Observer(config, self.backend, self.calls.pool)
        if self.observer.metrics is not None:  # a batch's jobs are counted as single calls are
            self.batch.counted = self.observer.metrics.request
            self.batch.host_answered = self.observer.metrics.host_answered

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        return self.observer.handle(environ, start_response, self.route)

    def route(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ["REQUEST_METHOD"]
        if path.startswith(FUNCTION_PREFIX):
            if method != "POST":
                return text_reply(
                    405, f"js-host-proxy: functions are called with POST, not {method}", [("Allow", "POST")]
                ).send(start_response)
            return self.call_function(environ, start_response, path[len(FUNCTION_PREFIX) :])
        if path == "/status":
            if method not in ("GET", "HEAD"):
                return text_reply(405, "js-host-proxy: GET /status", [("Allow", "GET, HEAD")]).send(
                    start_response
                )
            return self.calls.forward(environ, "GET", "/status", None).send(start_response, "BYPASS")
        if path == "/batch":
            return self.call_batch(environ, start_response, method)
        if path == purge_endpoint.PATH and self.config.purge_token:
            return self.purge(environ, start_response, method)
        if path.startswith(("/manager/", "/host/")) or path in ("/manager", "/host"):
            return text_reply(
                403,
                f"js-host-proxy does not forward the manager's endpoints ({method} {path}). "
                "A manager is for development; start and stop hosts next to them, not through the proxy.",
            ).send(start_response)
        return text_reply(
            404,
            f"js-host-proxy: no route for {method} {path}. "
            "It forwards POST /function/<name>, POST /batch and GET /status.",
        ).send(start_response)

    def call_function(
        self, environ: dict[str, Any], start_response: StartResponse, name: str
    ) -> Iterable[bytes]:
        body = body_or_refusal(environ, self.config.max_body, "the request body is")
        if isinstance(body, Reply):
            return body.send(start_response)
        query = environ.get("QUERY_STRING", "")
        given = _hash_param(query)
        if given is None:
            logger.debug("no hash for %s: forwarded uncached", name)
            return self.calls.forward(environ, "POST", _path_qs(name, query), body).send(
                start_response, "BYPASS"
            )
        digest = hashlib.sha1(body).hexdigest()
        if given.lower() != digest:
            logger.debug("hash mismatch for %s: %s != %s", name, given, digest)
            return text_reply(
                400,
                f"js-host-proxy: ?hash={given[:64]!r} is not the sha1 of the request body ({digest}). "
                "Send hash=sha1(body) of the exact bytes sent, or no hash to bypass the cache.",
            ).send(start_response)

        # Keyed on the code the upstream this call would go to runs, as known now.
        version = self.versions.current(self.calls.pool.peek())
        key = cache_key(self.config.namespace, version, name, digest)
        hit = self.hits.read(key, revalidating=True)
        if hit is not None:
            if hit.is_fresh():
                logger.debug("HIT %s", key)
                return hit.send(start_response)
            # RFC 5861 §3: served at once; one background call refreshes the entry.
            if not self.revalidator.pending(key):
                self.revalidate(key, _path_qs(name, query), body, forwarded_headers(environ, cached=True))
            logger.debug("STALE %s: served while it is refreshed", key)
            remaining = hit.fresh_until - time.time()
            return hit.stale(self.hits.names.revalidating(remaining)).send(start_response)

        def lookup() -> Reply | None:
            found = self.hits.read(key)
            return None if found is None else found.reply("HIT")

        def call() -> Reply:
            return self.calls.cached(environ, _path_qs(name, query), body, key)

        reply, shared = self.coalescer.run(key, lookup, call, lambda r: r.shareable)
        if shared:
            self.observer.coalesced()
        state = reply.state
        collapsed = None
        if shared and state != "STALE":
            state = "HIT"  # another request's stored answer, not this one's call
            collapsed = self.hits.names.collapsed()
        logger.debug("%s %s (status %s)", state, key, reply.status)
        return reply.send(start_response, state, collapsed)

    def call_batch(
        self, environ: dict[str, Any], start_response: StartResponse, method: str
    ) -> Iterable[bytes]:
        """``POST /batch``: see batch.py."""
        if method != "POST":
            return text_reply(405, "js-host-proxy: POST /batch", [("Allow", "POST")]).send(start_response)
        body = body_or_refusal(
            environ, self.config.max_body, "the batch is", ": split it into smaller batches"
        )
        if isinstance(body, Reply):
            return body.send(start_response)
        return self.batch.answer(environ, body).send(start_response)

    def revalidate(self, key: str, path_qs: str, body: bytes, headers: dict[str, str]) -> bool:
        """Refresh ``key``'s entry in the background, coalesced like a miss (at most one call
        to the host for it across workers and machines); returns whether it was queued.
        ``headers``: the request fields to send (``forwarded_headers(cached=True)``)."""

        def lookup() -> Reply | None:
            found = self.hits.read(key)  # fresh: another refresh or a miss stored it meanwhile
            return None if found is None else found.reply("HIT")

        def call() -> Reply:
            # No stale answer on failure: nothing is stored, so the entry stays (stale-if-error).
            return self.calls.call_cached(path_qs, body, headers, key, stale_if_error=False)

        def refresh() -> None:
            logger.debug("refreshing %s in the background", key)
            reply, shared = self.coalescer.run(key, lookup, call, lambda r: r.shareable)
            if shared:
                logger.debug("refresh of %s: another call stored it", key)
            elif reply.shareable:
                logger.debug("refreshed %s", key)
            else:
                logger.info(
                    "the refresh of %s got %s, not stored: the stale entry is served until its window ends",
                    key,
                    reply.status,
                )

        return self.revalidator.submit(key, refresh)

    def purge(self, environ: dict[str, Any], start_response: StartResponse, method: str) -> Iterable[bytes]:
        """``POST /purge`` (only when JS_HOST_PROXY_PURGE_TOKEN is set): see purge_endpoint.py."""
        if method != "POST":
            return text_reply(405, "js-host-proxy: POST /purge", [("Allow", "POST")]).send(start_response)
        try:
            body = read_body(environ, 64 * 1024)
        except ValueError as err:
            return text_reply(400, f"js-host-proxy: {err}").send(start_response)
        if body is None:
            return text_reply(413, "js-host-proxy: POST /purge takes a small JSON body").send(start_response)
        return purge_endpoint.purge(environ, body, self.backend, self.config.purge_token).send(start_response)

    def close(self) -> None:
        self.revalidator.close()  # first: no refresh starts once the connections are closing
        self.calls.close()
        self.versions.close()
        self.backend.close()


def create_app(config: ProxyConfig | None = None) -> ProxyApp:
    """The app for ``config`` (default: from the JS_HOST_PROXY_* environment)."""
    return ProxyApp(config if config is not None else ProxyConfig.from_env())


def _path_qs(name: str, query: str) -> str:
    """The path and query sent to the host for function ``name`` (a WSGI string)."""
    return FUNCTION_PREFIX + quote(_wsgi_bytes(name), safe="") + ("?" + query if query else "")


def _hash_param(query: str) -> str | None:
    if not query:
        return None
    if query.startswith("hash=") and "&" not in query:
        return query[5:] or None  # the client's exact form, without parsing
    values = parse_qs(query).get("hash")
    return values[0] if values else None


def _wsgi_bytes(text: str) -> bytes:
    # PEP 3333: the server decoded the path's bytes as latin-1.
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape")
