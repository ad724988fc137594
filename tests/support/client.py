"""Helpers for the Python client tests (plain functions; the fixtures are in
tests/client_fixtures.py)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

from js_host.endpoint import format_url
from tests.support.processes import IMPLEMENTATIONS

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "client"
FUNCTIONS_JS = FIXTURES / "host.config.js"


def bin_setting(impl: str) -> dict[str, Any]:
    """BIN_PATH for ``impl``: the npm one explicitly, the bundled one through the fallback."""
    return {} if impl == "bundled" else {"BIN_PATH": str(IMPLEMENTATIONS[impl])}


def write_config(directory: Path, *, name: str = "host.config.js", **props: Any) -> Path:
    """A config file with the test functions and ``props`` (e.g. port) in ``directory``."""
    source = FUNCTIONS_JS.read_text()
    extra = "".join(f"  {key}: {json.dumps(value)},\n" for key, value in props.items())
    path = directory / name
    path.write_text(source.replace("module.exports = {\n", "module.exports = {\n" + extra, 1))
    return path


def config_port(config: Path) -> int:
    for line in config.read_text().splitlines():
        if line.strip().startswith("port:"):
            return int(line.split(":")[1].strip(" ,"))
    raise ValueError(f"{config} has no port")


class RecordingServer:
    """A threaded HTTP/1.1 server that answers like a host and records requests.

    ``close_after`` makes it close a kept-alive connection when its Nth request
    arrives (without answering it), as a server whose keep-alive timer fired.
    ``status_code`` is the code of function responses. While ``hang`` is true,
    requests are recorded but never answered (a host that hangs).
    """

    def __init__(
        self,
        functions: list[str],
        *,
        close_after: int = 0,
        status_code: int = 200,
        hang: bool = False,
        address: str = "127.0.0.1",
    ) -> None:
        self.functions = functions
        self.close_after = close_after
        self.status_code = status_code
        self.hang = hang
        self.requests: list[dict[str, Any]] = []
        self.connections = 0
        self.sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
        self.sock.bind((address, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = format_url(address, self.port)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        buf = b""
        served = 0
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
                length = int(headers.get("content-length", 0))
                while len(buf) < length:
                    buf += conn.recv(65536)
                body, buf = buf[:length], buf[length:]
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
                else:
                    code = self.status_code
                    out = b"ok:" + body
                reason = {200: "OK", 504: "Gateway Timeout"}.get(code, "X")
                conn.sendall(f"HTTP/1.1 {code} {reason}\r\nContent-Length: {len(out)}\r\n\r\n".encode() + out)

    def function_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["target"].startswith("/function/")]

    def close(self) -> None:
        self.sock.close()


def wait_for(predicate: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds (True) or ``seconds`` pass (False)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def without_logging_config() -> Iterator[logging.Logger]:
    """Logging as in a program that has not configured it: the root logger without
    handlers (pytest adds its own to it) at its default level. Yields the root logger;
    its handlers and level are restored afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers.clear()
    root.setLevel(logging.WARNING)
    try:
        yield root
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
