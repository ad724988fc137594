"""The Python client under measurement: its echo host, payloads, the floor's clients
(raw socket, blocking and asyncio) and start-up runs in new Python processes.

Importing this module puts the checkout's root first on ``sys.path``: the ``js_host``
measured is this checkout's.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Callable

from . import BENCH, BINS, NODE_ENV, import_this_checkout
from .processes import NodeServer, free_port, fresh_log, run_python

import_this_checkout()

from js_host import verbosity  # noqa: E402  (after the path above)
from js_host.conf import settings  # noqa: E402
from js_host.function import Function, serialize  # noqa: E402
from js_host.host import JSHost  # noqa: E402
from js_host.local_cache import LocalCache  # noqa: E402

__all__ = ["serialize"]  # for the scripts, which import js_host only from here

CONFIG = BENCH / "client_echo.config.js"
FLOOR_ECHO = BENCH / "client_floor_echo.js"
SMALL = {"text": "x" * 38}  # 50 bytes of canonical JSON
LARGE = {"text": "x" * (100 * 1024 - 12)}  # 100 KB
assert len(serialize(SMALL)) == 50 and len(serialize(LARGE)) == 100 * 1024


def quiet() -> None:
    """The client logs nothing on the console: the benchmarks print their own lines."""
    settings.VERBOSITY = verbosity.SILENT


def host_cmd(impl: str = "bundled", config: Path = CONFIG) -> list[str]:
    """A host of ``impl`` on a free port, printing its status JSON."""
    return ["node", str(BINS[impl]), str(config), "--json", "--port", "0"]


def host_config(workdir: Path, port: int, extra: str = "") -> Path:
    """The echo config with a fixed ``port`` (and ``extra`` settings) in ``workdir``:
    a client configured with SOURCE_ROOT=workdir finds that host."""
    path = workdir / "host.config.js"
    path.write_text(
        CONFIG.read_text().replace("module.exports = {", f"module.exports = {{\n  port: {port},{extra}")
    )
    return path


def function_on(
    url: str, bin_path: Path = BINS["bundled"], name: str = "echo", *, local_cache: int = 0
) -> Function:
    """``Function(name)`` (of the echo config) against the host at ``url``; with
    ``local_cache`` bytes of local cache (what LOCAL_CACHE_SIZE gives every host)."""
    host = JSHost(str(CONFIG), url_override=url, bin_path=str(bin_path))
    if local_cache:
        host.local_cache = LocalCache(local_cache, 60.0)
    return Function(name, host=host)


def echo_request(port: int, body: bytes) -> bytes:
    """The bytes of a ``POST /function/echo`` of ``body`` to 127.0.0.1:``port``, written by hand."""
    return (
        f"POST /function/echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def raw_client(port: int, body: bytes) -> Callable[[], bytes]:
    """The floor's client: hand-written request bytes on one kept-alive socket."""
    request = echo_request(port, body)
    sock = _connect(port)

    def call() -> bytes:
        nonlocal sock
        try:
            return _exchange(sock, request)
        except ConnectionError:
            # node:http closes a kept-alive connection after 5 s idle (keepAliveTimeout):
            # a client left waiting meanwhile (e.g. for the 2015 stack) connects again.
            sock.close()
            sock = _connect(port)
            return _exchange(sock, request)

    return call


def raw_async_client(
    loop: asyncio.AbstractEventLoop, port: int, body: bytes
) -> Callable[[], Awaitable[bytes]]:
    """The asyncio floor: hand-written request bytes on one kept-alive connection, an
    ``asyncio.Protocol`` that resolves a future per answer (no parsing: the answer is small)."""
    request = echo_request(port, body)

    class Floor(asyncio.Protocol):
        waiter: asyncio.Future[bytes] | None = None

        def data_received(self, data: bytes) -> None:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(data)

    transport, floor = loop.run_until_complete(loop.create_connection(Floor, "127.0.0.1", port))

    async def call() -> bytes:
        floor.waiter = loop.create_future()
        transport.write(request)
        return await floor.waiter

    return call


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


_LENGTH = re.compile(rb"content-length: *(\d+)", re.I)


def _receive(sock: socket.socket) -> bytes:
    data = sock.recv(262144)
    if not data:
        raise ConnectionResetError("the server closed the kept-alive connection")
    return data


def _exchange(sock: socket.socket, request: bytes) -> bytes:
    """Send ``request``, return the body of the answer."""
    sock.sendall(request)
    data = _receive(sock)
    while b"\r\n\r\n" not in data:
        data += _receive(sock)
    head, _, rest = data.partition(b"\r\n\r\n")
    size = int(_LENGTH.search(head).group(1))
    while len(rest) < size:
        rest += _receive(sock)
    return rest


# Times, in a new Python process, of configure(), of the first answer, and of configure() again.
CONFIGURE_CODE = """
    import json, time
    from js_host.conf import settings
    t0 = time.perf_counter()
    settings.configure(SOURCE_ROOT={root!r}, VERBOSITY=0, **{extra!r})
    t1 = time.perf_counter()
    from js_host.function import Function
    Function("echo").call(text="x")
    t2 = time.perf_counter()
    settings.configure(SOURCE_ROOT={root!r}, VERBOSITY=0, **{extra!r})
    t3 = time.perf_counter()
    print(json.dumps({{"configure": t1 - t0, "first_answer": t2 - t0, "reconfigure": t3 - t2}}))
"""

STOP_MANAGER_CODE = """
    from js_host.conf import settings
    from js_host.manager import JSHostManager
    settings.configure(SOURCE_ROOT={root!r}, VERBOSITY=0, BIN_PATH={bin!r}, CONNECT_ONCE_CONFIGURED=False)
    manager = JSHostManager()
    if manager.is_running():
        manager.stop()
    print("{{}}")
"""


def configure_runs(impl: str, workdir: Path, logdir: Path, count: int) -> list[dict[str, float]]:
    """``count`` new Python processes, one after the other, each configure()-ing against
    a running ``impl`` host: the first reads the config with node, the others find the
    host's status cached in the runtime dir."""
    workdir.mkdir()
    config = host_config(workdir, free_port())
    server = NodeServer(["node", str(BINS[impl]), str(config), "--json"], fresh_log(logdir, impl))
    env = {**NODE_ENV, "JS_HOST_RUNTIME_DIR": str(workdir / "runtime")}
    code = CONFIGURE_CODE.format(root=str(workdir), extra={"BIN_PATH": str(BINS[impl])})
    try:
        return [run_python(code, env) for _ in range(count)]
    finally:
        server.stop()


def cold_start(impl: str, workdir: Path) -> float:
    """Seconds from settings.configure(USE_MANAGER=True) to the first answer, with nothing
    running before (the manager spawns the host); both are stopped after."""
    workdir.mkdir()
    host_config(workdir, free_port(), " disconnectTimeout: 200,")
    env = {**NODE_ENV, "JS_HOST_RUNTIME_DIR": str(workdir / "runtime")}
    extra: dict[str, Any] = {"BIN_PATH": str(BINS[impl]), "USE_MANAGER": True}
    try:
        return run_python(CONFIGURE_CODE.format(root=str(workdir), extra=extra), env)["first_answer"]
    finally:
        run_python(STOP_MANAGER_CODE.format(root=str(workdir), bin=str(BINS[impl])), env)
