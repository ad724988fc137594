"""A stdlib HTTP/1.1 upstream that answers each path with bytes written as given:
for the framing tricks a Node host does not do (a 101, bytes after an answer, a
body cut off, a close-delimited or endless body). It counts requests per path and
connections, and serves in threads of this process until closed. (Its fixtures are
in tests/proxy/conftest.py.)"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections import Counter
from typing import Callable, Union

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"

#: Bytes to write, or a function that writes to the socket itself.
Script = Union[bytes, Callable[[socket.socket], None]]


class ScriptedUpstream:
    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._scripts: dict[str, tuple[Script, bool]] = {}
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.connections = 0
        self.seen_headers: list[dict[str, str]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def script(self, path: str, answer: Script, *, close: bool = False) -> None:
        """Answer ``path`` (without its query) with ``answer``; ``close``: then close the connection."""
        self._scripts[path] = (answer, close)

    def requests(self, path: str) -> int:
        with self._lock:
            return self._counts[path]

    def _accept(self) -> None:
        while not self._closed:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._sockets.append(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        reader = sock.makefile("rb")
        try:
            while True:
                line = reader.readline()
                if not line:
                    return
                path = line.split()[1].decode().split("?")[0]
                headers = {}
                while (field := reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = field.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                reader.read(int(headers.get("content-length", "0")))
                with self._lock:
                    self._counts[path] += 1
                    self.seen_headers.append(headers)
                answer, close = self._scripts.get(path, (OK, False))
                if callable(answer):
                    answer(sock)
                else:
                    sock.sendall(answer)
                if close:
                    return
        except OSError:
            return
        finally:
            reader.close()
            sock.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        self._thread.join(5)

    def __enter__(self) -> ScriptedUpstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
