"""A gthread worker that reads each request whole before a thread handles it.

gunicorn's ``gthread`` worker hands a connection to a thread as soon as it is readable, and the
thread then blocks reading the request head and body: a client that sends them a byte a second
holds the thread, and ``workers x threads`` such clients stop the proxy. This worker reads the
head and the body without blocking in the worker's event loop instead, with a deadline for each
(408 and closed when one passes) and bounds on the bytes it buffers, and submits a connection to
a thread only once its request is complete; the thread parses the buffered bytes with gunicorn's
own parser and never waits on the client to send. New and kept-alive connections alike. On
the way out it never waits either: the answer is sent by the event loop
(``answer_sender.SendingThreadWorker``, the class this one is built on).

    worker_class = "js_host_proxy.worker.DeadlineThreadWorker"   # gunicorn_settings.py

gunicorn_settings.py's ``post_fork`` hook gives each worker its ``client_limits`` from the
``JS_HOST_PROXY_*`` settings; without it the defaults below apply. A connection's state,
and the bytes read ahead that gunicorn's parser is served, are ``worker_connection.py``'s.
"""

from __future__ import annotations

import contextlib
import selectors
import time
from functools import partial
from typing import Any

from js_host_proxy.answer_sender import SendingThreadWorker
from js_host_proxy.request_reader import BAD, MORE, READY, READY_CLOSE, RequestReader, status_response
from js_host_proxy.worker_connection import DeadlineConn, PendingUnreader, rest_after_request

# PendingUnreader: importable from here, as it always was.
__all__ = ["DeadlineConn", "DeadlineThreadWorker", "PendingUnreader"]

RECV_SIZE = 65536
#: How often the event loop looks for connections past their deadline (seconds).
SWEEP_INTERVAL = 0.25


