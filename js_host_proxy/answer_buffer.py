"""One answer as a thread writes it, then sent to the client without blocking.

gunicorn's ``Response`` writes an answer with the socket's ``sendall`` (the head, then each
piece of the body): a thread answering a client that does not read waits on its socket. The
proxy's worker (``answer_sender.py``) hands gunicorn an :class:`AnswerBuffer` in the socket's
place instead. The thread's writes are kept as they are, without a copy (the proxy's answers
are whole in memory already: stored hits, and misses read whole up to
``JS_HOST_PROXY_MAX_RESPONSE``), and :meth:`AnswerBuffer.send_some` sends what the socket
takes, never waiting: the head and the body in one ``sendmsg``.
"""

from __future__ import annotations

import select
import time
from typing import Any

#: Pieces given to one sendmsg(), far below the system's IOV_MAX (an answer is a head and a body).
MAX_PIECES = 64


class AnswerBuffer:
    """What gunicorn writes an answer to instead of the client's socket: the socket methods
    its ``Response`` and ``util.write*`` call, and :meth:`send_some` for the worker."""

    __slots__ = ("pieces", "size", "sock")

    def __init__(self, sock: Any) -> None:
        self.sock = sock  # the client's
        self.pieces: list[bytes | memoryview] = []  # not sent yet
        self.size = 0  # bytes written: what the buffer holds in memory until it is sent

    # -- what gunicorn calls on the socket ------------------------------------------------------

    def sendall(self, data: bytes) -> None:
        if data:
            self.pieces.append(data)
            self.size += len(data)

    def send(self, data: bytes) -> int:
        self.sendall(data)
        return len(data)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        """``Response.sendfile`` (a ``wsgi.file_wrapper`` answer): the file's bytes, read now."""
        file.seek(offset)
        data = file.read() if count is None else file.read(count)
        self.sendall(data)
        return len(data)

    # gunicorn shuts and closes the socket after an error once the head was written; its
    # handle() then says not to keep the connection: what was written is sent, then it closes.
    def shutdown(self, how: int) -> None:
        pass

    def close(self) -> None:
        pass

    def gettimeout(self) -> float | None:
        return None  # util.write_nonblock asks before it writes an error page

    def setblocking(self, flag: bool) -> None:
        pass  # writing here never blocks

    def getsockname(self) -> Any:
        return self.sock.getsockname()  # the socket a request came in on (observe.py)

    def getpeername(self) -> Any:
        return self.sock.getpeername()

    # -- sending --------------------------------------------------------------------------------

    def send_some(self) -> bool:
        """Send what the socket (non-blocking) takes now; True once all of it is sent. The
        socket's OSError (the client gone) is raised."""
        pieces = self.pieces
        while pieces:
            try:
                sent = self.sock.sendmsg(pieces[:MAX_PIECES])
            except BlockingIOError:
                return False
            while sent:
                first = pieces[0]
                if sent < len(first):
                    pieces[0] = memoryview(first)[sent:]
                    break
                sent -= len(first)
                del pieces[0]
        return True

    def send_within(self, seconds: float) -> bool:
        """Send all of it, waiting at most ``seconds`` for the client to read (only while the
        worker stops, when its event loop no longer sends); whether it was all sent."""
        end = time.monotonic() + seconds
        poll = select.poll()
        poll.register(self.sock, select.POLLOUT)
        while not self.send_some():
            left = end - time.monotonic()
            if left <= 0 or not poll.poll(left * 1000):
                return False
        return True
