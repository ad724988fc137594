"""Another local user on a host's port, played for real (uid nobody).

A host's port is free while it is down (it died, or has not started yet): the other
user listens there, records every byte she receives and answers like a host, with a
``<script>`` and a day of ``max-age``. The victim's client (blocking and asyncio) and
the caching proxy under gunicorn refuse her listener before sending anything: the call
fails with an error naming the port and her uid, the proxy answers 502 and stores
nothing, and once the real host is back on that port every call works again. A uid
listed in HOST_UIDS (JS_HOST_PROXY_UPSTREAM_UIDS for the proxy) is let through.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from js_host.conf import settings
from js_host.exceptions import JSHostError
from js_host.function import Function
from js_host.host import host
from tests.support.client import config_port, host_of, write_config
from tests.support.other_user import OTHER_USER, OtherUserProcess, other_uid, requires_root
from tests.support.processes import NodeProcess, free_port
from tests.support.proxy import CONFIGS, Upstream, call_path, in_process_proxies
from tests.support.waiting import wait_for

pytestmark = requires_root

# argv: port, recording file, ready file, code version. Binds the port as soon as it is
# free, records {"kind": "accepted"} per connection and {"kind": "data", "data"} per chunk.
SQUATTER = r"""
import json, socket, sys, threading, time
port, recording, ready, version = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
lock = threading.Lock()

def record(kind, data=b""):
    with lock, open(recording, "a") as out:
        out.write(json.dumps({"kind": kind, "data": data.decode("latin-1")}) + "\n")

listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
while True:
    try:
        listener.bind(("127.0.0.1", port))
        break
    except OSError:
        time.sleep(0.005)
listener.listen(64)
open(ready, "w").close()

def answer(head):
    if b" /status" in head.split(b"\r\n", 1)[0]:
        config = {"functions": ["echo", "hello_world"], "port": port}
        body = json.dumps({"type": "Host", "version": "0.11.7", "codeVersion": version, "config": config})
        body = body.encode()
    else:
        body = b"<script>alert('forged by another user')</script>"
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nCache-Control: max-age=86400\r\n"
        + b"JS-Host-Code-Version: " + version.encode()
        + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )

def serve(conn):
    record("accepted")
    buffer = b""
    with conn:
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            record("data", chunk)
            buffer += chunk
            while b"\r\n\r\n" in buffer:
                head, rest = buffer.split(b"\r\n\r\n", 1)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                if len(rest) < length:
                    break
                buffer = rest[length:]
                conn.sendall(answer(head))

while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


class Squatter:
    """The other user's server, waiting for ``port``: ``bound()`` once it listens there."""

    def __init__(self, shared: Path, port: int, version: str = "v") -> None:
        self.recording = shared / "recording.jsonl"
        self.ready = shared / "squatter.ready"
        args = (str(port), str(self.recording), str(self.ready), version)
        self.process = OtherUserProcess(SQUATTER, *args, log=shared / "squatter.log")
        self.process.spawn()

    def bound(self) -> None:
        self.process.wait_until(self.ready.exists, timeout=20)

    def received(self) -> list[dict[str, str]]:
        """What she received: one entry per connection accepted and per chunk of bytes."""
        if not self.recording.exists():
            return []
        return [json.loads(line) for line in self.recording.read_text().splitlines()]

    def data(self) -> str:
        return "".join(entry["data"] for entry in self.received() if entry["kind"] == "data")

    def stop(self) -> None:
        self.process.stop(signal.SIGKILL)


@pytest.fixture
def impl() -> str:
    return "bundled"


def assert_refused(message: str, port: int, setting: str = "HOST_UIDS") -> None:
    assert f"another local user holds 127.0.0.1:{port} (uid {other_uid()}, {OTHER_USER})" in message, message
    assert "stop that process" in message and setting in message, message
    assert "forged" not in message, message


def restart_on(start: Callable[[], NodeProcess]) -> NodeProcess:
    """The real host started again on its port, once the squatter's socket has gone."""
    return wait_for(start, 20, retry_on=(RuntimeError,))


@pytest.mark.timeout(120)
def test_a_dead_hosts_port_held_by_another_user_gets_no_call(
    tmp_path: Path, shared: Path, start_host: Callable[..., NodeProcess], client_settings: Any
) -> None:
    port = free_port()
    config = write_config(tmp_path, port=port)
    real = start_host(config, "--port", str(port))
    client_settings(SOURCE_ROOT=str(tmp_path), VERBOSITY=0)
    assert Function("hello_world").call(name="victim") == "Hello, victim!"

    squatter = Squatter(shared, port)
    try:
        real.stop(signal.SIGKILL)  # the host dies; she takes its port at once
        squatter.bound()
        for _ in range(2):
            with pytest.raises(JSHostError) as info:
                Function("echo").call(secret="s3cr3t-data")
            assert_refused(str(info.value), port)
        with pytest.raises(JSHostError) as info:
            asyncio.run(Function("echo").call_async(secret="s3cr3t-async"))
        assert_refused(str(info.value), port)
    finally:
        squatter.stop()
    assert squatter.data() == "", squatter.received()  # not a byte, let alone a secret

    restart_on(lambda: start_host(config, "--port", str(port)))
    assert Function("hello_world").call(name="again") == "Hello, again!"
    assert asyncio.run(Function("hello_world").call_async(name="async")) == "Hello, async!"


