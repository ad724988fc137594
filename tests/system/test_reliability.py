"""Faults and load: processes killed mid-call, the proxy's upstream, Redis and
cache folder failing, a bounded wrk run and thousands of threaded calls.

Every test uses real processes on free ports and stops them; pytest-timeout
bounds each test (no timing assertions: a hang fails the timeout, not a clock).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from js_host.exceptions import ConnectionError, JSHostError, ProcessError  # noqa: A004
from js_host.function import Function
from js_host.host import JSHost
from tests.support.client import FUNCTIONS_JS, host_of, pid_alive
from tests.support.proc import children, connected_to, pid_listening_on, rss_kb
from tests.support.processes import NodeProcess, free_port
from tests.support.proxy import Proxy, Server, Upstream, call_path
from tests.support.raw_http import alive, request
from tests.support.waiting import wait_for


@pytest.fixture
def impl() -> str:
    """The manager tests here run the project's own manager (client_fixtures runs both)."""
    return "bundled"


def function_on(process: NodeProcess, name: str, config: Path | str = FUNCTIONS_JS) -> Function:
    return Function(name, host=JSHost(str(config), url_override=process.url), timeout=20)


# -- the host killed ----------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("impl_name", ["bundled", "npm-0.11"])
def test_host_killed_mid_call_raises_and_the_next_call_after_a_restart_works(
    impl_name: str, tmp_path: Path, start_host: Callable[..., NodeProcess]
) -> None:
    port = free_port()
    host = start_host(FUNCTIONS_JS, "--port", str(port), impl=impl_name)
    sleep = function_on(host, "sleep")
    assert sleep.call(ms=1) == "slept"
    outcome: list[BaseException | str] = []

    def call() -> None:
        try:
            outcome.append(sleep.call(ms=15000))
        except BaseException as err:
            outcome.append(err)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.3)  # the call is in flight
    assert host.process is not None
    os.killpg(host.process.pid, signal.SIGKILL)
    caller.join(20)  # returns once the socket is closed, long before the 15 s sleep
    assert not caller.is_alive(), "the call did not return after the host was killed"
    assert len(outcome) == 1 and isinstance(outcome[0], (ConnectionError, ProcessError)), outcome
    assert "127.0.0.1" in str(outcome[0])

    # The next call (nothing listening) fails the same way, at once.
    with pytest.raises((ConnectionError, ProcessError)):
        sleep.call(ms=1)
    start_host(FUNCTIONS_JS, "--port", str(port), impl=impl_name)
    assert sleep.call(ms=1) == "slept"
    assert function_on(host, "echo").call(text="after restart") == "after restart"


def kill_managed_host() -> tuple[int, pytest.ExceptionInfo[ProcessError]]:
    """SIGKILL the configured managed host (not just the worker of its pool that answers
    ``pid``); the next call raises ProcessError."""
    pid = host_of(int(Function("pid").call()))
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not pid_alive(pid))
    with pytest.raises(ProcessError) as info:
        Function("echo").call(text="x")
    return pid, info


@pytest.mark.timeout(60)
def test_managed_host_killed_raises_process_error_and_a_new_process_gets_a_new_host(
    manager_env: dict, client_settings: Callable[..., None]
) -> None:
    client_settings(**manager_env["settings"])
    from js_host.host import host

    pid, info = kill_managed_host()
    assert host.logfile and host.logfile in str(info.value)
    # What a restarted Python process does: configure() and connect again.
    client_settings(**manager_env["settings"])
    assert Function("echo").call(text="back") == "back"
    assert host_of(int(Function("pid").call())) != pid


@pytest.mark.timeout(60)
def test_managed_host_killed_then_host_restart_works(
    manager_env: dict, client_settings: Callable[..., None]
) -> None:
    client_settings(**manager_env["settings"])
    from js_host.host import host

    kill_managed_host()
    host.restart()
    assert Function("echo").call(text="back") == "back"


@pytest.mark.timeout(60)
def test_manager_killed_the_client_starts_a_new_one(
    manager_env: dict, client_settings: Callable[..., None]
) -> None:
    client_settings(**manager_env["settings"])
    from js_host.host import host

    assert host.manager is not None
    manager_port = int(host.manager.get_url().rsplit(":", 1)[1])
    manager_pid = pid_listening_on(manager_port)
    host_port = host.get_target().port
    host_pid = host_of(int(Function("pid").call()))
    assert manager_pid and manager_pid != host_pid
    try:
        os.kill(manager_pid, signal.SIGKILL)
        assert wait_for(lambda: not pid_alive(manager_pid))
        # The host of a dead manager either keeps answering or has gone with it:
        # the call answers or raises a js_host error, never hangs.
        with contextlib.suppress(JSHostError):
            assert Function("echo").call(text="x") == "x"
        assert not host.manager.is_running()
        # Connecting again starts a new manager, which runs the host again.
        client_settings(**manager_env["settings"])
        from js_host.host import host as new_host

        assert Function("echo").call(text="again") == "again"
        assert new_host.manager is not None and new_host.manager.is_running()
        assert pid_listening_on(manager_port) not in (None, manager_pid)
    finally:
        # The dead manager's host is nobody's child any more: stop it here (unless
        # it is the one in use, which the fixture stops with the new manager).
        if pid_listening_on(host_port) == host_pid and host_pid != _current_host_pid():
            os.kill(host_pid, signal.SIGTERM)


