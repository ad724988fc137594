"""The proxy with its hits answered through requests + CacheControl, for comparison.

js-host-proxy answers a hit itself, from the cache backend (``js_host_proxy/hits.py``).
``bench/proxy_cache.py`` measures what a hit costs the other way: here every hashed
call goes through a requests session whose CacheControl adapter looks the entry up
in the same cache (``caching_session(..., lookup=True)``), so a hit is requests'
preparation, CacheControl's lookup and deserialization, and a reply built from
requests' response. Everything else (routing, the calls without a hash) is the
proxy's own. gunicorn loads ``support.cachecontrol_hits:app`` (made in each worker,
from the ``JS_HOST_PROXY_*`` environment, on first access).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterable
from typing import Any, Callable

from . import import_this_checkout

import_this_checkout()

from js_host_proxy.app import ProxyApp, read_body  # noqa: E402 - this checkout's
from js_host_proxy.calls import live_reply  # noqa: E402
from js_host_proxy.config import ProxyConfig  # noqa: E402
from js_host_proxy.fields import forwarded_headers  # noqa: E402
from js_host_proxy.httpcache import caching_session  # noqa: E402
from js_host_proxy.replies import text_reply  # noqa: E402
from js_host_proxy.upstream import UpstreamError  # noqa: E402

StartResponse = Callable[..., Any]


class CacheControlHits:
    """A WSGI app: ``POST /function/<name>?hash=H`` looked up and stored by CacheControl."""

    def __init__(self, config: ProxyConfig) -> None:
        self.proxy = ProxyApp(config)
        self._session: tuple[int, Any] | None = None
        self._lock = threading.Lock()

    def session(self) -> Any:
        pid = os.getpid()
        if self._session is None or self._session[0] != pid:  # gunicorn forks after import
            with self._lock:
                if self._session is None or self._session[0] != pid:
                    cache, ttl = self.proxy.cache, self.proxy.config.ttl
                    self._session = (pid, caching_session(cache, ttl=ttl, lookup=True))
        return self._session[1]

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path, query = environ.get("PATH_INFO") or "/", environ.get("QUERY_STRING", "")
        if environ["REQUEST_METHOD"] != "POST" or not path.startswith("/function/") or "hash=" not in query:
            return self.proxy(environ, start_response)
        body = read_body(environ, self.proxy.config.max_body) or b""
        if query[query.index("hash=") + 5 :].split("&")[0].lower() != hashlib.sha1(body).hexdigest():
            return text_reply(400, "bench: the hash is not the body's sha1").send(start_response)
        try:
            _base, response, content = self.proxy.calls.pool.send(
                self.session(),
                "POST",
                f"{path}?{query}",
                body=body,
                headers=forwarded_headers(environ, cached=True),
            )
        except UpstreamError as err:
            return text_reply(err.status, str(err)).send(start_response)
        from_cache = bool(getattr(response, "from_cache", False))
        reply = live_reply(response, content, "HIT" if from_cache else "MISS")
        if from_cache:  # Age: the host's plus the seconds stored, as the proxy's hits say
            reply.headers = [(k, v) for k, v in reply.headers if k.lower() != "age"]
            initial = response.headers.get("Age", "")
            stored_at = getattr(response.raw, "js_host_proxy_stored_at", time.time())
            seconds = max(0, int(time.time() - stored_at))
            reply.headers.append(("Age", str((int(initial) if initial.isdigit() else 0) + seconds)))
        return reply.send(start_response)

    def close(self) -> None:
        if self._session is not None:
            self._session[1].close()
        self.proxy.close()


_made: dict[str, CacheControlHits] = {}
_made_lock = threading.Lock()


def __getattr__(name: str) -> Any:
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _made_lock:
        if "app" not in _made:
            _made["app"] = CacheControlHits(ProxyConfig.from_env())
    return _made["app"]
