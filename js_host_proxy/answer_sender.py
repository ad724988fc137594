"""The gthread layer under the proxy's worker that keeps threads off the clients' sockets on the
way out: answers are sent by the worker's event loop.

gunicorn's gthread thread writes an answer with a blocking ``sendall``: a client that does not
read it holds the thread until the socket's timeout, and ``workers x threads`` such clients (a
small receive buffer, a large answer) stopped the proxy. Here gunicorn writes the answer into an
:class:`~js_host_proxy.answer_buffer.AnswerBuffer` handed to it as the socket. Once the request
is handled, its thread sends what the socket takes at once, without blocking (all of most
answers); the event loop sends the rest as the client reads it, then goes on with the
connection as gthread would have (kept alive, or closed). Bounds, in ``client_limits``:

- ``send_timeout`` (``JS_HOST_PROXY_SEND_TIMEOUT``): an answer not taken that long after it was
  ready closes its connection (reset: the kernel drops what it still held for it too);
- ``max_unsent`` (``JS_HOST_PROXY_MAX_UNSENT``): the answers waiting in the event loop hold at
  most that many bytes of a worker's memory; past it the connections whose answers have waited
  longest are closed. A client that reads takes its answer at once: the ones that wait are
  those that do not read, and a new request is never refused for them.

A worker that stops sends the answers still waiting on its event loop's last pass, within their
deadlines and the graceful timeout. :class:`~js_host_proxy.worker.DeadlineThreadWorker` (the
requests read whole before a thread gets them) is built on this class.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import time
from functools import partial
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

from js_host_proxy.answer_buffer import AnswerBuffer
from js_host_proxy.request_reader import ClientLimits

#: SO_LINGER on, 0 s: close() resets the connection instead of sending what the kernel holds.
RESET = struct.pack("ii", 1, 0)


class Waiting:
    """An answer the event loop is sending, and the request's future (for what comes next)."""

    __slots__ = ("answer", "deadline", "future")

    def __init__(self, answer: AnswerBuffer, deadline: float, future: Any) -> None:
        self.answer = answer
        self.deadline = deadline
        self.future = future


