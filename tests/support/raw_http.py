"""Raw HTTP for the system tests: one request on a new connection that reports any
status (the path sent as is), bytes sent as they are, and "does this host still answer"."""

from __future__ import annotations

import http.client
import socket
from typing import NamedTuple


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def request(
    base: str,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 15.0,
) -> Answer:
    """One request on a new connection; any status is returned (``path`` is sent as is)."""
    host, port = base.split("//", 1)[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def raw_exchange(base: str, data: bytes, timeout: float = 15.0) -> bytes:
    """Send ``data`` as is (e.g. an HTTP/1.0 request without Host) and read until the server closes."""
    host, port = base.split("//", 1)[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def alive(base: str) -> bool:
    """Does the host at ``base`` still answer GET /status with 200?"""
    try:
        return request(base, "GET", "/status", timeout=5).status == 200
    except OSError:
        return False
