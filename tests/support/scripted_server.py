"""A raw-socket server that misbehaves on purpose, by script: interim answers, bytes after an
answer or on an idle connection, answers in pieces (the transports' tests, blocking and asyncio)."""

from __future__ import annotations

import socket
import threading
import time

from tests.support.sockets import read_request
from tests.support.threaded_server import ThreadedServer


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


class ScriptedServer(ThreadedServer):
    """Serves connection N by ``scripts[N]``, a list of steps:

    - a callable: read a request, send callable(body) (bytes, or a list of pieces
      sent one write at a time, a moment apart, so that they arrive apart);
    - ("push", bytes): send the bytes with no request outstanding, set ``pushed``;
    - ("close",): close the connection.

    ``requests`` holds (connection number, body) for every request read,
    ``connections`` counts the connections accepted and ``ended`` those the client closed
    (or that failed).
    """

    def __init__(self, *scripts: list) -> None:
        self.scripts = list(scripts)
        self.requests: list[tuple[int, bytes]] = []
        self.pushed = threading.Event()
        self.ended = 0
        super().__init__()

    def handle(self, conn: socket.socket, number: int) -> None:
        script = self.scripts[number] if number < len(self.scripts) else [lambda body: ok(body)] * 100
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        with conn:
            try:
                for step in script:
                    if step == ("close",):
                        break
                    if isinstance(step, tuple):
                        conn.sendall(step[1])
                        self.pushed.set()
                        continue
                    _, body, buf = read_request(conn, buf)
                    self.requests.append((number, body))
                    out = step(body)
                    for piece in out if isinstance(out, list) else [out]:
                        conn.sendall(piece)
                        time.sleep(0.02)
                else:
                    while conn.recv(65536):  # until the client closes it
                        pass
            except OSError:
                pass
        self.ended += 1


HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\nLink: </app.js>; rel=preload\r\n\r\n"
PROCESSING = b"HTTP/1.1 102 Processing\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