@pytest.mark.timeout(120)
def test_a_managed_host_killed_in_development(manager_env: dict, shared: Path) -> None:
    settings.configure(VERBOSITY=0, **manager_env["settings"])
    pid = host_of(int(Function("pid").call()))
    port = int(host.get_url().rsplit(":", 1)[1])
    assert port != config_port(manager_env["config"])  # the host's port, not the manager's

    squatter = Squatter(shared, port)
    try:
        os.kill(pid, signal.SIGKILL)  # the host crashes (a function's bug, OOM)
        squatter.bound()
        with pytest.raises(JSHostError) as info:
            Function("echo").call(secret="s3cr3t-data")
        assert_refused(str(info.value), port)
    finally:
        squatter.stop()
    assert squatter.data() == "", squatter.received()


def proxy_call(base: str, data: dict[str, Any]) -> requests.Response:
    path, body = call_path("echo", data)
    return requests.post(base + path, data=body, headers={"Content-Type": "application/json"}, timeout=20)


def real_answer(data: dict[str, Any]) -> str:
    return json.dumps({"echo": data}, separators=(",", ":"))


@pytest.mark.timeout(180)
def test_the_proxy_calls_stores_and_serves_nothing_of_hers(
    shared: Path, start_host: Callable[..., NodeProcess], start_gunicorn: Callable[..., Any]
) -> None:
    port = free_port()
    upstream = Upstream(start_host(CONFIGS["bundled"], "--port", str(port)), "bundled")
    version = upstream.version
    base, _ = start_gunicorn(UPSTREAM=upstream.url, RETRY_DOWN_AFTER="0.1")
    assert proxy_call(base, {"before": 1}).headers["X-Cache"] == "MISS"

    squatter = Squatter(shared, port, version)  # she read the real version from /status
    fresh = {"during": 1}
    try:
        upstream.host.stop(signal.SIGKILL)
        squatter.bound()
        for _ in range(6):  # both workers, each more than once
            answer = proxy_call(base, fresh)
            assert answer.status_code == 502, (answer.status_code, answer.text)
            assert f"http://127.0.0.1:{port}" in answer.text, answer.text
            assert_refused(answer.text, port, "JS_HOST_PROXY_UPSTREAM_UIDS")
        kept = proxy_call(base, {"before": 1})  # stored before: the real answer, or a 502
        assert kept.text == real_answer({"before": 1}) or kept.status_code == 502, kept.text
    finally:
        squatter.stop()
    assert squatter.data() == "", squatter.received()

    back = Upstream(restart_on(lambda: start_host(CONFIGS["bundled"], "--port", str(port))), "bundled")
    assert back.version == version
    first = wait_for(lambda: (r := proxy_call(base, fresh)).status_code == 200 and r, 10)
    assert first.headers["X-Cache"] == "MISS" and first.text == real_answer(fresh)
    second = proxy_call(base, fresh)
    assert second.headers["X-Cache"] == "HIT" and second.text == real_answer(fresh)
    assert back.calls("echo", fresh) == 1


@pytest.mark.timeout(60)
def test_a_listed_uid_is_let_through(tmp_path: Path, shared: Path, client_settings: Any) -> None:
    # A host run as another service user on purpose: her listener is that host.
    port = free_port()
    squatter = Squatter(shared, port)
    try:
        squatter.bound()
        write_config(tmp_path, port=port)
        with pytest.raises(JSHostError) as info:  # connecting reads its GET /status: refused
            client_settings(SOURCE_ROOT=str(tmp_path), VERBOSITY=0)
        assert_refused(str(info.value), port)
        assert squatter.data() == ""

        client_settings(SOURCE_ROOT=str(tmp_path), VERBOSITY=0, HOST_UIDS=[other_uid()])
        assert "forged" in Function("echo").call(listed=True)
        assert '{"listed": true}' in squatter.data()

        with in_process_proxies(f"http://127.0.0.1:{port}") as make:
            assert make().call("echo", {"proxy": 1}).status_code == 502
            through = make(upstream_uids=(other_uid(),)).call("echo", {"proxy": 2})
            assert through.status_code == 200 and b"forged" in through.data
    finally:
        squatter.stop()