def _current_host_pid() -> int:
    try:
        return host_of(int(Function("pid").call()))
    except JSHostError:
        return -1


# -- the proxy -------------------------------------------------------------------------------------


def _workers(server: Server) -> set[int]:
    assert server.process is not None
    return children(server.process.pid)


@pytest.mark.timeout(90)
def test_gunicorn_worker_killed_the_others_keep_serving_and_the_new_one_connects(
    upstream: Upstream, start_gunicorn: Callable[..., tuple[str, Server]]
) -> None:
    base, server = start_gunicorn(upstream=upstream.url)
    path, body = call_path("echo", {"worker": "kill"})
    assert request(base, "POST", path, body).status == 200
    workers = _workers(server)
    assert len(workers) == 2
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    # Served all along, on new connections, while the master replaces the worker.
    statuses = []
    for i in range(40):
        p, b = call_path("echo", {"worker": "kill", "i": i % 5})
        statuses.append(request(base, "POST", p, b).status)
    assert statuses == [200] * 40
    assert wait_for(lambda: len(_workers(server) - {victim}) == 2, 30), server.log[-2000:]
    (new_worker,) = _workers(server) - workers
    upstream_port = int(upstream.url.rsplit(":", 1)[1])
    batch = iter(range(10**6))

    def new_worker_served() -> bool:
        # Concurrent misses until the new worker has opened its own connection to the host.
        with ThreadPoolExecutor(16) as pool:
            answers = list(
                pool.map(
                    lambda i: (i, request(base, "POST", *call_path("echo", {"n": i}))),
                    [next(batch) for _ in range(32)],
                )
            )
        assert all(a.status == 200 and json.loads(a.body) == {"echo": {"n": i}} for i, a in answers)
        return connected_to(new_worker, upstream_port)

    assert wait_for(new_worker_served, 30), "the new worker never called the host"


@pytest.mark.timeout(60)
def test_upstream_down_gives_stale_or_502_never_a_hang(
    upstream: Upstream, make_proxy: Callable[..., Proxy]
) -> None:
    proxy = make_proxy(connect_timeout=1.0, upstream_timeout=5.0, retry_down_after=0.5)
    fresh = proxy.call("long", {"k": "fresh"})
    stale = proxy.call("short", {"k": "stale"})  # max-age=1
    assert fresh.status_code == stale.status_code == 200
    time.sleep(1.2)  # `short` is now expired
    upstream.stop()
    again = proxy.call("long", {"k": "fresh"})
    assert again.status_code == 200 and again.headers["X-Cache"] == "HIT"
    expired = proxy.call("short", {"k": "stale"})
    assert expired.status_code in (200, 502)
    if expired.status_code == 200:
        assert expired.headers["X-Cache"] == "STALE"
        assert json.loads(expired.get_data()) == {"echo": {"k": "stale"}}
    never = proxy.call("echo", {"k": "never cached"})
    assert never.status_code == 502
    assert never.get_data(as_text=True).strip()
    status = proxy.client.get("/status")
    assert status.status_code == 502 and status.get_data(as_text=True).strip()


@pytest.mark.timeout(60)
def test_upstream_too_slow_gives_504_with_a_message(
    upstream: Upstream, make_proxy: Callable[..., Proxy]
) -> None:
    proxy = make_proxy(upstream_timeout=0.5)
    reply = proxy.call("slow", {"ms": 3000})
    assert reply.status_code == 504 and reply.get_data(as_text=True).strip()
    assert proxy.call("slow", {"ms": 1}).status_code == 200


