"""The calls to the hosts: cached ones through CacheControl, the others forwarded.

A cached call (``POST /function/<name>?hash=H`` that missed, or the background
refresh of a stale entry) goes through the caching session, whose adapter stores
the answer when ``policy.decide`` allows it; the reply is shareable with waiting
requests by that same decision. When the host is down, times out or answers
502/503/504, nothing is stored, so the entry the cache holds stays; a request
waiting for the answer is then served that entry stale when it may be (RFC 5861
stale-if-error), and a background refresh leaves it to be served stale for the
rest of its window. Other calls (``GET /status``, calls without a hash) are
forwarded as they are, uncached.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from js_host_proxy.config import ProxyConfig
from js_host_proxy.connections import upstream_owners
from js_host_proxy.fields import NOT_RETURNED_LIVE, end_to_end, forwarded_headers
from js_host_proxy.hits import HitReader
from js_host_proxy.httpcache import caching_session, plain_session
from js_host_proxy.keyed_cache import KeyedCache
from js_host_proxy.replies import Reply, text_reply
from js_host_proxy.upstream import UpstreamError, UpstreamPool

if TYPE_CHECKING:
    import requests

logger = logging.getLogger(__name__)


class HostCalls:
    """The upstream pool and this process's requests sessions (made on first use:
    gunicorn forks after import)."""

    def __init__(self, config: ProxyConfig, cache: KeyedCache, hits: HitReader) -> None:
        self.config = config
        self.cache = cache
        self.hits = hits
        self.pool = UpstreamPool(
            config.upstreams,
            connect_timeout=config.connect_timeout,
            read_timeout=config.upstream_timeout,
            retry_down_after=config.retry_down_after,
            max_response=config.max_response,
        )
        # Who may hold a loopback host's port (js_host.peer_owner): the sessions' adapters ask.
        self.owners = upstream_owners(config.upstream_uids)
        self._sessions: tuple[int, requests.Session, requests.Session] | None = None
        self._sessions_lock = threading.Lock()

    def cached(self, environ: dict[str, Any], path_qs: str, body: bytes, key: str) -> Reply:
        """Call the host through CacheControl, which stores what may be stored under ``key``;
        when the host fails, the stale entry for ``key`` if there is one that may be served."""
        return self.call_cached(path_qs, body, forwarded_headers(environ, cached=True), key)

    def call_cached(
        self, path_qs: str, body: bytes, headers: dict[str, str], key: str, *, stale_if_error: bool = True
    ) -> Reply:
        """The cached call with the request fields ``headers`` (``forwarded_headers(cached=True)``);
        ``stale_if_error=False``: the failure itself, not a stale entry (a background refresh)."""
        session = self.sessions()[1]
        names = self.hits.names
        try:
            _base, response, content = self.pool.send(
                session, "POST", path_qs, body=body, headers=headers
            )  # read to the end: CacheControl has stored it, if it may be stored
        except UpstreamError as err:
            logger.warning("%s", err)
            stale = self.stale(key, str(err), None) if stale_if_error else None
            if stale is None:
                stale = text_reply(err.status, str(err))  # the proxy's own: no Cache-Status
                stale.state = "MISS"
            return stale
        if stale_if_error and response.status_code in (502, 503, 504):
            # RFC 5861 §4 stale-if-error: the host (or what is in front of it) failed.
            stale = self.stale(key, f"the host answered {response.status_code}", response.status_code)
            if stale is not None:
                return stale
        # The one storage decision (policy.decide), made when the answer's head arrived.
        storage = getattr(response, "storage", None)
        stored = storage is not None and storage.storable
        status = names.forwarded("miss", response.status_code, storage.lifetime if stored else None)
        reply = live_reply(response, content, "MISS", status)
        reply.shareable = stored
        return reply

    def stale(self, key: str, reason: str, status: int | None) -> Reply | None:
        """The entry for ``key`` served stale because the host failed (answered ``status``, or
        did not answer: None), when there is one that may be."""
        hit = self.hits.read(key, stale_for=self.config.stale_ttl)
        if hit is None:
            return None
        reason = reason.replace("\n", " ")[:300]
        reply = hit.stale(
            self.hits.names.stale_if_error(status, hit.fresh_until - time.time()),
            # RFC 9111 §5.5 (obsoleted, still understood) + a plain-text reason.
            (("Warning", '111 js-host-proxy "Revalidation Failed"'), ("X-Cache-Stale-Reason", reason)),
        )
        logger.info("serving a stale entry for %s: %s", key, reason)
        return reply

    def forward(
        self,
        environ: dict[str, Any],
        method: str,
        path_qs: str,
        body: bytes | None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Forward uncached (GET /status, calls without a hash); ``headers``: the fields
        sent instead of the request's (a batch's job: those of the upstream batch)."""
        session = self.sessions()[0]
        if headers is None:
            headers = forwarded_headers(environ)
        try:
            _base, response, content = self.pool.send(session, method, path_qs, body=body, headers=headers)
        except UpstreamError as err:
            logger.warning("%s", err)
            return text_reply(err.status, str(err))
        return live_reply(response, content, None, self.hits.names.forwarded("bypass", response.status_code))

    def sessions(self) -> tuple[requests.Session, requests.Session]:
        """(plain session, caching session) of this process."""
        current = self._sessions
        pid = os.getpid()
        if current is None or current[0] != pid:
            with self._sessions_lock:
                current = self._sessions
                if current is None or current[0] != pid:
                    # The app has looked in the cache before calling the host: no lookup here.
                    owners = self.owners
                    session = caching_session(
                        self.cache,
                        ttl=self.config.ttl,
                        lookup=False,
                        stale_while_revalidate=self.config.stale_while_revalidate,
                        owners=owners,
                    )
                    current = self._sessions = (pid, plain_session(owners=owners), session)
        return current[1], current[2]

    def close(self) -> None:
        if self._sessions is not None:
            for session in self._sessions[1:]:
                session.close()
            self._sessions = None


def live_reply(
    response: requests.Response, content: bytes, state: str | None, cache_status: str | None = None
) -> Reply:
    """The host's answer as it came, less what belongs to the connection."""
    headers = end_to_end(response.headers.items(), NOT_RETURNED_LIVE)
    return Reply(response.status_code, headers, content, state=state, cache_status=cache_status)
