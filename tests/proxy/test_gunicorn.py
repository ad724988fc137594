"""The proxy as production runs it: gunicorn with gunicorn.conf.py, 2 workers, a real
host, the file cache or a real redis-server."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable

import pytest
import requests
from gunicorn.config import Config
from gunicorn.http import RequestParser

from js_host_proxy.worker import PendingUnreader
from tests.support.processes import free_port
from tests.support.proxy import Server, Upstream, call_path
from tests.support.threads import run_on_threads

pytestmark = pytest.mark.timeout(90)


def call(base: str, name: str, data: dict[str, Any], session: Any = requests) -> requests.Response:
    path, body = call_path(name, data)
    return session.post(base + path, data=body, headers={"Content-Type": "application/json"}, timeout=20)


def test_hits_misses_and_the_client_wire_protocol(start_gunicorn: Callable[..., Any], upstream: Upstream):
    base, server = start_gunicorn(upstream=upstream.url, max_body=1000)
    status = requests.get(base + "/status", timeout=5)
    assert status.status_code == 200 and status.json()["type"] == "Host"
    # The spec's test vector: {'foo': 'bar'} -> hash bc4919c6...
    assert call_path("echo", {"foo": "bar"})[0].endswith("bc4919c6adf7168088eaea06e27a5b23f0f9f9da")
    with requests.Session() as session:
        states = [call(base, "echo", {"foo": "bar"}, session).headers["X-Cache"] for _ in range(5)]
    assert states == ["MISS"] + ["HIT"] * 4
    assert upstream.calls("echo") == 1
    assert requests.post(base + "/manager/stop", json={}, timeout=5).status_code == 403
    # Oversized, with a Content-Length or chunked (a generator body): refused, not truncated.
    big = b'{"text": "' + b"x" * 2000 + b'"}'
    assert requests.post(base + "/function/echo", data=big, timeout=5).status_code == 413
    chunked = requests.post(base + "/function/echo", data=iter([big[:1000], big[1000:]]), timeout=5)
    assert chunked.status_code == 413
    small = requests.post(base + "/function/echo", data=iter([b'{"n": ', b"1}"]), timeout=5)
    assert (small.status_code, small.headers["X-Cache"]) == (200, "BYPASS")
    assert upstream.calls("echo") == 2
    assert "Traceback" not in server.log


def test_fifty_concurrent_cold_calls_reach_the_host_once_across_workers(
    start_gunicorn: Callable[..., Any], upstream: Upstream
):
    # A worker takes at most 25 connections at a time: the 50 calls reach both workers.
    base, server = start_gunicorn(upstream=upstream.url, threads=32, gunicorn_args="--worker-connections 25")
    answers: list[Any] = [None] * 50
    start = threading.Barrier(50)

    def run(i: int) -> None:
        start.wait()
        answers[i] = call(base, "slow", {"ms": 1000})

    run_on_threads(run, 50, timeout=30)
    assert [a.status_code for a in answers] == [200] * 50
    assert sorted(a.headers["X-Cache"] for a in answers) == ["HIT"] * 49 + ["MISS"]
    assert upstream.calls("slow") == 1
    # Both workers answered some (the one that lost the race waited on the lock file).
    pids = {line.split("[")[2].split("]")[0] for line in server.log.splitlines() if ":slow:" in line}
    assert len(pids) == 2
    assert "another process called the host" in server.log


def test_two_proxies_share_a_redis_cache(
    start_gunicorn: Callable[..., Any], upstream: Upstream, redis_server: tuple[str, Server]
):
    url, _ = redis_server
    first, _ = start_gunicorn(upstream=upstream.url, cache=url, namespace="v7")
    second, _ = start_gunicorn(upstream=upstream.url, cache=url, namespace="v7")
    assert call(first, "echo", {"x": 1}).headers["X-Cache"] == "MISS"
    assert call(second, "echo", {"x": 1}).headers["X-Cache"] == "HIT"
    assert upstream.calls("echo") == 1


def test_redis_down_under_gunicorn_serves_uncached(
    start_gunicorn: Callable[..., Any], upstream: Upstream, redis_server: tuple[str, Server]
):
    url, redis = redis_server
    base, server = start_gunicorn(upstream=upstream.url, cache=url)
    redis.stop()
    answers = [call(base, "echo", {}) for _ in range(3)]
    assert [(a.status_code, a.headers["X-Cache"]) for a in answers] == [(200, "MISS")] * 3
    assert upstream.calls("echo") == 3
    assert "Redis cache" in server.log and "serving uncached" in server.log


def test_upstream_down_and_stale_under_gunicorn(start_gunicorn: Callable[..., Any], upstream: Upstream):
    dead = f"http://127.0.0.1:{free_port()}"
    base, _ = start_gunicorn(upstream=f"{dead},{upstream.url}", ttl=1, workers=1)
    assert call(base, "echo", {}).status_code == 200
    upstream.stop()
    time.sleep(1.2)
    stale = call(base, "echo", {})
    assert (stale.status_code, stale.headers["X-Cache"]) == (200, "STALE")
    down = call(base, "echo", {"new": 1})
    assert down.status_code == 502
    assert dead in down.text and upstream.url in down.text


def test_the_console_script_serves_and_purges(
    start_gunicorn: Callable[..., Any], upstream: Upstream, tmp_path
):
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "js_host_proxy",
        "serve",
        "--bind",
        f"127.0.0.1:{port}",
        "--upstream",
        upstream.url,
    ]
    # JS_HOST_PROXY_BIND is set to another port: --bind wins.
    base, _ = start_gunicorn(cmd=cmd, port=port)
    assert call(base, "echo", {}).headers["X-Cache"] == "MISS"
    assert call(base, "echo", {}).headers["X-Cache"] == "HIT"
    purged = subprocess.run(
        [sys.executable, "-m", "js_host_proxy", "purge", "--all", "--cache", f"file://{tmp_path}/cache"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "removed 1 entries" in purged.stdout
    assert call(base, "echo", {}).headers["X-Cache"] == "MISS"
    assert upstream.calls("echo") == 2


def test_a_large_body_is_read_in_linear_work(start_gunicorn: Callable[..., Any], upstream: Upstream):
    # DeadlineThreadWorker hands gunicorn the bytes it read ahead a chunk at a time: whole,
    # each of gunicorn's 8 KiB body reads copied all the rest (an 8 MB body: seconds of CPU).
    body = b'{"text": "' + b"x" * (8 << 20) + b'"}'
    head = b"POST /function/echo?hash=bad HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body)
    a, b = socket.socketpair()
    try:
        parser = RequestParser(Config(), a, ("127.0.0.1", 1))
        unreader = parser.unreader = PendingUnreader(a)
        largest = 0
        unread = unreader.unread

        def counted(data: bytes) -> None:
            nonlocal largest
            largest = max(largest, len(data))
            unread(data)

        unreader.unread = counted  # type: ignore[method-assign]
        unreader.feed(head + body)
        request = next(parser)
        got = 0
        while data := request.body.read(8192):
            got += len(data)
        assert got == len(body)
        assert largest <= 8192, f"gunicorn put back {largest} bytes at once: reading is not linear"
    finally:
        a.close()
        b.close()

    base, server = start_gunicorn(upstream=upstream.url, max_body=16 << 20)
    answer = requests.post(base + "/function/echo?hash=bad", data=body, timeout=60)
    assert answer.status_code < 500, answer.text
    assert "Traceback" not in server.log