@pytest.mark.timeout(90)
def test_redis_stopped_and_restarted_under_load(
    upstream: Upstream, make_proxy: Callable[..., Proxy], redis_server: tuple[str, Server]
) -> None:
    url, redis = redis_server
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    proxy = make_proxy(cache_url=url)
    stop = threading.Event()
    results: list[tuple[int, bool, str]] = []
    lock = threading.Lock()

    def load(worker: int) -> None:
        i = 0
        while not stop.is_set():
            data = {"w": worker, "i": i % 20}
            reply = proxy.call("echo", data)
            ok = reply.status_code == 200 and json.loads(reply.get_data()) == {"echo": data}
            with lock:
                results.append((reply.status_code, ok, reply.headers.get("X-Cache", "")))
            i += 1

    threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        redis.stop()
        with lock:
            mark_down = len(results)
        time.sleep(1.5)
        with lock:
            mark_restart = len(results)
        redis.start(port)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert all(not t.is_alive() for t in threads)
    bad = [r for r in results if not r[1]]
    assert not bad, f"{len(bad)} of {len(results)} failed, e.g. {bad[:3]}"
    assert mark_restart > mark_down, "no request was answered while Redis was down"
    # While down: keys that were cached before are answered by the host again (MISS).
    down_states = {state for _, _, state in results[mark_down + 20 : mark_restart]}
    assert "MISS" in down_states and down_states <= {"MISS", "HIT"}, down_states

    # Back up: entries are stored and served again.
    def cached_again() -> bool:
        proxy.call("echo", {"after": "restart"})
        return proxy.call("echo", {"after": "restart"}).headers.get("X-Cache") == "HIT"

    assert wait_for(cached_again, 15), "the proxy did not use Redis again after it came back"


@pytest.mark.timeout(60)
def test_cache_folder_unwritable_serves_uncached_and_logs_it(
    upstream: Upstream,
    make_proxy: Callable[..., Proxy],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Root ignores permissions: make the folder a regular file instead.
    folder = tmp_path / "cache"
    proxy = make_proxy(cache_url=f"file://{folder}")
    data = {"k": "unwritable"}
    assert proxy.call("echo", data).status_code == 200
    assert proxy.call("echo", data).headers["X-Cache"] == "HIT"
    shutil.rmtree(folder)
    folder.write_text("a file where the cache folder should be")
    caplog.set_level(logging.DEBUG)
    for i in range(3):
        reply = proxy.call("echo", {"k": "new", "i": i})
        assert reply.status_code == 200, reply.get_data(as_text=True)
        assert json.loads(reply.get_data()) == {"echo": {"k": "new", "i": i}}
    again = proxy.call("echo", {"k": "new", "i": 0})
    assert again.status_code == 200 and again.headers["X-Cache"] == "MISS"
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(str(folder) in r.getMessage() for r in warnings), [r.getMessage() for r in caplog.records]


@pytest.mark.timeout(60)
def test_cache_folder_unusable_at_start_serves_uncached(
    upstream: Upstream, make_proxy: Callable[..., Proxy], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file")
    caplog.set_level(logging.WARNING)
    proxy = make_proxy(cache_url=f"file://{blocker}/cache")
    for _ in range(2):
        reply = proxy.call("echo", {"k": "start"})
        assert reply.status_code == 200 and json.loads(reply.get_data()) == {"echo": {"k": "start"}}
    assert any(str(blocker) in r.getMessage() for r in caplog.records)


# -- load ------------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_proxy_under_wrk_no_errors_and_flat_memory(
    upstream: Upstream, start_gunicorn: Callable[..., tuple[str, Server]], tmp_path: Path
) -> None:
    wrk = shutil.which("wrk")
    if wrk is None:
        pytest.skip("wrk is not installed (apt-get install wrk; scripts/install.sh should install it)")
    base, server = start_gunicorn(upstream=upstream.url)
    path, body = call_path("echo", {"load": "wrk"})
    script = tmp_path / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )

    def run(seconds: int) -> str:
        done = subprocess.run(
            [wrk, "-t2", "-c16", f"-d{seconds}s", "-s", str(script), base + path],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    run(2)  # warm up: imports, sessions, the cache entry
    workers = _workers(server)
    before = {pid: rss_kb(pid) for pid in workers}
    out = run(8)
    after = {pid: rss_kb(pid) for pid in workers if pid_alive(pid)}
    assert set(after) == workers, "a worker died under load"
    assert "Non-2xx" not in out, out
    assert "Socket errors" not in out, out
    requests_done = int(re.search(r"(\d+) requests in", out).group(1))
    assert requests_done > 100, out
    for pid in workers:
        # Generous: a leak of a few hundred bytes a request would show at this count.
        assert after[pid] < before[pid] * 1.5 + 20_000, (pid, before[pid], after[pid])


@pytest.mark.timeout(120)
def test_thousands_of_threaded_calls_every_answer_checked(
    start_host: Callable[..., NodeProcess],
) -> None:
    host = start_host(FUNCTIONS_JS)
    echo = function_on(host, "echo")
    double = function_on(host, "double")

    def one(i: int) -> None:
        text = f"call {i} " + "x" * (i % 300)
        assert echo.call(text=text) == text
        if i % 10 == 0:
            assert double.call(number=i + 1) == str(2 * (i + 1))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(4000)))
    assert alive(host.url)