class DeadlineThreadWorker(SendingThreadWorker):
    """gthread, but a thread gets a connection only once its request has arrived whole (and
    never sends its answer: ``SendingThreadWorker``). TLS is refused there, in check_config."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Connections whose request is arriving, each in the poller until it is complete.
        self._reading: dict[DeadlineConn, None] = {}
        self._buffered = 0  # body bytes they hold, all together
        self._next_sweep = 0.0

    def accept(self, server: Any, listener: Any) -> None:
        try:
            sock, client = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        conn = DeadlineConn(self.cfg, sock, client, server, self.client_limits.body_timeout)
        self.nr_conns += 1
        # The head deadline runs from the accept: a connection that sends nothing is closed too.
        conn.reader = RequestReader(time.monotonic())
        with self._lock:
            self._reading[conn] = None
            self.poller.register(
                conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn)
            )

    def on_client_socket_readable(self, conn: DeadlineConn, client: Any) -> None:
        # Out of the poller, as gthread does; back in only if the request is still incomplete.
        with self._lock:
            self.poller.unregister(client)
            if conn.reader is None:  # a kept-alive connection's next request starts
                try:
                    self._keep.remove(conn)
                except ValueError:
                    return  # closed by the keep-alive timeout meanwhile
            else:
                self._release(conn)
        if conn.reader is None:  # the last request's reader ended where its request did
            spare = conn.spare
            conn.reader = (
                spare.reset(time.monotonic()) if spare is not None else RequestReader(time.monotonic())
            )
        try:
            data = conn.sock.recv(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            data = None
        except OSError:
            data = b""
        if not data and data is not None:
            self._drop(conn)
            return
        self._take_bytes(conn, data or b"")

    def _take_bytes(self, conn: DeadlineConn, data: bytes) -> None:
        """Feed ``data`` to the connection's reader (out of the poller) and act on what it says."""
        limits = self.client_limits
        reader = conn.reader
        assert reader is not None
        verdict = reader.feed(data, limits) if data else MORE
        if verdict in (READY, READY_CLOSE):
            conn.reader = None
            conn.spare = reader if verdict == READY and not reader.error else None
            conn.pending = reader.take()
            conn.must_close = verdict == READY_CLOSE
            self.enqueue_req(conn)
            return
        if verdict == BAD:
            if reader.error == "head":
                text = f"the request head is larger than {limits.max_head} bytes (JS_HOST_PROXY_MAX_HEAD)"
                self._refuse(conn, 431, "Request Header Fields Too Large", text)
            else:
                self._refuse(conn, 400, "Bad Request", reader.error)
            return
        # Still arriving: back in the poller, under the deadlines and the budget.
        with self._lock:
            over = self._buffered + reader.size > limits.max_buffered
            if not over:
                self._buffered += reader.size
                conn.counted = reader.size
                self._reading[conn] = None
                self.poller.register(
                    conn.sock, selectors.EVENT_READ, partial(self.on_client_socket_readable, conn)
                )
        if over:
            self._refuse(conn, 503, "Service Unavailable", "too many requests are arriving at once; retry")
        elif reader.expects and reader.head_size and not conn.continued:
            # RFC 9110 10.1.1: the client waits for this before it sends the body.
            conn.continued = True
            with contextlib.suppress(OSError):
                conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _release(self, conn: DeadlineConn) -> None:
        """Out of the connections being read and of the budget (the lock is held)."""
        self._reading.pop(conn, None)
        self._buffered -= conn.counted
        conn.counted = 0

    def _drop(self, conn: DeadlineConn) -> None:
        with self._lock:
            self._release(conn)
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock)
            self.nr_conns -= 1
        conn.reader = None
        conn.close()

    def _refuse(self, conn: DeadlineConn, status: int, reason: str, text: str) -> None:
        self.log.info("js-host-proxy: %s %s to %s: %s", status, reason, conn.client, text)
        # A short answer fits in the socket's buffer: never wait for a slow reader.
        with contextlib.suppress(OSError):
            conn.sock.send(status_response(status, reason, f"js-host-proxy: {text}\n"))
        self._drop(conn)

    def enqueue_req(self, conn: DeadlineConn) -> None:
        conn.init()
        if conn.pending:
            conn.parser.unreader.feed(conn.pending)
            conn.pending = b""
        fs = self.tpool.submit(self.handle, conn)
        self._wrap_future(fs, conn)

    def handle_request(self, req: Any, conn: DeadlineConn) -> bool:
        if conn.must_close:
            req.must_close = True  # the body was not read whole: answer, then close
        if conn.continued:  # sent already: gunicorn would send a second one
            conn.continued = False
            req.headers = [(name, value) for name, value in req.headers if name != "EXPECT"]
        try:
            return super().handle_request(req, conn)
        except TimeoutError:  # the socket's timeout: said once, without gthread's traceback
            self.log.info(
                "js-host-proxy: closed the connection of %s: it sent nothing of its request for %g s "
                "(JS_HOST_PROXY_BODY_TIMEOUT)",
                conn.client,
                conn.io_timeout,
            )
            raise StopIteration from None  # gthread's handle() closes the connection

    def handle(self, conn: DeadlineConn) -> tuple[bool, DeadlineConn]:
        keepalive, conn = super().handle(conn)
        if keepalive:
            try:
                conn.pending = rest_after_request(conn)
            except Exception:  # an unfinished body: close rather than wait for it
                return False, conn
        return keepalive, conn

    def answer_sent(self, fs: Any) -> None:
        conn = fs.conn
        if conn.pending and self.alive and not fs.cancelled() and fs.exception() is None:
            keepalive, _ = fs.result()
            if keepalive:
                # Pipelined: the next request's first bytes arrived with this one.
                conn.sock.setblocking(False)
                data, conn.pending = conn.pending, b""
                conn.spare = None  # its parser went on into this request
                conn.reader = RequestReader(time.monotonic())
                self._take_bytes(conn, data)
                return
        super().answer_sent(fs)

    def murder_keepalived(self) -> None:
        super().murder_keepalived()
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL
        limits = self.client_limits
        with self._lock:
            late = [
                conn
                for conn in self._reading
                if conn.reader is not None and conn.reader.deadline(limits) <= now
            ]
        for conn in late:
            reader = conn.reader
            if reader is None or reader.size == 0:  # nothing sent: just close, like an idle keep-alive
                self._drop(conn)
            else:
                part, seconds, setting = (
                    ("head", limits.header_timeout, "HEADER")
                    if not reader.head_size
                    else ("body", limits.body_timeout, "BODY")
                )
                text = f"the request {part} did not arrive within {seconds:g} s"
                text += f" (JS_HOST_PROXY_{setting}_TIMEOUT)"
                self._refuse(conn, 408, "Request Timeout", text)
