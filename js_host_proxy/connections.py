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
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
import ssl

import urllib3
from requests.adapters import HTTPAdapter

logger = logging.getLogger(__name__)

#: Interim answers read before giving up on a final one (a host could send 1xx forever).
MAX_INTERIM = 32


class InterimError(http.client.HTTPException):
    """A 101, or too many 1xx: urllib3 closes the connection, the proxy answers 502."""


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


class AlignedAdapter(HTTPAdapter):
    """requests' adapter whose connections read answers with :class:`AlignedResponse`."""

    def init_poolmanager(self, *args: object, **kwargs: object) -> None:
        super().init_poolmanager(*args, **kwargs)  # type: ignore[arg-type]
        self.poolmanager.pool_classes_by_scheme = {
            "http": AlignedHTTPConnectionPool,
            "https": AlignedHTTPSConnectionPool,
        }
