"""A threaded HTTP/1.1 server that answers like a host and records the requests it gets."""

from __future__ import annotations

import json
import socket
from typing import Any

from tests.support.sockets import read_request
from tests.support.threaded_server import ThreadedServer


class RecordingServer(ThreadedServer):
    """A threaded HTTP/1.1 server that answers like a host and records requests.

    ``close_after`` makes it close a kept-alive connection when its Nth request
    arrives (without answering it), as a server whose keep-alive timer fired.
    ``status_code`` is the code of function responses. While ``hang`` is true,
    requests are recorded but never answered (a host that hangs). ``headers`` are added
    to the function responses (e.g. a proxy's ``X-Cache``).
    """

    def __init__(
        self,
        functions: list[str],
        *,
        close_after: int = 0,
        status_code: int = 200,
        hang: bool = False,
        address: str = "127.0.0.1",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.functions = functions
        self.headers = headers or {}
        self.close_after = close_after
        self.status_code = status_code
        self.hang = hang
        self.requests: list[dict[str, Any]] = []
        super().__init__(address)

    def handle(self, conn: socket.socket, number: int) -> None:
        buf = b""
        served = 0
        with conn:
            while True:
                try:
                    head, body, buf = read_request(conn, buf)
                except OSError:  # the client went away
                    return
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
                served += 1
                if self.close_after and served == self.close_after:
                    return  # closed without an answer
                method, target, _ = lines[0].split(" ")
                self.requests.append({"method": method, "target": target, "headers": headers, "body": body})
                if self.hang:
                    while conn.recv(65536):  # until the client gives up
                        pass
                    return
                if target == "/status":
                    code = 200
                    out = json.dumps(
                        {"type": "Host", "version": "test", "config": {"functions": self.functions}}
                    ).encode()
                    extra = ""
                else:
                    code = self.status_code
                    out = b"ok:" + body
                    extra = "".join(f"{name}: {value}\r\n" for name, value in self.headers.items())
                reason = {200: "OK", 504: "Gateway Timeout"}.get(code, "X")
                head = f"HTTP/1.1 {code} {reason}\r\nContent-Length: {len(out)}\r\n{extra}\r\n"
                conn.sendall(head.encode() + out)

    def function_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["target"].startswith("/function/")]
