"""HTTP/1.1 over kept-alive sockets: one pool per process, thread-safe and fork-safe.

The request bytes are written directly to the socket and the response is parsed
by ``httptools`` (llhttp), which costs a fraction of ``http.client`` or
``requests`` per call. Low-level errors are converted here:
``socket.timeout`` becomes :class:`~js_host.exceptions.FunctionTimeout` and
every other ``OSError`` becomes :class:`~js_host.exceptions.ConnectionError`.

Servers close idle keep-alive sockets (Node after ~5 s, ``server.keepAliveTimeout``).
A pooled socket is polled before every reuse: readable while idle means the
server closed it (EOF, RST) or sent bytes nobody asked for, and either way it is
closed, never read as the next call's answer. A request on a reused socket is
retried once on a fresh socket only when
the server cannot have processed it: the send failed, or (``GET`` only) the
connection ended before any response byte. A ``POST`` whose response never
arrived is not retried: the server may have run it and died before answering
(a worker killed mid-request), and a function need not be idempotent.

A response ends where its Content-Length or chunked framing says; the end of the
connection ends it only when it has neither (RFC 9112, section 6.3): a response
cut off earlier is a :class:`~js_host.exceptions.ConnectionError`. Interim
(1xx) answers are skipped and a socket with bytes after its answer is closed
(see :mod:`js_host.response`).
"""

from __future__ import annotations

import logging
import os
import select
import socket
import struct
import time

from .exceptions import ConnectionError, FunctionTimeout, UnexpectedResponse  # noqa: A004 - the spec's name
from .response import BadResponse, Response, ResponseParser

__all__ = ["MAX_IDLE", "Pool", "Response", "pool"]

logger = logging.getLogger(__name__)

#: Idle sockets kept per (host, port).
MAX_IDLE = 32

_RECV_SIZE = 262144


class _Stale(Exception):
    """A reused socket turned out to be closed by the server before it can have
    processed the request: retried on a fresh socket."""


class _Conn:
    """A socket and what the pool knows about it."""

    __slots__ = ("poller", "proto", "sock", "timeout")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.proto = ResponseParser()
        self.timeout: float | None = None  # the kernel-level timeout currently set
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


