"""Slow and stuck clients against the proxy (real gunicorn, 2 workers) and the Node host.

An attacker's sockets trickle a request a byte a second, or pipeline requests and never read
the answers; meanwhile good clients must get their answers, the attacker's sockets are closed
at the deadlines, the host's memory stays bounded. Also: ``js-host-proxy serve`` started in a
folder holding someone else's ``gunicorn.conf.py`` does not run it.

Loopback only, bounded in time by pytest-timeout and generous client timeouts.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.support.proc import rss_kb
from tests.support.processes import ROOT, NodeProcess, free_port
from tests.support.proxy import Server, Upstream, call_path
from tests.support.slow_clients import address, good_calls

FIXTURES = ROOT / "tests" / "fixtures" / "system"


class Tricklers:
    """Sockets that each send ``prefix`` at once, then their payload one byte a second, in one
    thread; a socket the server closes (or answers) is recorded with what it answered."""

    def __init__(self, base: str, payloads: list[bytes], prefix: bytes = b"") -> None:
        self.socks = []
        for _ in payloads:
            sock = socket.create_connection(address(base), timeout=5)
            sock.sendall(prefix)
            sock.setblocking(False)
            self.socks.append(sock)
        self.payloads = payloads
        self.sent = [0] * len(payloads)
        self.answers: dict[int, bytes] = {}  # index -> what the server sent before it closed
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def open_count(self) -> int:
        return len(self.socks) - len(self.answers)

    def _run(self) -> None:
        while not self.stopped.is_set() and self.open_count:
            for i, sock in enumerate(self.socks):
                if i in self.answers:
                    continue
                self._read(i, sock)
                if i in self.answers or self.sent[i] >= len(self.payloads[i]):
                    continue
                try:
                    sock.send(self.payloads[i][self.sent[i] : self.sent[i] + 1])
                    self.sent[i] += 1
                except OSError:
                    self.answers.setdefault(i, b"")
            self.stopped.wait(1.0)

    def _read(self, i: int, sock: socket.socket) -> None:
        got = b""
        while select.select([sock], [], [], 0)[0]:
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                self.answers[i] = got
                return
            got += chunk
        if got:  # answered but not closed (yet): keep reading
            self.answers[i] = got

    def wait_all_closed(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.open_count and time.monotonic() < deadline:
            time.sleep(0.2)

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        for sock in self.socks:
            sock.close()


# -- the proxy under gunicorn -------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_slow_heads_and_bodies_hold_no_thread_and_are_cut_at_the_deadline(
    start_gunicorn: Callable[..., tuple[str, Server]], upstream: Upstream
) -> None:
    # 2 workers x 8 threads: 56 slow sockets would hold every thread of gunicorn's gthread.
    base, server = start_gunicorn(upstream=upstream.url, header_timeout=10, body_timeout=10)
    path, body = call_path("echo", {"slow": True})
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    slow_heads = [(head + f"X-Pad: {'a' * 100}\r\n\r\n").encode()] * 40
    tricklers = Tricklers(base, slow_heads)
    # The bodies' heads arrive at once; then a byte a second.
    body_socks = Tricklers(base, [body] * 16, prefix=(head + f"Content-Length: {len(body)}\r\n\r\n").encode())
    try:
        time.sleep(1.5)  # every slow socket accepted and sending
        results = good_calls(base, 50)
        still_open = tricklers.open_count + body_socks.open_count
        assert len(results) == 50
        assert all(isinstance(r, tuple) and r[0] == 200 and "good" in r[1]["echo"] for r in results), results
        # The good calls ran while the slow sockets were held (the deadline is 10 s away).
        assert still_open == 56
        tricklers.wait_all_closed(20)
        body_socks.wait_all_closed(20)
        assert tricklers.open_count == 0 and body_socks.open_count == 0
        answers = list(tricklers.answers.values()) + list(body_socks.answers.values())
        assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), answers[:3]
        assert b"request head did not arrive within 10 s" in tricklers.answers[0]
        assert b"request body did not arrive within 10 s" in body_socks.answers[0]
    finally:
        tricklers.close()
        body_socks.close()
    assert "Traceback" not in server.log


@pytest.mark.timeout(60)
def test_pipelined_chunked_and_expect_continue_requests_are_answered(
    start_gunicorn: Callable[..., tuple[str, Server]], upstream: Upstream
) -> None:
    base, server = start_gunicorn(upstream=upstream.url, max_body=1000)
    first, body1 = call_path("echo", {"n": 1})
    second, body2 = call_path("echo", {"n": 2})
    with socket.create_connection(address(base), timeout=10) as sock:
        two = b"".join(
            f"POST {p} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(b)}\r\n\r\n".encode() + b
            for p, b in ((first, body1), (second, body2))
        )
        sock.sendall(two[:-3])  # the second one's end comes later
        time.sleep(0.3)
        sock.sendall(two[-3:])
        answers = read_responses(sock, 2)
    assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 2
    assert answers[0].endswith(b'{"echo":{"n":1}}') and answers[1].endswith(b'{"echo":{"n":2}}')

    chunked = requests.post(base + first, data=iter([body1[:5], body1[5:]]), timeout=5)
    assert (chunked.status_code, chunked.json()) == (200, {"echo": {"n": 1}})
    big = b'{"text": "' + b"x" * 2000 + b'"}'
    assert (
        requests.post(base + "/function/echo", data=iter([big[:900], big[900:]]), timeout=5).status_code
        == 413
    )

    with socket.create_connection(address(base), timeout=10) as sock:
        sock.sendall(
            f"POST {second} HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
            f"Content-Length: {len(body2)}\r\n\r\n".encode()
        )
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body2)
        (answer,) = read_responses(sock, 1)
    assert answer.startswith(b"HTTP/1.1 200 ") and b"100 Continue" not in answer
    assert "Traceback" not in server.log


def read_responses(sock: socket.socket, count: int) -> list[bytes]:
    """``count`` responses with a Content-Length, read from ``sock``."""
    data = b""
    answers = []
    while len(answers) < count:
        head_end = data.find(b"\r\n\r\n")
        if head_end >= 0:
            head = data[:head_end].decode("latin-1").lower()
            length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
            end = head_end + 4 + length
            if len(data) >= end:
                answers.append(data[:end])
                data = data[end:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"closed after {answers}, {data!r}"
        data += chunk
    return answers


# -- js-host-proxy serve ------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_serve_does_not_load_a_gunicorn_conf_from_the_current_folder(
    tmp_path: Path, upstream: Upstream
) -> None:
    hostile = tmp_path / "planted"
    hostile.mkdir()
    marker = tmp_path / "the-planted-code-ran"
    planted = f"open({str(marker)!r}, 'w').write('ran')\nbind = ['127.0.0.1:1']\n"
    (hostile / "gunicorn.conf.py").write_text(planted)
    # Also a module the proxy imports, planted where gunicorn would put the folder on sys.path.
    (hostile / "werkzeug.py").write_text(planted)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JS_HOST_PROXY_", "GUNICORN"))}
    env.update(PYTHONPATH=str(ROOT), JS_HOST_PROXY_WORKERS="1", JS_HOST_PROXY_CACHE="memory://")
    # -P: not even Python itself puts the current folder first (the console script does not).
    cmd = [sys.executable, "-P", "-m", "js_host_proxy", "serve", "--upstream", upstream.url]
    server = Server([*cmd, "--bind", f"127.0.0.1:{port}"], log=tmp_path / "serve.log", env=env, cwd=hostile)
    try:
        server.start(port, ready=lambda: "Booting worker" in server.log)
        status = requests.get(f"http://127.0.0.1:{port}/status", timeout=5)
        assert status.status_code == 200 and status.json()["type"] == "Host"
    finally:
        server.stop()
    assert not marker.exists(), server.log
    # The packaged gunicorn settings ran (their on_starting hook logs this line).
    assert f"js-host-proxy: upstream {upstream.url}" in server.log


def test_serve_names_the_missing_config(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    missing = tmp_path / "nowhere.conf.py"
    cmd = [sys.executable, "-P", "-m", "js_host_proxy", "serve", "--gunicorn-conf", str(missing)]
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and str(missing) in done.stderr


# -- the Node host --------------------------------------------------------------------------------

HOST_CONFIG = FIXTURES / "slow_clients.config.js"


@pytest.mark.timeout(90)
def test_pipelining_clients_that_never_read_leave_the_host_bounded(
    start_host: Callable[..., NodeProcess],
) -> None:
    host = start_host(HOST_CONFIG)
    before = rss_kb(host.pid)
    body = b'{"text": "' + b"x" * 1000 + b'"}'
    request = (
        b"POST /function/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    batch = request * 200
    socks = [socket.create_connection(address(host.url), timeout=5) for _ in range(40)]
    stop = threading.Event()
    sent = [0]
    closed: list[socket.socket] = []

    def flood(sock: socket.socket) -> None:
        sock.settimeout(0.5)
        while not stop.is_set():
            try:
                sock.sendall(batch)
                sent[0] += 1
            except TimeoutError:
                continue  # the host stopped reading: what it should do
            except OSError:
                closed.append(sock)  # by the host
                return

    threads = [threading.Thread(target=flood, args=(s,), daemon=True) for s in socks]
    for t in threads:
        t.start()
    try:
        peak = 0
        for _ in range(16):  # 8 s of flooding
            time.sleep(0.5)
            peak = max(peak, rss_kb(host.pid))
        good = requests.post(host.url + "/function/echo", json={"good": 1}, timeout=2)
        peak = max(peak, rss_kb(host.pid))
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        for sock in socks:
            sock.close()
    assert good.status_code == 200 and good.json() == {"echo": {"good": 1}}
    assert sent[0] > 0
    assert peak < 300 * 1024, (before, peak)
    # Each flood was cut off (maxPipelinedRequests) rather than buffered.
    assert len(closed) == 40
    assert "without reading the answers (maxPipelinedRequests)" in host.log


@pytest.mark.timeout(60)
def test_host_cuts_slow_request_heads_at_its_deadline(start_host: Callable[..., NodeProcess]) -> None:
    host = start_host(HOST_CONFIG)  # headersTimeout: 3000
    head = b"POST /function/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 100 + b"\r\n\r\n"
    tricklers = Tricklers(host.url, [head] * 40)
    try:
        time.sleep(1.5)
        good = requests.post(host.url + "/function/echo", json={"good": 2}, timeout=2)
        assert good.status_code == 200 and good.json() == {"echo": {"good": 2}}
        tricklers.wait_all_closed(20)
        assert tricklers.open_count == 0
        assert all(a == b"" or a.startswith(b"HTTP/1.1 408 ") for a in tricklers.answers.values())
    finally:
        tricklers.close()
