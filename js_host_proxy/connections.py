"""Connections to the hosts that read each call's own answer, and nothing else.

http.client (under urllib3 and requests) skips only ``100 Continue`` before an
answer. Any config function can send other interim answers through ``this.res``
(``writeEarlyHints()`` sends a 103, ``writeProcessing()`` a 102); taken for the
answer, a 103 would leave the real one in the socket, the socket would go back
to the pool, and the next call would read (and store under its own key) the
previous call's output. :class:`AlignedAdapter` is requests' adapter with
connections whose responses skip every 1xx (RFC 9110 §15.2), refuse a 101, and
shut down a connection that holds bytes after an answer.

urllib3 already checks a pooled connection before reusing it (``is_connection_dropped``:
a readable socket, bytes or EOF, is closed and replaced), but bytes that http.client
read ahead into its buffer are out of that check's sight; :class:`AlignedResponse`
looks there too.

Plain ``http://`` hosts (every host of a usual deployment) are not called through
urllib3 at all: :class:`AlignedAdapter` sends their requests over the client's own
kept-alive connections (:mod:`js_host.transport`: one write per request, the answer
parsed by llhttp, 1xx skipped, a 101 refused, a socket with bytes after its answer
closed), reads each answer whole (at most ``max_response`` bytes) and hands it to
requests as a urllib3 response that holds its body. A function call or a batch goes
with an ``X-Request-Id`` of its own (:func:`js_host_proxy.request_id.upstream`: the
client's, made unique per upstream request) and its answer must carry it back
(:mod:`js_host.answer_id`): bytes a function wrote on its socket after its own answer
are then a 502, never the next call's answer nor stored under its key. Measured on 2 cores, that cuts
about 1 ms of a cache miss (urllib3 and http.client cost ~1.3 ms a call on a busy
machine, the transport ~0.1-0.3 ms). ``https://`` hosts, and proxies, go through urllib3.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import ssl
from collections.abc import Collection
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from js_host.batch import BATCH_PATH
from js_host.connection import CannotConnect, ConnectTimeout
from js_host.exceptions import ConnectionError as TransportError
from js_host.exceptions import FunctionTimeout, UnexpectedResponse
from js_host.peer_owner import ForeignListener, OwnerCheck
from js_host.transport import BodyTooLarge, Pool
from js_host_proxy import request_id
from js_host_proxy.paths import FUNCTION_PREFIX

if TYPE_CHECKING:
    from requests import PreparedRequest

logger = logging.getLogger(__name__)

#: Interim answers read before giving up on a final one (a host could send 1xx forever).
MAX_INTERIM = 32
#: The attribute of a urllib3 response read whole by :class:`AlignedAdapter`: its body.
WHOLE_BODY = "js_host_proxy_body"
# Request fields the transport writes itself (the id too, on the requests it checks).
_OWN_FIELDS = frozenset({"host", "content-length"})
_OWN_FIELDS_CHECKED = _OWN_FIELDS | {"x-request-id"}


def upstream_owners(uids: Collection[int] = ()) -> OwnerCheck:
    """Who may hold a loopback upstream's port (js_host.peer_owner): the proxy's own user, root,
    and ``uids`` (JS_HOST_PROXY_UPSTREAM_UIDS: hosts run as another service user on purpose)."""
    listed = frozenset(uids)
    return OwnerCheck("JS_HOST_PROXY_UPSTREAM_UIDS", lambda: listed)


class InterimError(http.client.HTTPException):
    """A 101, too many 1xx, or an answer that is not the call's (another request's id): the
    connection is closed, the proxy answers 502."""


class AlignedResponse(http.client.HTTPResponse):
    """http.client's response, made to read the final answer after any 1xx.

    ``HTTPResponse.begin()`` skips only 100 Continue; a 102 or 103 (which any config
    function can send with ``this.res.writeEarlyHints()``) would be taken for the
    answer, and the socket, still holding the real answer, put back in the pool:
    the next call would read it as its own. RFC 9110 §15.2: a client must be able
    to parse 1xx answers and ignore them. A 101 (§15.2.2) is refused: the proxy asked
    for no protocol switch, and what follows it is not an answer to the call.

    When the body has been read, any byte already there (buffered or in the socket)
    is not part of it: the connection is shut down, so that urllib3's check of a
    pooled connection (``is_connection_dropped``: readable means dropped) closes it
    instead of reading those bytes as the next answer.
    """

    def __init__(self, sock: socket.socket, *args: object, **kwargs: object) -> None:
        super().__init__(sock, *args, **kwargs)  # type: ignore[arg-type]
        self._aligned_sock: socket.socket | None = sock

    def _read_status(self) -> tuple[str, int, str]:  # http.client's hook, called by begin()
        for _ in range(MAX_INTERIM):
            version, status, reason = super()._read_status()  # type: ignore[misc]
            if status == 101:
                raise InterimError(
                    f"the host answered 101 {reason.strip()} (a protocol switch nobody asked for)"
                )
            if not 100 <= status < 200:
                return version, status, reason
            http.client.parse_headers(self.fp)  # the interim answer's fields, dropped
        raise InterimError(f"the host sent more than {MAX_INTERIM} interim (1xx) answers and no final one")

    def _close_conn(self) -> None:  # http.client calls it once the body has been read
        fp, sock = self.fp, self._aligned_sock
        self._aligned_sock = None
        if fp is not None and sock is not None and _has_more(fp, sock):
            logger.warning("the host sent bytes after its answer: closing that connection")
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        super()._close_conn()  # type: ignore[misc]


def _has_more(fp: object, sock: socket.socket) -> bool:
    """Whether bytes follow the answer, without waiting for any."""
    try:
        timeout = sock.gettimeout()
        sock.settimeout(0)
        try:
            return bool(fp.peek(1))  # type: ignore[attr-defined]  # the buffer first, else one read
        finally:
            sock.settimeout(timeout)
    except (BlockingIOError, ssl.SSLWantReadError):
        return False
    except OSError:
        return True  # cannot tell: do not reuse it


class AlignedHTTPConnection(urllib3.connection.HTTPConnection):
    response_class = AlignedResponse


class AlignedHTTPSConnection(urllib3.connection.HTTPSConnection):
    response_class = AlignedResponse


class AlignedHTTPConnectionPool(urllib3.HTTPConnectionPool):
    ConnectionCls = AlignedHTTPConnection


class AlignedHTTPSConnectionPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = AlignedHTTPSConnection


class ResponseTooLarge(requests.RequestException):
    """The host's answer has a body above the adapter's ``max_response`` (not read further)."""


class BrokenAnswer(requests.RequestException):
    """The host took the call, then closed the connection before the end of its answer."""


class AlignedAdapter(HTTPAdapter):
    """requests' adapter whose connections read answers with :class:`AlignedResponse`;
    plain ``http://`` hosts through :mod:`js_host.transport` (see the module docstring).

    ``max_response``: the largest body read from a host (None: no limit), set by its user.
    """

    max_response: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Kept-alive sockets of this process (a forked child starts empty).
        self._pool = Pool(upstream_owners())
        self._addresses: dict[str, tuple[str, int] | None] = {}

    @property
    def owners(self) -> OwnerCheck | None:
        """Who may hold a loopback host's port (js_host.peer_owner), asked on each new connection;
        by default :func:`upstream_owners`, set by the adapter's user."""
        return self._pool.owners

    @owners.setter
    def owners(self, owners: OwnerCheck | None) -> None:
        self._pool.owners = owners

    def send(  # type: ignore[override]
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        url = request.url or ""
        end = url.find("/", 8)
        target = url[end:] if end > 0 else "/"
        # The answers a host echoes the request's id on: those of function calls and batches.
        sent = None
        if target.startswith(FUNCTION_PREFIX) or target == BATCH_PATH:
            sent = request_id.upstream(request.headers.get(request_id.FIELD))
        address = self._address(url[:end] if end > 0 else url)
        if address is None or proxies or isinstance(timeout, urllib3.Timeout):
            if sent is not None:  # unique all the same (urllib3's connections check no id)
                request.headers[request_id.FIELD] = sent
            return super().send(request, stream, timeout, verify, cert, proxies)
        connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
        own_fields = _OWN_FIELDS if sent is None else _OWN_FIELDS_CHECKED
        head = "".join(
            f"{name}: {value}\r\n"
            for name, value in request.headers.items()
            if name.lower() not in own_fields
        )
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        if not isinstance(body, bytes):  # a stream or an iterable: urllib3 sends those
            return super().send(request, stream, timeout, verify, cert, proxies)
        try:
            answer = self._pool.request(
                *address,
                request.method or "GET",
                target,
                body,
                headers=head.encode("latin-1"),
                timeout=read,
                connect_timeout=connect,
                max_body=self.max_response,
                request_id=None if sent is None else sent.encode(),
            )
        except (CannotConnect, ConnectTimeout, ForeignListener) as err:
            # Nothing was sent: another host may take it.
            kind = requests.ConnectTimeout if isinstance(err, ConnectTimeout) else requests.ConnectionError
            raise kind(str(err), request=request) from err
        except FunctionTimeout as err:
            raise requests.ReadTimeout(str(err), request=request) from err
        except BodyTooLarge as err:
            raise ResponseTooLarge(str(err), request=request) from err
        except UnexpectedResponse as err:
            interim = InterimError(str(err))
            raise requests.ConnectionError(interim, request=request) from err
        except TransportError as err:
            raise BrokenAnswer(str(err), request=request) from err
        raw = urllib3.HTTPResponse(
            body=answer.body,
            headers=urllib3.HTTPHeaderDict(
                [(k.decode("latin-1"), v.decode("latin-1")) for k, v in answer.raw_headers]
            ),
            status=answer.status,
            version=11,
            reason=http.client.responses.get(answer.status, ""),
            preload_content=False,
            decode_content=False,
            request_method=request.method,
        )
        setattr(raw, WHOLE_BODY, answer.body)
        response = self.build_response(request, raw)
        response._content = answer.body  # read: what requests' .content and iter_content give
        response._content_consumed = True
        return response

    def _address(self, base: str) -> tuple[str, int] | None:
        """(host, port) of a plain ``http://host:port`` base URL; None for anything else."""
        try:
            return self._addresses[base]
        except KeyError:
            pass
        address = None
        parts = urlsplit(base)
        if parts.scheme == "http" and parts.hostname and not parts.username and not parts.password:
            address = (parts.hostname, parts.port or 80)
        self._addresses[base] = address
        return address

    def close(self) -> None:
        self._pool.close()
        super().close()

    def init_poolmanager(self, *args: object, **kwargs: object) -> None:
        super().init_poolmanager(*args, **kwargs)  # type: ignore[arg-type]
        self.poolmanager.pool_classes_by_scheme = {
            "http": AlignedHTTPConnectionPool,
            "https": AlignedHTTPSConnectionPool,
        }
