"""Socket helpers for the client transport tests: the local ports of the pool's idle
sockets, and one request read off a raw server socket."""

from __future__ import annotations

import re
import socket

from js_host.transport import pool


def idle_local_ports() -> set[int]:
    """Local ports of the idle sockets to the default host."""
    from js_host.host import host

    target = host.get_target()
    return {conn.sock.getsockname()[1] for conn in pool._idle.get((target.address, target.port), [])}


def read_request(conn: socket.socket, buf: bytes) -> tuple[bytes, bytes, bytes]:
    """Read one request on ``conn`` (``buf``: bytes already read); returns its head,
    its body and the bytes after it. A request without Content-Length has no body (RFC
    9112, section 6.3): any client may connect to the server's port, not only
    the transport, which always sends one. OSError when the client goes away."""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            raise OSError("the client closed the connection")
        buf += chunk
    head, buf = buf.split(b"\r\n\r\n", 1)
    match = re.search(rb"(?im)^content-length: *(\d+)", head)
    length = int(match.group(1)) if match else 0
    while len(buf) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise OSError("the client closed the connection mid-request")
        buf += chunk
    return head, buf[:length], buf[length:]