class SendingThreadWorker(ThreadWorker):
    """gthread, but a thread never waits on a client to take its answer."""

    client_limits = ClientLimits()

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        super().check_config(cfg, log)
        if cfg.is_ssl:
            # TLS bytes cannot be read ahead of the handshake, nor sent in pieces, by the event loop.
            raise RuntimeError(
                f"{cls.__module__}.{cls.__name__} does not terminate TLS (certfile/keyfile are set): "
                "terminate TLS in front of the proxy, or set JS_HOST_PROXY_WORKER_CLASS=gthread"
            )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Connections whose answer the event loop is sending, the oldest (first due) first.
        self._sending: dict[Any, Waiting] = {}
        self._unsent = 0  # bytes their answers hold, all together
        self._stopping = False  # the event loop has ended: threads send their own answers

    def handle(self, conn: Any) -> tuple[bool, Any]:
        """In a thread: gunicorn writes the answer (or its error page) into a buffer."""
        sock = conn.sock
        conn.answer = conn.sock = AnswerBuffer(sock)
        try:
            return super().handle(conn)
        finally:
            conn.sock = sock

    def finish_request(self, fs: Any) -> None:
        """In the thread that handled the request (the future's callback): send what the socket
        takes now; the event loop sends the rest."""
        conn = fs.conn
        answer: AnswerBuffer | None = getattr(conn, "answer", None)
        conn.answer = None
        if answer is None or not answer.pieces or fs.cancelled() or fs.exception() is not None:
            self.answer_sent(fs)
            return
        try:
            conn.sock.setblocking(False)
            if answer.send_some():
                self.answer_sent(fs)
                return
        except OSError:  # the client is gone
            self._close(conn)
            return
        limits = self.client_limits
        over: list[Any] = []
        with self._lock:
            stopping = self._stopping or not self.alive
            if not stopping:
                self._sending[conn] = Waiting(answer, time.monotonic() + limits.send_timeout, fs)
                self._unsent += answer.size
                self.poller.register(
                    conn.sock, selectors.EVENT_WRITE, partial(self.on_client_socket_writable, conn)
                )
                over = self._over_budget(conn, limits.max_unsent)
        if stopping:
            self._send_here(fs, answer)
        for late in over:
            why = f"its answer had waited longest while this worker held over {limits.max_unsent} bytes"
            self._cut(late, why + " of answers not taken (JS_HOST_PROXY_MAX_UNSENT)")

    def _send_here(self, fs: Any, answer: AnswerBuffer) -> None:
        """The worker stopping: no event loop to send the answer, and no new request for this
        thread to handle, so it sends the answer itself, as gthread's thread did."""
        try:
            sent = answer.send_within(self.client_limits.send_timeout)
        except OSError:
            sent = False
        if sent:
            self.answer_sent(fs)
        else:
            self._close(fs.conn)

    def answer_sent(self, fs: Any) -> None:
        """The request's answer is sent (or there is none): on with the connection, as gthread."""
        super().finish_request(fs)

    def on_client_socket_writable(self, conn: Any, client: Any) -> None:
        with self._lock:
            waiting = self._sending.get(conn)
        if waiting is None:
            return  # cut meanwhile
        try:
            done = waiting.answer.send_some()
        except OSError:
            done = None
        if done is False:
            return
        with self._lock:
            if self._take(conn) is None:
                return  # cut meanwhile by a thread over the budget
        if done:
            self.answer_sent(waiting.future)
        else:
            self._close(conn)

    def _take(self, conn: Any) -> Waiting | None:
        """``conn`` out of the connections being sent to, and of the poller (the lock is held)."""
        waiting = self._sending.pop(conn, None)
        if waiting is not None:
            self._unsent -= waiting.answer.size
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock)
        return waiting

    def _over_budget(self, newest: Any, budget: int) -> list[Any]:
        """Taken, the oldest waiting answers' connections while the worker holds over
        ``budget`` bytes of them (never ``newest``'s; the lock is held)."""
        taken = []
        excess = self._unsent - budget
        for conn, waiting in self._sending.items():
            if excess <= 0 or conn is newest:
                break
            excess -= waiting.answer.size
            taken.append(conn)
        for conn in taken:
            self._take(conn)
        return taken

    def _close(self, conn: Any) -> None:
        with self._lock:
            self.nr_conns -= 1
        conn.close()

    def _cut(self, conn: Any, why: str) -> None:
        """Close a connection whose client does not take its answer (taken already)."""
        self.log.info("js-host-proxy: closed the connection of %s: %s", conn.client, why)
        with contextlib.suppress(OSError):
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RESET)
        self._close(conn)

    def murder_keepalived(self) -> None:
        """gthread's pass over idle connections, each turn of the event loop; then the answers
        past their deadline (all due ``send_timeout`` after they were ready: the first are oldest)."""
        super().murder_keepalived()
        if not self.alive:
            self._send_the_rest()  # the event loop's last pass
            return
        if not self._sending:  # the usual case, read without the lock: a new one waits a pass
            return
        now = time.monotonic()
        with self._lock:
            late = []
            for conn, waiting in self._sending.items():
                if waiting.deadline > now:
                    break
                late.append(conn)
            for conn in late:
                self._take(conn)
        seconds = self.client_limits.send_timeout
        for conn in late:
            self._cut(conn, f"it did not take its answer within {seconds:g} s (JS_HOST_PROXY_SEND_TIMEOUT)")

    def run(self) -> None:
        super().run()
        # A loop that ended without its last pass (the master gone): what is left, once.
        self._send_the_rest()

    def _send_the_rest(self) -> None:
        """The worker stopping: the answers the event loop was sending are sent as their clients
        read them, within their deadlines and the graceful timeout; then their connections close.
        (Threads still handling requests send their own answers: ``finish_request``.)"""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            waiting = [(conn, self._take(conn)) for conn in list(self._sending)]
        end = time.monotonic() + self.cfg.graceful_timeout
        with selectors.DefaultSelector() as selector:
            for conn, entry in waiting:
                selector.register(conn.sock, selectors.EVENT_WRITE, (conn, entry))
            while selector.get_map():
                for key, _ in selector.select(timeout=1.0):
                    conn, entry = key.data
                    try:
                        done = entry.answer.send_some()
                    except OSError:
                        done = None
                    if done is not False:
                        selector.unregister(conn.sock)
                        if done:
                            self.answer_sent(entry.future)  # the loop has ended: closed
                        else:
                            self._close(conn)
                now = time.monotonic()
                for key in list(selector.get_map().values()):
                    conn, entry = key.data
                    if min(entry.deadline, end) <= now:
                        selector.unregister(conn.sock)
                        self._close(conn)
                self.notify()  # still alive, for the arbiter
