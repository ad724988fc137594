"""The proxy's WSGI application: caches the host's function calls.

Use it in front of one or more js-host hosts, with the client's
``URL_OVERRIDE`` pointing at it; gunicorn runs it (``gunicorn`` in the project
root reads ``gunicorn.conf.py``). In code::

    from js_host_proxy.app import ProxyApp
    from js_host_proxy.config import ProxyConfig

    app = ProxyApp(ProxyConfig(upstreams=("http://127.0.0.1:9009",), cache_url="memory://"))

What it answers:

- ``POST /function/<name>?hash=H`` with ``H == sha1(body)``: from the cache when a
  fresh entry exists (``X-Cache: HIT``), else from the host (``MISS``), stored when
  a shared cache may store the answer (``policy.py``). The key is the body, so such
  calls reach the host without the client's ``Cookie`` and ``Authorization``.
  A wrong hash is refused (400); no hash is forwarded uncached (``BYPASS``).
  Host down or timing out: a stale entry when there is one (``STALE``), else 502/504.
- ``GET /status``: forwarded, so that clients connect through the proxy.
- The manager's endpoints (``/manager/*``, ``/host/*``): refused (403).

A MISS carries exactly the host's end-to-end header fields plus ``X-Cache``; a HIT the
stored ones plus ``Age`` (RFC 9111 §5.1) and ``X-Cache``. The proxy adds nothing else.

The hit path reads the backend directly and compares two floats; CacheControl
decides on the miss path what is stored and for how long (see ``httpcache.py``,
and the README for the measurements behind this split).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qs, quote

from werkzeug.http import HTTP_STATUS_CODES

from js_host_proxy.cache.base import CacheBackend
from js_host_proxy.cache.entry import Entry
from js_host_proxy.cache.factory import open_cache
from js_host_proxy.cache.keys import cache_key
from js_host_proxy.coalesce import Coalescer
from js_host_proxy.config import ProxyConfig
from js_host_proxy.httpcache import KeyedCache, caching_session, plain_session, stored_response
from js_host_proxy.upstream import UpstreamError, UpstreamPool

if TYPE_CHECKING:
    import requests

    StartResponse = Callable[..., Any]

logger = logging.getLogger(__name__)

FUNCTION_PREFIX = "/function/"
VIA = "1.1 js-host-proxy"  # sent to the host (RFC 9110 §7.6.3), not added to answers

# RFC 9110 §7.6.1: connection-specific fields are never forwarded (nor those named
# in Connection). Content-Length is recomputed for the body actually sent.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
        "trailer",
        "proxy-authenticate",
        "proxy-authorization",
        "content-length",
    }
)
# Request fields the proxy decides itself: the cache policy is the proxy's, the
# body encoding is negotiated per hop.
NOT_FORWARDED = HOP_BY_HOP | {"host", "cache-control", "pragma", "accept-encoding", "expect"}
# Nor, on cached calls, the client's credentials: the key is the body alone, so the
# answer stored must not depend on who asked (RFC 9111 §3.5; a function that reads
# them could otherwise personalize an answer that every client then gets).
NOT_FORWARDED_CACHED = NOT_FORWARDED | {"cookie", "authorization"}
# requests decodes bodies, so a live response's Content-Encoding would lie.
NOT_RETURNED_LIVE = HOP_BY_HOP | {"content-encoding"}


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    # May requests waiting for the same call take this answer? Only a stored (or storable)
    # one: an error, or what a shared cache must not store, is for its own request.
    shareable: bool = False
    # X-Cache: HIT | MISS | BYPASS | STALE (None: not a cacheable request).
    state: str | None = None

    def send(self, start_response: StartResponse, state: str | None = None) -> list[bytes]:
        headers = list(self.headers)
        state = state or self.state
        if state == "HIT" and self.state == "MISS" and not any(k.lower() == "age" for k, _ in headers):
            headers.append(("Age", "0"))  # another request's answer, just stored (RFC 9111 §5.1)
        if state is not None:
            headers.append(("X-Cache", state))
        headers.append(("Content-Length", str(len(self.body))))
        start_response(_status_line(self.status), headers)
        return [self.body]


def _status_line(status: int) -> str:
    return f"{status} {HTTP_STATUS_CODES.get(status, 'Unknown')}"


def stored_reply(entry: Entry) -> tuple[int, list[tuple[str, str]], bytes, int]:
    """(status, end-to-end headers but Age, body, the host's Age) of a stored entry.

    Raises ValueError, KeyError or TypeError for an entry CacheControl did not write."""
    status, fields, body = stored_response(entry.blob)
    connection = {
        f.strip().lower() for k, v in fields.items() if k.lower() == "connection" for f in v.split(",")
    }
    age = 0
    headers = []
    for k, v in fields.items():
        name = k.lower()
        if name == "age":
            age = int(v) if v.strip().isdigit() else 0
        elif name not in HOP_BY_HOP and name not in connection:
            headers.append((k, v))
    return status, headers, body, age


def age_field(stored_at: float, initial: int = 0) -> tuple[str, str]:
    """``Age``: the host's, plus the seconds the entry has been stored (RFC 9111 §4.2.3)."""
    return ("Age", str(initial + max(0, int(time.time() - stored_at))))


class CachedHit:
    """A fresh entry, parsed once, ready to be sent many times (see :class:`HitReplies`)."""

    __slots__ = ("age", "body", "data", "fresh_until", "headers", "length", "status_line", "stored_at")

    def __init__(self, data: bytes, entry: Entry) -> None:
        status, headers, body, self.age = stored_reply(entry)
        self.data = data
        self.stored_at = entry.stored_at
        self.fresh_until = entry.fresh_until
        self.status_line = _status_line(status)
        self.headers = tuple(headers)
        self.body = body
        self.length = str(len(body))

    def send(self, start_response: StartResponse) -> list[bytes]:
        age = int(time.time() - self.stored_at)
        start_response(
            self.status_line,
            [
                *self.headers,
                ("Age", str(self.age + age) if age > 0 else str(self.age)),
                ("X-Cache", "HIT"),
                ("Content-Length", self.length),
            ],
        )
        return [self.body]


class HitReplies:
    """The hit path: the entries of this process's recent hits, parsed once.

    An entry is parsed (header line, CacheControl's msgpack, the headers to send)
    the first time it is read; later reads of the same key that return the very
    same bytes reuse that work. Any other bytes (a new entry, one written by another
    process) are parsed afresh, so what is sent is always what the backend holds.
    At most ``max_entries`` entries of ``max_bytes`` in all are kept (all are dropped
    when full: the hot keys come back at once); entries above ``max_entry_bytes`` are
    parsed on every hit (reading them costs more than parsing them).
    """

    def __init__(
        self, max_entries: int = 1024, max_bytes: int = 16 << 20, max_entry_bytes: int = 64 << 10
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self._parsed: dict[str, CachedHit] = {}
        self._bytes = 0

    def get(self, data: bytes | None, key: str) -> CachedHit | None:
        """The hit to send for ``key`` whose backend holds ``data``; None when not fresh."""
        if not data:
            return None
        hit = self._parsed.get(key)
        if hit is None or hit.data != data:
            entry = Entry.loads(data)
            if entry is None:
                return None
            try:
                hit = CachedHit(data, entry)
            except (ValueError, KeyError, TypeError) as err:  # written by something else: ignore it
                logger.warning("ignoring an unreadable cache entry for %s: %s", key, err)
                return None
            if len(data) <= self.max_entry_bytes:
                if len(self._parsed) >= self.max_entries or self._bytes >= self.max_bytes:
                    self._parsed.clear()
                    self._bytes = 0
                self._parsed[key] = hit
                self._bytes += 2 * len(data)  # the entry and its body
        if hit.fresh_until <= time.time():
            return None
        logger.debug("HIT %s", key)
        return hit


def text_reply(status: int, message: str, extra: Iterable[tuple[str, str]] = ()) -> Reply:
    return Reply(status, [("Content-Type", "text/plain; charset=utf-8"), *extra], message.encode() + b"\n")


class ProxyApp:
    """The caching reverse proxy as a WSGI callable (one per gunicorn worker)."""

    def __init__(self, config: ProxyConfig, *, backend: CacheBackend | None = None) -> None:
        self.config = config
        self.backend = backend if backend is not None else open_cache(config.cache_url)
        if hasattr(self.backend, "stale_ttl"):
            self.backend.stale_ttl = config.stale_ttl
        self.cache = KeyedCache(self.backend, namespace=config.namespace, stale_ttl=config.stale_ttl)
        self.pool = UpstreamPool(
            config.upstreams,
            connect_timeout=config.connect_timeout,
            read_timeout=config.upstream_timeout,
            retry_down_after=config.retry_down_after,
            max_response=config.max_response,
        )
        self.coalescer: Coalescer[Reply] = Coalescer(self.backend, timeout=config.lock_timeout)
        self.direct_hits = config.hit_path == "direct"
        self.hits = HitReplies()
        # requests sessions are made per process, on first use (gunicorn forks after import).
        self._sessions: tuple[int, requests.Session, requests.Session] | None = None
        self._sessions_lock = threading.Lock()

    # -- WSGI ---------------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
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
            return self.forward(environ, "GET", "/status", None).send(start_response, "BYPASS")
        if path.startswith(("/manager/", "/host/")) or path in ("/manager", "/host"):
            return text_reply(
                403,
                f"js-host-proxy does not forward the manager's endpoints ({method} {path}). "
                "A manager is for development; start and stop hosts next to them, not through the proxy.",
            ).send(start_response)
        return text_reply(
            404,
            f"js-host-proxy: no route for {method} {path}. "
            "It forwards POST /function/<name> and GET /status.",
        ).send(start_response)

    def call_function(
        self, environ: dict[str, Any], start_response: StartResponse, name: str
    ) -> Iterable[bytes]:
        try:
            body = read_body(environ, self.config.max_body)
        except ValueError as err:
            return text_reply(400, f"js-host-proxy: {err}").send(start_response)
        if body is None:
            return text_reply(
                413,
                f"js-host-proxy: the request body is larger than {self.config.max_body} bytes "
                "(JS_HOST_PROXY_MAX_BODY)",
            ).send(start_response)
        query = environ.get("QUERY_STRING", "")
        given = _hash_param(query)
        if given is None:
            logger.debug("no hash for %s: forwarded uncached", name)
            return self.forward(environ, "POST", _path_qs(name, query), body).send(start_response, "BYPASS")
        digest = hashlib.sha1(body).hexdigest()
        if given.lower() != digest:
            logger.debug("hash mismatch for %s: %s != %s", name, given, digest)
            return text_reply(
                400,
                f"js-host-proxy: ?hash={given[:64]!r} is not the sha1 of the request body ({digest}). "
                "Send hash=sha1(body) of the exact bytes sent, or no hash to bypass the cache.",
            ).send(start_response)

        if not self.direct_hits:
            reply, _ = self.call_upstream(environ, _path_qs(name, query), body, None)
            return reply.send(start_response)

        key = cache_key(self.config.namespace, name, digest)
        hit = self.hits.get(self.backend.get(key), key)
        if hit is not None:
            return hit.send(start_response)

        def call() -> Reply:
            return self.call_upstream(environ, _path_qs(name, query), body, key)[0]

        reply, shared = self.coalescer.run(key, lambda: self.lookup(key), call, lambda r: r.shareable)
        state = reply.state
        if shared and state == "MISS":
            state = "HIT"  # another request's stored answer, not this one's call
        logger.debug("%s %s (status %s)", state, key, reply.status)
        return reply.send(start_response, state)

    # -- answers -----------------------------------------------------------------------------

    def lookup(self, key: str, *, stale_for: float = 0.0, state: str = "HIT") -> Reply | None:
        """The stored answer for ``key`` if fresh (or expired less than ``stale_for`` s ago)."""
        entry = Entry.loads(self.backend.get(key))
        if entry is None or entry.fresh_until + (stale_for if entry.serve_stale else 0.0) <= time.time():
            return None
        try:
            return self.entry_reply(entry, state)
        except (ValueError, KeyError, TypeError) as err:  # written by something else: ignore it
            logger.warning("ignoring an unreadable cache entry for %s: %s", key, err)
            return None

    @staticmethod
    def entry_reply(entry: Entry, state: str = "HIT") -> Reply:
        status, headers, body, age = stored_reply(entry)
        return Reply(status, [*headers, age_field(entry.stored_at, age)], body, shareable=True, state=state)

    def call_upstream(
        self, environ: dict[str, Any], path_qs: str, body: bytes, key: str | None
    ) -> tuple[Reply, bool]:
        """Call the host through CacheControl (which stores what may be stored).

        Returns (reply, whether CacheControl answered from the cache).
        """
        session = self.sessions()[1]
        try:
            _base, response, content = self.pool.send(
                session, "POST", path_qs, body=body, headers=self.forwarded_headers(environ, cached=True)
            )  # read to the end: CacheControl has stored it, if it may be stored
        except UpstreamError as err:
            logger.warning("%s", err)
            stale = self.stale_reply(key, str(err))
            if stale is None:
                stale = text_reply(err.status, str(err))
                stale.state = "MISS"
            return stale, False
        from_cache = bool(getattr(response, "from_cache", False))
        if response.status_code in (502, 503, 504) and not from_cache:
            # RFC 5861 §4 stale-if-error: the host (or what is in front of it) failed.
            stale = self.stale_reply(key, f"the host answered {response.status_code}")
            if stale is not None:
                return stale, False
        reply = self.live_reply(response, content, "HIT" if from_cache else "MISS")
        if from_cache:  # the cachecontrol hit path
            reply.headers = [(k, v) for k, v in reply.headers if k.lower() != "age"]
            initial = response.headers.get("Age", "")
            stored_at = getattr(response.raw, "js_host_proxy_stored_at", time.time())
            reply.headers.append(age_field(stored_at, int(initial) if initial.isdigit() else 0))
            reply.shareable = True
        else:
            # The one storage decision (policy.decide), made when the answer's head arrived.
            storage = getattr(response, "storage", None)
            reply.shareable = storage is not None and storage.storable
        return reply, from_cache

    def stale_reply(self, key: str | None, reason: str) -> Reply | None:
        reply = None if key is None else self.lookup(key, stale_for=self.config.stale_ttl, state="STALE")
        if reply is None:
            return None
        # RFC 9111 §5.5 (obsoleted, still understood) + a plain-text reason.
        reply.headers.append(("Warning", '111 js-host-proxy "Revalidation Failed"'))
        reply.headers.append(("X-Cache-Stale-Reason", reason.replace("\n", " ")[:300]))
        logger.info("serving a stale entry for %s: %s", key, reason)
        return reply

    def forward(self, environ: dict[str, Any], method: str, path_qs: str, body: bytes | None) -> Reply:
        """Forward uncached (GET /status, calls without a hash)."""
        session = self.sessions()[0]
        try:
            _base, response, content = self.pool.send(
                session, method, path_qs, body=body, headers=self.forwarded_headers(environ)
            )
        except UpstreamError as err:
            logger.warning("%s", err)
            return text_reply(err.status, str(err))
        return self.live_reply(response, content, None)

    @staticmethod
    def live_reply(response: requests.Response, content: bytes, state: str | None) -> Reply:
        connection_fields = {f.strip().lower() for f in response.headers.get("Connection", "").split(",")}
        headers = [
            (k, v)
            for k, v in response.headers.items()
            if k.lower() not in NOT_RETURNED_LIVE and k.lower() not in connection_fields
        ]
        return Reply(response.status_code, headers, content, state=state)

    @staticmethod
    def forwarded_headers(environ: dict[str, Any], *, cached: bool = False) -> dict[str, str]:
        """The request fields sent to the host (``cached``: for a call whose answer may be stored)."""
        not_forwarded = NOT_FORWARDED_CACHED if cached else NOT_FORWARDED
        connection_fields = {f.strip().lower() for f in environ.get("HTTP_CONNECTION", "").split(",")}
        headers = {"Accept-Encoding": "identity", "Via": VIA}
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        for key, value in environ.items():
            if key.startswith("HTTP_"):
                name = key[5:].replace("_", "-").lower()
                if name not in not_forwarded and name not in connection_fields and name != "via":
                    headers[name.title()] = value
        client = environ.get("REMOTE_ADDR")
        if client:
            prior = environ.get("HTTP_X_FORWARDED_FOR")
            headers["X-Forwarded-For"] = f"{prior}, {client}" if prior else client
        return headers

    def sessions(self) -> tuple[requests.Session, requests.Session]:
        """(plain session, caching session) of this process."""
        current = self._sessions
        pid = os.getpid()
        if current is None or current[0] != pid:
            with self._sessions_lock:
                current = self._sessions
                if current is None or current[0] != pid:
                    # With direct hits, the app has looked in the cache before calling the host.
                    session = caching_session(self.cache, ttl=self.config.ttl, lookup=not self.direct_hits)
                    current = self._sessions = (pid, plain_session(), session)
        return current[1], current[2]

    def close(self) -> None:
        if self._sessions is not None:
            for session in self._sessions[1:]:
                session.close()
            self._sessions = None
        self.backend.close()


def create_app(config: ProxyConfig | None = None) -> ProxyApp:
    """The app for ``config`` (default: from the JS_HOST_PROXY_* environment)."""
    return ProxyApp(config if config is not None else ProxyConfig.from_env())


def read_body(environ: dict[str, Any], limit: int) -> bytes | None:
    """The request body, or None when it is larger than ``limit`` bytes."""
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        if not length.isdigit():
            raise ValueError(f"invalid Content-Length {length!r}")
        if int(length) > limit:
            return None  # refused before reading a byte of it
        return stream.read(int(length))
    if environ.get("wsgi.input_terminated"):
        # Chunked: the server ends the stream; read one byte past the limit to notice.
        body = stream.read(limit + 1)
        return None if len(body) > limit else body
    return b""


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
