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
(see :mod:`js_host.response`). A request sent with a ``request_id`` gets only an
answer that carries it back (see :mod:`js_host.answer_id`).
"""

from __future__ import annotations

import os
import socket
import time

from .answer_id import ID_LINE, mismatch
from .connection import (
    Body,
    Connection,
    bad_response_error,
    closed_error,
    open_connection,
    remaining,
    request_head,
    request_url,
    warn_more_than_answer,
)
from .exceptions import ConnectionError, FunctionTimeout, UnexpectedResponse  # noqa: A004 - the spec's name
from .peer_owner import HOSTS, OwnerCheck
from .response import BadResponse, Response

__all__ = ["MAX_IDLE", "Pool", "Response", "pool"]

#: Idle sockets kept per (host, port).
MAX_IDLE = 32

_RECV_SIZE = 262144


class BodyTooLarge(UnexpectedResponse):
    """The response's body is larger than the ``max_body`` asked for (the socket is closed,
    the rest never read)."""


class _Stale(Exception):
    """A reused socket turned out to be closed by the server before it can have
    processed the request: retried on a fresh socket."""


class Pool:
    """Idle kept-alive sockets per (host, port).

    A socket is used by one request at a time. After ``fork()`` the child starts
    with an empty pool, so it never shares its parent's sockets.
    """

    def __init__(self, owners: OwnerCheck | None = HOSTS) -> None:
        # Who may hold a loopback port this pool connects to (js_host.peer_owner; None: anyone).
        self.owners = owners
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # list.pop() and list.append() are atomic: no lock on the hot path.
        self._idle: dict[tuple[str, int], list[Connection]] = {}
        self._pid = os.getpid()

    def _get(self, key: tuple[str, int]) -> Connection | None:
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
            conn.close_idle(key)
        return None

    def _put(self, key: tuple[str, int], conn: Connection) -> None:
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
        body: Body = b"",
        *,
        headers: bytes = b"",
        timeout: float | None = None,
        connect_timeout: float | None = None,
        max_body: int | None = None,
        request_id: bytes | None = None,
    ) -> Response:
        """Send one request and return the whole response.

        ``target`` is the path with its query string; ``body`` is bytes or a list
        of buffers (sent with one sendmsg, not joined); ``headers`` are extra raw
        header lines, each ending in CRLF. ``timeout`` (seconds) bounds the whole
        exchange, ``connect_timeout`` the opening of a new socket (a
        :class:`~js_host.connection.CannotConnect` or ``ConnectTimeout`` then says that
        nothing was sent). A body above ``max_body`` bytes raises :class:`BodyTooLarge`.
        ``request_id`` (unique per request) is sent as ``X-Request-Id``, and an answer that
        does not carry it back raises :class:`~js_host.exceptions.AnswerMismatch`.
        """
        if request_id is not None:
            headers += ID_LINE % request_id
        data: Body
        if isinstance(body, list):
            data = [request_head(method, target, host, port, sum(map(len, body)), headers), *body]
        else:
            data = request_head(method, target, host, port, len(body), headers) + body
        key = (host, port)
        deadline = None if timeout is None else time.monotonic() + timeout

        conn = self._get(key)
        if conn is not None:
            try:
                return self._exchange(
                    key,
                    conn,
                    data,
                    deadline,
                    timeout,
                    target,
                    max_body,
                    request_id,
                    reused=True,
                    get=method == "GET",
                )
            except _Stale:
                pass  # the server closed it before processing the request: once more on a fresh socket
        connect_by = deadline
        if connect_timeout is not None:
            connect_by = time.monotonic() + connect_timeout
            if deadline is not None:
                connect_by = min(connect_by, deadline)
        conn = open_connection(host, port, connect_by, self.owners)
        return self._exchange(
            key, conn, data, deadline, timeout, target, max_body, request_id, reused=False, get=False
        )

    def _exchange(
        self,
        key: tuple[str, int],
        conn: Connection,
        data: Body,
        deadline: float | None,
        timeout: float | None,
        target: str,
        max_body: int | None,
        request_id: bytes | None,
        *,
        reused: bool,
        get: bool,
    ) -> Response:
        """One request on ``conn``. On a ``reused`` socket, a failed send raises _Stale,
        and so does (for a ``get``) the end of the connection before any response byte.
        An answer without ``request_id`` (when given) is not returned: see answer_id."""
        host, port = key
        sock = conn.sock
        try:
            conn.set_timeout(timeout)
            try:
                if isinstance(data, bytes):
                    sock.sendall(data)
                else:
                    conn.sendall_parts(data)
            except (BrokenPipeError, ConnectionResetError) as err:
                # The request did not get through whole: the server cannot have processed it.
                if reused:
                    raise _Stale() from err
                raise
            response = self._read(conn, deadline, host, port, target, max_body, retry_eof=reused and get)
        except _Stale:
            sock.close()
            raise
        except (socket.timeout, BlockingIOError) as err:  # EAGAIN: the kernel timeout expired
            sock.close()
            raise FunctionTimeout(f"http://{host}:{port} did not answer within {timeout} s") from err
        except OSError as err:
            sock.close()
            raise ConnectionError(f"Request to {request_url(host, port, target)} failed: {err}") from err
        except BaseException:
            sock.close()
            raise
        if request_id is not None:
            wrong = mismatch(conn, response, request_id, host, port, target)
            if wrong is not None:
                sock.close()
                raise wrong
        if response.keep_alive:
            self._put(key, conn)
        else:
            sock.close()
            if conn.proto.extra:
                warn_more_than_answer(host, port, target)
        return response

    def _read(
        self,
        conn: Connection,
        deadline: float | None,
        host: str,
        port: int,
        target: str,
        max_body: int | None,
        *,
        retry_eof: bool,
    ) -> Response:
        sock = conn.sock
        proto = conn.proto
        proto.reset()
        first = True
        received = 0
        while not proto.complete:
            if not first and deadline is not None:
                left = remaining(deadline, host, port)
                if conn.timeout is None or left < conn.timeout:
                    conn.set_timeout(left)
            try:
                chunk = sock.recv(_RECV_SIZE)
            except ConnectionResetError:
                if first and retry_eof:
                    raise _Stale() from None
                raise
            if not chunk:
                if first and retry_eof:
                    raise _Stale()
                if not first and proto.headers_complete and proto.is_close_delimited():
                    break  # a body delimited by the end of the connection
                raise closed_error(request_url(host, port, target), received=not first)
            first = False
            try:
                proto.feed(chunk)
            except BadResponse as err:
                raise bad_response_error(request_url(host, port, target), err) from None
            if max_body is not None:
                received += len(chunk)  # head and body: counting the body only once this is over
                if received > max_body and sum(map(len, proto.body)) > max_body:
                    raise BodyTooLarge(
                        f"{request_url(host, port, target)} sent a body of over {max_body} bytes"
                    )
        return proto.response()


#: The process's pool.
pool = Pool()
