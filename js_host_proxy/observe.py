"""What the proxy says about itself: request ids, counts, ``/metrics``, ``/health``.

Every request goes through :meth:`Observer.handle` before the app routes it: it takes
the request's id (``request_id.py``: forwarded to the host, echoed in the answer, hits
included), counts function calls by the answer's ``X-Cache`` (``metrics.py``), and
answers the proxy's own endpoints, which are neither cached nor forwarded:

- ``GET /health``: ``200 ok`` while the proxy answers (liveness).
- ``GET /health?ready`` or ``GET /ready``: 200 when at least one upstream answers its
  ``/health``, else 503 naming each upstream and why (readiness; ``health.py``).
- ``GET /metrics``: the Prometheus text (0.0.4). With ``JS_HOST_PROXY_METRICS_TOKEN``
  it needs ``Authorization: Bearer <token>`` (compared in constant time); with
  ``JS_HOST_PROXY_METRICS_BIND`` it is served on that socket only (404 on the public
  one), and that socket serves nothing but ``/metrics`` and ``/health``. With
  ``JS_HOST_PROXY_METRICS=0`` nothing is counted and there is no ``/metrics``.

Before all that, a request that arrived on loopback addressed to a name that is not a
loopback one gets a 403 (DNS rebinding: ``host_check.py``), whatever its path.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

from js_host_proxy import request_id
from js_host_proxy.accepted_socket import Address, local_address
from js_host_proxy.cache.base import CacheBackend
from js_host_proxy.config import ProxyConfig, split_bind
from js_host_proxy.connections import upstream_owners
from js_host_proxy.health import UpstreamHealth, shown
from js_host_proxy.host_check import HostCheck
from js_host_proxy.metrics import CONTENT_TYPE, PATH, ProxyMetrics, multiprocess_dir_from_env
from js_host_proxy.paths import FUNCTION_PREFIX
from js_host_proxy.purge_endpoint import authorized
from js_host_proxy.replies import Reply, StartResponse, text_reply
from js_host_proxy.upstream import UpstreamPool, UpstreamTimeout, UpstreamUnreachable

logger = logging.getLogger(__name__)

ID_FIELD = request_id.FIELD
NO_STORE = ("Cache-Control", "no-store")
Route = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class Observer:
    def __init__(self, config: ProxyConfig, backend: CacheBackend, pool: UpstreamPool) -> None:
        self.config = config
        self.health = UpstreamHealth(
            pool.urls, timeout=min(config.connect_timeout, 2.0), owners=upstream_owners(config.upstream_uids)
        )
        self.metrics: ProxyMetrics | None = None
        if config.metrics:
            try:
                self.metrics = ProxyMetrics(backend, self.health, multiprocess_dir_from_env())
            except ImportError as err:  # installed without the proxy extra: serve all the same
                logger.warning(
                    "no metrics: %s. Install js-host[proxy] (it has prometheus_client), "
                    "or set JS_HOST_PROXY_METRICS=0.",
                    err,
                )
        if self.metrics is not None:
            backend.evicted = self.metrics.evicted
            pool.observer = self
        self._metrics_socket = _socket_matcher(config.metrics_bind) if config.metrics_bind else None
        self.host_check = HostCheck(config.allowed_hosts)

    def handle(self, environ: dict[str, Any], start_response: StartResponse, route: Route) -> Iterable[bytes]:
        """Answer the request (``route``: the app's routing) with its id, counted."""
        rid = request_id.take(environ)
        path = environ.get("PATH_INFO") or "/"
        try:
            # First: a page that rebound its name to loopback reaches nothing, /health included.
            refused = self.host_check.refusal(environ)
            if refused is not None:
                return refused.send(_echoing(start_response, rid))
            if self._metrics_socket is not None and self._metrics_socket(environ):
                return self.own_endpoint(environ, _echoing(start_response, rid), path, metrics_socket=True)
            metrics = self.metrics
            if not path.startswith(FUNCTION_PREFIX):
                if path in ("/health", "/ready", PATH):
                    start = _echoing(start_response, rid)
                    return self.own_endpoint(environ, start, path, metrics_socket=False)
                return route(environ, _echoing(start_response, rid))
            if metrics is None:
                return route(environ, _echoing(start_response, rid))
            name = path[len(FUNCTION_PREFIX) :]

            def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                headers.append((ID_FIELD, rid))
                cache = "NONE"
                for key, value in reversed(headers):  # the proxy appends X-Cache last but two
                    if key == "X-Cache":
                        cache = value
                        break
                metrics.request(cache, name, status)
                return start_response(status, headers, exc_info)

            return route(environ, start)
        finally:
            request_id.current.value = None

    # -- the proxy's own endpoints ---------------------------------------------------------

    def own_endpoint(
        self, environ: dict[str, Any], start_response: StartResponse, path: str, *, metrics_socket: bool
    ) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        if path not in ("/health", "/ready", PATH):
            return text_reply(
                404, f"js-host-proxy: the metrics socket serves GET {PATH} and GET /health only", [NO_STORE]
            ).send(start_response)
        if method not in ("GET", "HEAD"):
            return text_reply(405, f"js-host-proxy: GET {path}", [("Allow", "GET, HEAD"), NO_STORE]).send(
                start_response
            )
        if path == PATH:
            return self.serve_metrics(environ, metrics_socket).send(start_response)
        query = environ.get("QUERY_STRING", "")
        if path == "/ready" or query == "ready" or query.startswith("ready=") or "&ready" in f"&{query}":
            return self.readiness().send(start_response)
        return text_reply(200, "ok", [NO_STORE]).send(start_response)

    def serve_metrics(self, environ: dict[str, Any], metrics_socket: bool) -> Reply:
        if self.metrics is None:
            return text_reply(404, "js-host-proxy: metrics are off (JS_HOST_PROXY_METRICS=0)", [NO_STORE])
        if self._metrics_socket is not None and not metrics_socket:
            # Said plainly: the operator chose to keep it off the public port.
            return text_reply(
                404, f"js-host-proxy: {PATH} is served on JS_HOST_PROXY_METRICS_BIND only", [NO_STORE]
            )
        token = self.config.metrics_token
        if token and not authorized(environ, token):
            return text_reply(
                401,
                f"js-host-proxy: GET {PATH} needs the header "
                "Authorization: Bearer <JS_HOST_PROXY_METRICS_TOKEN>",
                [("WWW-Authenticate", 'Bearer realm="js-host-proxy"'), NO_STORE],
            )
        return Reply(200, [("Content-Type", CONTENT_TYPE), NO_STORE], self.metrics.render())

    def readiness(self) -> Reply:
        checked = self.health.check()
        states = "; ".join(f"{shown(url)} ({why or 'up'})" for url, why in checked.items())
        if any(why is None for why in checked.values()):
            return text_reply(200, f"ready: {states}", [NO_STORE])
        return text_reply(
            503,
            f"js-host-proxy: not ready, no upstream answers GET /health: {states}. "
            "Start the host, or check JS_HOST_PROXY_UPSTREAM.",
            [NO_STORE],
        )

    # -- UpstreamPool's observer -----------------------------------------------------------

    def answered(self, started: float, status: int, path_qs: str) -> None:
        metrics = self.metrics
        if metrics is None:
            return
        metrics.upstream_answered(time.perf_counter() - started, status)
        if path_qs.startswith(FUNCTION_PREFIX):
            # The name as the request's PATH_INFO holds it (calls.py quoted those bytes).
            quoted = path_qs[len(FUNCTION_PREFIX) :].partition("?")[0]
            metrics.host_answered(unquote_to_bytes(quoted).decode("latin-1"), status)

    def failed(self, started: float, err: BaseException) -> None:
        if self.metrics is None:
            return
        if isinstance(err, UpstreamTimeout):
            cause = "timeout"
        elif isinstance(err, UpstreamUnreachable):
            cause = "connect"
        else:
            cause = "invalid"  # an answer that broke off, was too large or made no sense
        self.metrics.upstream_failed(time.perf_counter() - started, cause)

    def coalesced(self) -> None:
        if self.metrics is not None:
            self.metrics.coalesced()


def _echoing(start_response: StartResponse, rid: str) -> StartResponse:
    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        headers.append((ID_FIELD, rid))
        return start_response(status, headers, exc_info)

    return start


def _socket_matcher(bind: str) -> Callable[[dict[str, Any]], bool]:
    """Whether a request came in on the socket bound to ``bind``: the local address of the
    connection gunicorn accepted (``accepted_socket.py``), which a client cannot forge.
    The address is compared too when ``bind`` names one (not a host name, not 0.0.0.0).
    Without gunicorn's socket (the app in-process, another server) no request is on the
    metrics socket: the public rules apply to all."""
    parts = split_bind(bind)
    assert parts is not None  # checked by ProxyConfig
    host, port = parts[0], parts[1]
    try:
        address: Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and address.is_unspecified:
        address = None

    def matches(environ: dict[str, Any]) -> bool:
        local = local_address(environ)
        if local is None or local[1] != port:
            return False  # a unix socket, no socket known, or another port
        return address is None or local[0] == address

    return matches