class Pool:
    """Idle kept-alive sockets per (host, port).

    A socket is used by one request at a time. After ``fork()`` the child starts
    with an empty pool, so it never shares its parent's sockets.
    """

    def __init__(self) -> None:
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # list.pop() and list.append() are atomic: no lock on the hot path.
        self._idle: dict[tuple[str, int], list[_Conn]] = {}
        self._pid = os.getpid()

    def _get(self, key: tuple[str, int]) -> _Conn | None:
        if self._pid != os.getpid():  # fork() by other means than os.fork()
            self._reset()
        idle = self._idle.get(key)
        while idle:
            try:
                conn = idle.pop()
            except IndexError:  # another thread took the last one
                return None
            # Checked on every reuse: this is what keeps a POST from going out on a
            # socket the server has closed (a POST that got no answer is not retried),
            # and what keeps bytes sent while no request was outstanding from being
            # read as the answer to the next one.
            if conn.idle_and_open():
                return conn
            _close_idle(conn, key)
        return None

    def _put(self, key: tuple[str, int], conn: _Conn) -> None:
        idle = self._idle.get(key)
        if idle is None:
            idle = self._idle.setdefault(key, [])
        if len(idle) < MAX_IDLE and self._pid == os.getpid():
            idle.append(conn)
        else:
            conn.sock.close()

    def discard(self, host: str, port: int) -> None:
        """Close the idle sockets to ``host:port`` (a peer that turned out not to be the one
        expected): a socket kept open to a process that has gone holds its port."""
        for conn in self._idle.pop((host, port), []):
            conn.sock.close()

    def close(self) -> None:
        """Close every idle socket (sockets in use are closed when their request ends)."""
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.sock.close()

    def request(
        self,
        host: str,
        port: int,
        method: str,
        target: str,
        body: bytes | list[bytes] = b"",
        *,
        headers: bytes = b"",
        timeout: float | None = None,
    ) -> Response:
        """Send one request and return the whole response.

        ``target`` is the path with its query string; ``body`` is bytes or a list
        of buffers (sent with one sendmsg, not joined); ``headers`` are extra raw
        header lines, each ending in CRLF. ``timeout`` (seconds) bounds the whole
        exchange.
        """
        data: bytes | list[bytes]
        # An IPv6 address goes in brackets in the Host header (RFC 9110, section 7.2).
        host_header = f"[{host}]" if ":" in host else host
        if isinstance(body, list):
            length = sum(map(len, body))
            head = b"%s %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Length: %d\r\n%s\r\n" % (
                method.encode(),
                target.encode(),
                host_header.encode(),
                port,
                length,
                headers,
            )
            data = [head, *body]
        else:
            data = b"%s %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Length: %d\r\n%s\r\n%s" % (
                method.encode(),
                target.encode(),
                host_header.encode(),
                port,
                len(body),
                headers,
                body,
            )
        key = (host, port)
        deadline = None if timeout is None else time.monotonic() + timeout

        conn = self._get(key)
        if conn is not None:
            try:
                return self._exchange(
                    key, conn, data, deadline, timeout, target, reused=True, get=method == "GET"
                )
            except _Stale:
                pass  # the server closed it before processing the request: once more on a fresh socket
        conn = self._connect(host, port, deadline)
        return self._exchange(key, conn, data, deadline, timeout, target, reused=False, get=False)

    def _connect(self, host: str, port: int, deadline: float | None) -> _Conn:
        try:
            sock = socket.create_connection((host, port), _remaining(deadline, host, port))
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except socket.timeout as err:
            raise FunctionTimeout(f"Timed out connecting to http://{host}:{port}") from err
        except OSError as err:
            raise ConnectionError(f"Cannot connect to http://{host}:{port}: {err}") from err
        return _Conn(sock)

    def _exchange(
        self,
        key: tuple[str, int],
        conn: _Conn,
        data: bytes | list[bytes],
        deadline: float | None,
        timeout: float | None,
        target: str,
        *,
        reused: bool,
        get: bool,
    ) -> Response:
        """One request on ``conn``. On a ``reused`` socket, a failed send raises _Stale,
        and so does (for a ``get``) the end of the connection before any response byte."""
        host, port = key
        sock = conn.sock
        try:
            conn.set_timeout(timeout)
            try:
                if isinstance(data, bytes):
                    sock.sendall(data)
                else:
                    _sendall_parts(sock, data)
            except (BrokenPipeError, ConnectionResetError) as err:
                # The request did not get through whole: the server cannot have processed it.
                if reused:
                    raise _Stale() from err
                raise
            response = self._read(conn, deadline, host, port, target, retry_eof=reused and get)
        except _Stale:
            sock.close()
            raise
        except (socket.timeout, BlockingIOError) as err:  # EAGAIN: the kernel timeout expired
            sock.close()
            raise FunctionTimeout(f"http://{host}:{port} did not answer within {timeout} s") from err
        except OSError as err:
            sock.close()
            raise ConnectionError(f"Request to {_url(host, port, target)} failed: {err}") from err
        except BaseException:
            sock.close()
            raise
        if response.keep_alive:
            self._put(key, conn)
        else:
            sock.close()
            if conn.proto.extra:
                logger.warning(
                    "%s: the server sent more than the answer (a second response or stray bytes): "
                    "the connection was closed rather than reused",
                    _url(host, port, target),
                )
        return response

    def _read(
        self, conn: _Conn, deadline: float | None, host: str, port: int, target: str, *, retry_eof: bool
    ) -> Response:
        sock = conn.sock
        proto = conn.proto
        proto.reset()
        first = True
        while not proto.complete:
            if not first and deadline is not None:
                left = _remaining(deadline, host, port)
                if conn.timeout is None or left < conn.timeout:
                    conn.set_timeout(left)
            try:
                chunk = sock.recv(_RECV_SIZE)
            except ConnectionResetError:
                if first and retry_eof:
                    raise _Stale() from None
                raise
            if not chunk:
                if first:
                    if retry_eof:
                        raise _Stale()
                    raise ConnectionError(
                        f"{_url(host, port, target)}: the server closed the connection without "
                        "answering (the request may have been processed: not retried)"
                    )
                if proto.headers_complete and proto.is_close_delimited():
                    break  # a body delimited by the end of the connection
                raise ConnectionError(
                    f"{_url(host, port, target)}: the server closed the connection mid-response"
                )
            first = False
            try:
                proto.feed(chunk)
            except BadResponse as err:
                raise UnexpectedResponse(
                    f"{_url(host, port, target)} {err}; the connection was closed "
                    "(a function that writes to this.res itself can cause this)"
                ) from None
        return proto.response()


def _close_idle(conn: _Conn, key: tuple[str, int]) -> None:
    """Close a pooled socket found readable; a warning when it held bytes (the
    server answered what nobody asked), not when the server merely closed it."""
    try:
        data = conn.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:  # reset by the server, or nothing after all
        data = b""
    if data:
        logger.warning(
            "%s sent bytes on an idle kept-alive connection, with no request outstanding: "
            "the connection was closed, not reused",
            _url(*key, ""),
        )
    conn.sock.close()


def _sendall_parts(sock: socket.socket, parts: list[bytes]) -> None:
    """sendall() for a list of buffers: sendmsg (gather) without joining them."""
    views = [memoryview(part) for part in parts if part]
    while views:
        sent = sock.sendmsg(views)
        while views and sent >= len(views[0]):
            sent -= len(views[0])
            views.pop(0)
        if sent:
            views[0] = views[0][sent:]


def _url(host: str, port: int, target: str) -> str:
    """The URL of a request, for error messages (IPv6 addresses in brackets)."""
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{target}"


def _remaining(deadline: float | None, host: str, port: int) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise FunctionTimeout(f"http://{host}:{port} did not answer in time")
    return left


#: The process's pool.
pool = Pool()
