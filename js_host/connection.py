"""One kept-alive socket to a host, and what the pool knows about it.

:class:`Connection` holds the socket, its response parser, the kernel-level
timeout it has and a ``poll`` object for the idle check made before every reuse
(see :mod:`js_host.transport`, the pool that owns these).

Both pools (:mod:`js_host.transport` and :mod:`js_host.aio_transport`) build
their requests and report a connection that misbehaves with the functions here,
so that a call says the same whichever pool it went through.
"""

from __future__ import annotations

import logging
import select
import socket
import struct
import time
from typing import Union

from .exceptions import ConnectionError, FunctionTimeout, UnexpectedResponse  # noqa: A004 - the spec's name
from .peer_owner import HOSTS, ForeignListener, OwnerCheck
from .response import BadResponse, ResponseParser

# Both pools' logger: what happens to their sockets is logged as the transport's.
logger = logging.getLogger("js_host.transport")

#: A request's body: bytes, or buffers sent as they are (one gather write, never joined).
Body = Union[bytes, list[bytes]]


class Connection:
    """A socket and what the pool knows about it."""

    __slots__ = ("echoes", "poller", "proto", "sock", "timeout")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.proto = ResponseParser()
        self.timeout: float | None = None  # the kernel-level timeout currently set
        self.echoes = False  # an answer carried its request's X-Request-Id (js_host.answer_id)
        # A poll object per socket: poll(0) costs half a select() on the hot path.
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN)

    def idle_and_open(self) -> bool:
        """Whether nothing has arrived since the last answer: neither EOF, RST nor
        bytes nobody asked for (which would otherwise be read as the next answer)."""
        return not self.poller.poll(0)

    def set_timeout(self, timeout: float | None) -> None:
        # SO_RCVTIMEO/SO_SNDTIMEO on a blocking socket rather than settimeout():
        # Python's timeouts cost an extra poll() per send and recv, and a fcntl()
        # per change. A kernel timeout makes send/recv fail with EAGAIN instead.
        if timeout == self.timeout:
            return
        seconds = 0.0 if timeout is None else max(timeout, 0.001)
        value = struct.pack("ll", int(seconds), int((seconds % 1) * 1_000_000))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
        self.timeout = timeout

    def close_idle(self, key: tuple[str, int]) -> None:
        """Close a pooled socket found readable; a warning when it held bytes (the
        server answered what nobody asked), not when the server merely closed it."""
        try:
            data = self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except OSError:  # reset by the server, or nothing after all
            data = b""
        if data:
            warn_stray_bytes(*key)
        self.sock.close()

    def sendall_parts(self, parts: list[bytes]) -> None:
        """sendall() for a list of buffers: sendmsg (gather) without joining them."""
        views = [memoryview(part) for part in parts if part]
        while views:
            sent = self.sock.sendmsg(views)
            while views and sent >= len(views[0]):
                sent -= len(views[0])
                views.pop(0)
            if sent:
                views[0] = views[0][sent:]


class CannotConnect(ConnectionError):
    """No connection could be opened: nothing was sent (a caller may try another server)."""


class ConnectTimeout(FunctionTimeout):
    """No connection was accepted in time: nothing was sent."""


def open_connection(
    host: str, port: int, deadline: float | None, owners: OwnerCheck | None = HOSTS
) -> Connection:
    """A new socket to ``host:port`` (TCP_NODELAY), within ``deadline``; refused before
    anything is sent when another local user holds a loopback port (``owners``, see
    :mod:`js_host.peer_owner`; None: not checked)."""
    try:
        sock = socket.create_connection((host, port), remaining(deadline, host, port))
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if owners is not None:
            owners.check(sock.getpeername())
    except ForeignListener:
        sock.close()  # nothing was sent
        raise
    except socket.timeout as err:
        raise ConnectTimeout(f"Timed out connecting to http://{host}:{port}") from err
    except OSError as err:
        raise CannotConnect(f"Cannot connect to http://{host}:{port}: {err}") from err
    return Connection(sock)


def request_head(method: str, target: str, host: str, port: int, length: int, headers: bytes) -> bytes:
    """The head of a request with a body of ``length`` bytes (both pools send these):
    ``headers`` are extra raw header lines, each ending in CRLF."""
    # An IPv6 address goes in brackets in the Host header (RFC 9110, section 7.2).
    host_header = f"[{host}]" if ":" in host else host
    return b"%s %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Length: %d\r\n%s\r\n" % (
        method.encode(),
        target.encode(),
        host_header.encode(),
        port,
        length,
        headers,
    )


def request_url(host: str, port: int, target: str) -> str:
    """The URL of a request, for error messages (IPv6 addresses in brackets)."""
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{target}"


def warn_stray_bytes(host: str, port: int) -> None:
    """Say that ``host:port`` sent bytes while no request was outstanding (its connection is
    closed: they would otherwise be read as the next call's answer)."""
    logger.warning(
        "%s sent bytes on an idle kept-alive connection, with no request outstanding: "
        "the connection was closed, not reused",
        request_url(host, port, ""),
    )


def warn_more_than_answer(host: str, port: int, target: str) -> None:
    """Say that the answer to ``target`` came with bytes after it (its connection is closed)."""
    logger.warning(
        "%s: the server sent more than the answer (a second response or stray bytes): "
        "the connection was closed rather than reused",
        request_url(host, port, target),
    )


def bad_response_error(url: str, err: BadResponse) -> UnexpectedResponse:
    """The error for an answer to ``url`` that is not HTTP/1.1 as the parser reads it."""
    return UnexpectedResponse(
        f"{url} {err}; the connection was closed (a function that writes to this.res itself can cause this)"
    )


def closed_error(url: str, *, received: bool, cause: Exception | None = None) -> ConnectionError:
    """The error for a connection that ended before the whole answer to ``url`` came:
    ``received``, whether any byte of it did; ``cause``, what the socket reported."""
    if not received:
        said = f" ({cause})" if cause else ""
        return ConnectionError(
            f"{url}: the server closed the connection without answering{said} "
            "(the request may have been processed: not retried)"
        )
    return ConnectionError(f"{url}: the server closed the connection mid-response")


def remaining(deadline: float | None, host: str, port: int) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise FunctionTimeout(f"http://{host}:{port} did not answer in time")
    return left
