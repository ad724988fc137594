"""The upstream hosts: spread calls over them, skip one that is down.

Calls go round-robin over the configured base URLs. A host that refuses the
connection (or does not accept it within the connect timeout) is skipped for
``retry_down_after`` seconds and the call goes to the next one: nothing was sent,
so retrying is safe. A host that accepted the call but did not answer in time is
not retried elsewhere (the function may be running); that is a timeout (504).

Every answer read is the one of the call that asked for it: the sessions' adapters
skip interim 1xx answers, refuse a 101 and never reuse a connection with bytes left
after an answer (``connections.py``); a body above ``max_response`` bytes is refused
after reading at most that much.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import requests
import urllib3

from js_host.exceptions import JSHostError
from js_host.peer_owner import ForeignListener
from js_host_proxy.connections import AlignedAdapter, BrokenAnswer, InterimError, ResponseTooLarge

logger = logging.getLogger(__name__)

E = TypeVar("E", bound=BaseException)

# A path and query that requests' URL preparation (parse, IDNA, requote) leaves as it is:
# the app's quoted function path with the client's usual ``?hash=<hex>``. Others take
# the full preparation.
_PLAIN_PATH_QS = re.compile(r"/[A-Za-z0-9._~/-]*(?:%[0-9A-F]{2}[A-Za-z0-9._~/-]*)*(?:\?[A-Za-z0-9._~=&-]*)?")


class UpstreamError(JSHostError):
    """The host could not give an answer; ``status`` is what the proxy answers."""

    status = 502


class UpstreamUnavailable(UpstreamError):
    status = 502


class UpstreamTimeout(UpstreamError):
    status = 504


class UpstreamUnreachable(UpstreamUnavailable):
    """No upstream took the connection."""


#: Bytes read from the host at a time.
CHUNK = 64 * 1024


class UpstreamPool:
    def __init__(
        self,
        urls: Sequence[str],
        *,
        connect_timeout: float,
        read_timeout: float,
        retry_down_after: float,
        max_response: int = 10 * 1024 * 1024,
    ) -> None:
        if not urls:
            raise ValueError("at least one upstream URL is needed")
        self.urls = [u.rstrip("/") for u in urls]
        self.timeout = (connect_timeout, read_timeout)
        self.retry_down_after = retry_down_after
        self.max_response = max_response
        self._next = itertools.count()
        self._started = -1  # where the last order() started
        self._down_until: dict[str, float] = {}
        self._lock = threading.Lock()
        # Each base URL as requests prepares it (None: has credentials, always prepare in full).
        self._prepared_bases = {u: _prepared_base(u) for u in self.urls}
        #: Told of each call's outcome (the metrics, observe.py): ``answered(started, status)``
        #: and ``failed(started, err)``, ``started`` from ``time.perf_counter()``.
        self.observer: Any = None

    def order(self) -> list[str]:
        """The upstreams to try for one call: round-robin, those up first."""
        start = self._started = next(self._next) % len(self.urls)
        rotated = self.urls[start:] + self.urls[:start]
        now = time.monotonic()
        up = [u for u in rotated if self._down_until.get(u, 0.0) <= now]
        return up + [u for u in rotated if u not in up]  # all down: try them all anyway

    def peek(self) -> str:
        """The upstream the next call will go to (unless calls race): the one whose code
        version keys its lookup."""
        if len(self.urls) == 1:
            return self.urls[0]
        start = (self._started + 1) % len(self.urls)
        now = time.monotonic()
        rotated = self.urls[start:] + self.urls[:start]
        return next((u for u in rotated if self._down_until.get(u, 0.0) <= now), rotated[0])

    def mark_down(self, url: str, err: BaseException) -> None:
        with self._lock:
            first = self._down_until.get(url, 0.0) <= time.monotonic()
            self._down_until[url] = time.monotonic() + self.retry_down_after
        if first:
            logger.warning("upstream %s is down (skipped for %gs): %s", url, self.retry_down_after, err)

    def mark_up(self, url: str) -> None:
        if url in self._down_until:
            with self._lock:
                self._down_until.pop(url, None)
            logger.info("upstream %s is back", url)

    def send(
        self,
        session: requests.Session,
        method: str,
        path_qs: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[str, requests.Response, bytes]:
        """Send to the first upstream that takes the connection; (its URL, its response, its body).

        The body is read here, at most ``max_response`` bytes of it, so that errors are
        converted where they happen and an oversized answer is never held whole."""
        observer = self.observer
        if observer is None:
            return self._send(session, method, path_qs, body, headers)
        started = time.perf_counter()
        try:
            answer = self._send(session, method, path_qs, body, headers)
        except UpstreamError as err:
            observer.failed(started, err)
            raise
        observer.answered(started, answer[1].status_code, path_qs)
        return answer

    def _send(
        self,
        session: requests.Session,
        method: str,
        path_qs: str,
        body: bytes | None,
        headers: Mapping[str, str] | None,
    ) -> tuple[str, requests.Response, bytes]:
        tried = []
        for base in self.order():
            url = base + path_qs
            try:
                # Straight to the session's adapter: Session.send's cookies, hooks and redirect
                # handling are of no use here and cost ~0.15 ms a call.
                prepared = self.prepare(method, base, path_qs, body, headers)
                adapter = session.get_adapter(url)
                if isinstance(adapter, AlignedAdapter) and adapter.max_response != self.max_response:
                    adapter.max_response = self.max_response  # it reads answers whole: at most this
                response = adapter.send(prepared, stream=True, timeout=self.timeout)
            except (requests.ConnectionError, requests.ConnectTimeout) as err:
                if isinstance(err, requests.ReadTimeout):
                    raise self._timeout(base, method, path_qs) from err
                interim = _find(err, InterimError)
                if interim is not None:
                    # The host took the call and answered it wrongly: not down, not retried.
                    raise UpstreamUnavailable(
                        f"js-host-proxy: the host at {base} answered {method} {path_qs} wrongly: {interim}"
                    ) from err
                self.mark_down(base, err)
                tried.append(f"{base} ({_reason(err)})")
                continue
            except requests.Timeout as err:
                raise self._timeout(base, method, path_qs) from err
            except ResponseTooLarge as err:
                raise self._too_large(
                    base, method, path_qs, f"a body of over {self.max_response} bytes"
                ) from err
            except BrokenAnswer as err:
                raise UpstreamUnavailable(
                    f"js-host-proxy: the host at {base} broke off its answer: {_reason(err)}"
                ) from err
            except requests.RequestException as err:
                raise UpstreamUnavailable(
                    f"js-host-proxy: calling the host at {base} failed: {_reason(err)}"
                ) from err
            content = self.read(base, method, path_qs, response)
            self.mark_up(base)
            return base, response, content
        raise UpstreamUnreachable(
            "js-host-proxy: no host could be reached: "
            + "; ".join(tried)
            + ". Is the host running? Check JS_HOST_PROXY_UPSTREAM."
        )

    def read(self, base: str, method: str, path_qs: str, response: requests.Response) -> bytes:
        """The whole body of ``response``, or UpstreamError (the connection is then closed)."""
        limit = self.max_response
        declared = response.headers.get("Content-Length", "")
        chunks: list[bytes] = []
        size = 0
        try:
            if declared.isdigit() and int(declared) > limit:
                raise self._too_large(base, method, path_qs, f"a body of {int(declared)} bytes")
            for chunk in response.iter_content(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise self._too_large(base, method, path_qs, f"a body of over {limit} bytes")
                chunks.append(chunk)
        except UpstreamError:
            response.close()  # unread bytes: the connection is closed, never reused
            raise
        except requests.RequestException as err:
            response.close()
            if isinstance(err, requests.Timeout) or _find(err, urllib3.exceptions.ReadTimeoutError):
                raise UpstreamTimeout(
                    f"js-host-proxy: the host at {base} did not finish answering {method} {path_qs} "
                    f"within {self.timeout[1]:g}s"
                ) from err
            raise UpstreamUnavailable(
                f"js-host-proxy: the host at {base} broke off its answer: {_reason(err)}"
            ) from err
        content = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        response._content = content  # what requests' .content would have read
        response._content_consumed = True
        return content

    def _timeout(self, base: str, method: str, path_qs: str) -> UpstreamTimeout:
        return UpstreamTimeout(
            f"js-host-proxy: the host at {base} did not answer {method} {path_qs} within {self.timeout[1]:g}s"
        )

    def _too_large(self, base: str, method: str, path_qs: str, what: str) -> UpstreamUnavailable:
        return UpstreamUnavailable(
            f"js-host-proxy: the host at {base} answered {method} {path_qs} with {what}, above the "
            f"limit of {self.max_response} bytes (JS_HOST_PROXY_MAX_RESPONSE); nothing was stored. "
            "Raise JS_HOST_PROXY_MAX_RESPONSE or make the function's output smaller."
        )

    def prepare(
        self, method: str, base: str, path_qs: str, body: bytes | None, headers: Mapping[str, str] | None
    ) -> requests.PreparedRequest:
        """requests' PreparedRequest for the call, the same as ``Request(...).prepare()``.

        For the usual path (``/function/<quoted name>?hash=<hex>``) the URL is the base URL
        as requests prepared it once plus the path, as its preparation would leave it;
        that saves about 40 µs of URL parsing a call. Headers and body are prepared as usual.
        """
        prepared_base = self._prepared_bases.get(base)
        if prepared_base is None or not _PLAIN_PATH_QS.fullmatch(path_qs):
            return requests.Request(method, base + path_qs, data=body, headers=headers).prepare()
        prepared = requests.PreparedRequest()
        prepared.method = method
        prepared.url = prepared_base + path_qs
        prepared.prepare_headers(headers)
        prepared.prepare_body(body, None)
        prepared.prepare_hooks({})
        return prepared


def _prepared_base(url: str) -> str | None:
    """``url`` (a base URL without a path) as requests prepares it, without the final slash."""
    if "@" in url:
        return None  # credentials: requests turns them into an Authorization header
    prepared = requests.Request("GET", url + "/").prepare().url
    return prepared[:-1] if prepared and prepared.endswith("/") else None


def _find(err: BaseException, kind: type[E]) -> E | None:
    """The ``kind`` exception ``err`` wraps (requests and urllib3 nest them in args and causes)."""
    seen: set[int] = set()
    todo: list[object] = [err]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, kind):
            return item
        todo.extend((item.__cause__, item.__context__, *item.args, getattr(item, "reason", None)))
    return None


def _reason(err: BaseException) -> str:
    foreign = _find(err, ForeignListener)
    if foreign is not None:
        return str(foreign)  # whose listener it is and what to do: whole
    # urllib3 nests the useful part ("Connection refused") deep in its message.
    text = str(err)
    for marker in ("Connection refused", "timed out", "Name or service not known", "Connection reset"):
        if marker in text:
            return marker
    return text[:200]
