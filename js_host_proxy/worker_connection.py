"""One client connection of the proxy's worker (``worker.py``), and the bytes it reads
ahead of gunicorn's parser.

The worker's event loop reads a request whole before a thread handles it; the bytes it
has read are then served to gunicorn's parser (:class:`PendingUnreader`) as a socket
would serve them, and after an answer the bytes past the request (a pipelined one) are
taken back for the event loop (:func:`rest_after_request`). :class:`DeadlineConn` holds
a connection's request reader and that state between the two.
"""

from __future__ import annotations

import io
from typing import Any

from gunicorn.http import RequestParser
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers.gthread import TConn

from js_host_proxy.answer_buffer import AnswerBuffer
from js_host_proxy.request_reader import RequestReader


class PendingUnreader(SocketUnreader):
    """gunicorn's socket reader, fed first the bytes the event loop has read already.

    Handing them to ``Unreader.unread()`` whole made reading a large body quadratic: each of
    gunicorn's small reads (8 KiB from the body) copies all that is left of its buffer (an 8 MB
    body took 11 s of CPU). Served here a socket-sized chunk at a time, as ``recv`` would give
    them, each byte is copied a fixed number of times.
    """

    def __init__(self, sock: Any, max_chunk: int = 8192) -> None:
        super().__init__(sock, max_chunk)
        self.pending = memoryview(b"")

    def feed(self, data: bytes) -> None:
        """Serve ``data`` (bytes read ahead from the socket) before reading the socket again."""
        rest = self.pending.tobytes()
        self.pending = memoryview(rest + data if rest else data)

    def chunk(self) -> bytes:
        if self.pending:
            piece, self.pending = self.pending[: self.mxchunk], self.pending[self.mxchunk :]
            return piece.tobytes()
        return super().chunk()


class DeadlineConn(TConn):
    """gthread's connection, with the request reader the event loop feeds and the state
    the worker keeps between reading a request and a thread answering it."""

    def __init__(self, cfg: Any, sock: Any, client: Any, server: Any, io_timeout: float) -> None:
        super().__init__(cfg, sock, client, server)
        self.io_timeout = io_timeout
        self.reader: RequestReader | None = None
        self.spare: RequestReader | None = None  # the last one, reused for the next request
        self.counted = 0  # bytes of the reader's counted in the worker's budget
        self.pending = b""  # bytes read but not yet parsed by gunicorn
        self.must_close = False
        self.continued = False  # "100 Continue" sent while the body was read here
        self.answer: AnswerBuffer | None = None  # what a thread wrote, until it is sent

    def init(self) -> None:
        """For a thread: a socket with a timeout rather than gthread's blocking one, so that a
        thread never waits on a client longer than that for a request gunicorn's parser finds
        unfinished. (Answers are not written to it: ``answer_sender.py``.)"""
        self.initialized = True
        self.sock.settimeout(self.io_timeout)
        if self.parser is None:
            self.parser = RequestParser(self.cfg, self.sock, self.client)
            # Before any request is parsed: the parser reads through its unreader only.
            self.parser.unreader = PendingUnreader(self.sock)


def rest_after_request(conn: DeadlineConn) -> bytes:
    """After an answer: skip what the app left of the body (it arrived whole), and return the
    bytes already read past it (a pipelined request), which gunicorn's parser holds."""
    parser = conn.parser
    unreader = parser.unreader
    if unreader.buf.tell() == 0 and not unreader.pending:  # the usual case: nothing follows
        return b""
    if parser.mesg is not None:
        while parser.mesg.body.read(8192):
            pass
    rest = unreader.buf.getvalue() + unreader.pending.tobytes()
    unreader.buf = io.BytesIO()
    unreader.pending = memoryview(b"")
    return rest
