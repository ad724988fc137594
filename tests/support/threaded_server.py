"""The accepting half of the tests' raw-socket servers: a listening socket whose
every connection is served on its own thread by the subclass's ``handle``; and the
fixture body that closes every server a test made."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from js_host.endpoint import format_url


class ThreadedServer:
    """Listens on a free port of ``address`` and serves each accepted connection by
    ``handle(conn, number)`` on a thread of its own (``number``: 0, 1, ... in the order
    accepted). ``connections`` counts the connections accepted.

    Accepting starts at once: a subclass sets what ``handle`` reads before calling
    ``super().__init__``.
    """

    def __init__(self, address: str = "127.0.0.1") -> None:
        self.connections = 0
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        self.sock = socket.create_server((address, 0), family=family, backlog=16)
        self.port = self.sock.getsockname()[1]
        self.url = format_url(address, self.port)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            number = self.connections
            self.connections += 1
            threading.Thread(target=self.handle, args=(conn, number), daemon=True).start()

    def handle(self, conn: socket.socket, number: int) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define handle(conn, number)")

    def close(self) -> None:
        self.sock.close()


S = TypeVar("S", bound=ThreadedServer)


@contextmanager
def closing_servers(server_class: Callable[..., S]) -> Iterator[Callable[..., S]]:
    """Within: ``make(*args, **kwargs)`` makes a ``server_class(*args, **kwargs)``;
    every server made is closed on the way out."""
    servers: list[S] = []

    def make(*args: Any, **kwargs: Any) -> S:
        servers.append(server_class(*args, **kwargs))
        return servers[-1]

    try:
        yield make
    finally:
        for server in servers:
            server.close()
