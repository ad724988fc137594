"""stale-while-revalidate (RFC 5861 §3): an entry expired less than its window ago is
served at once (``X-Cache: STALE``) while exactly one background call refreshes it,
in-process and under gunicorn (2 workers on the file cache; two proxies on one
Redis). A refresh that fails leaves the entry to be served; past the window a call
is a plain miss.

The host (tests/fixtures/proxy/swr.config.js) counts its calls, answers with the
count (so a refreshed entry can be told from the old one) and can hold answers back
behind a gate: every stale answer arriving while the refresh is held there shows
that none waited for it.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from js_host.exceptions import ConfigError
from js_host_proxy.config import ProxyConfig
from js_host_proxy.policy import decide
from js_host_proxy.revalidate import THREAD_NAME, Revalidator
from tests.support.proxy import FIXTURES, Proxy, Server, Upstream, call_path, in_process_proxies
from tests.support.threads import run_on_threads
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

STALE_STATUS = re.compile(r"js-host-proxy; hit; ttl=-\d+; detail=stale-while-revalidate")


@pytest.fixture
def swr_upstream(start_upstream: Callable[..., Upstream]) -> Upstream:
    return start_upstream("bundled", FIXTURES / "swr.config.js")


@pytest.fixture
def swr_proxy(swr_upstream: Upstream) -> Iterator[Callable[..., Proxy]]:
    with in_process_proxies(swr_upstream.url) as make:
        yield make


def control(upstream: Upstream, **settings: Any) -> dict[str, Any]:
    """Close or open the host's gate (``gate='closed'|'open'``), make its functions fail or not
    (``fail=True|False``); returns its state (``held``: answers held at the gate)."""
    return requests.post(f"{upstream.url}/function/control", json=settings, timeout=5).json()


def body(answer: Any) -> Any:
    return json.loads(answer.text)


def first_stale(call: Callable[[], Any]) -> Any:
    """Call until the entry has expired: the first STALE answer (which queued the refresh)."""
    return wait_for(lambda: (a := call()).headers["X-Cache"] == "STALE" and a, what="a STALE answer")


def concurrently(count: int, call: Callable[[int], Any]) -> list[Any]:
    answers: list[Any] = [None] * count
    start = threading.Barrier(count)

    def run(i: int) -> None:
        start.wait()
        answers[i] = call(i)

    run_on_threads(run, count, timeout=60)
    return answers


# -- in-process -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, settings",
    [("render", {}), ("plain", {"ttl": 1, "stale_while_revalidate": 600})],
    ids=["the host's stale-while-revalidate", "the proxy's default"],
)
def test_fifty_stale_callers_are_answered_at_once_and_one_call_refreshes_the_entry(
    swr_proxy: Callable[..., Proxy], swr_upstream: Upstream, name: str, settings: dict[str, Any]
):
    proxy = swr_proxy(**settings)
    first = proxy.call(name, {"k": 1})
    assert (first.headers["X-Cache"], body(first)) == ("MISS", {"echo": {"k": 1}, "call": 1})
    control(swr_upstream, gate="closed")  # the refresh will be held at the host
    stale = first_stale(lambda: proxy.call(name, {"k": 1}))
    answers = [stale, *concurrently(50, lambda i: proxy.call(name, {"k": 1}))]
    # Every one answered while the refresh is held at the host: none waited for it.
    assert [a.headers["X-Cache"] for a in answers] == ["STALE"] * 51
    assert all(body(a) == {"echo": {"k": 1}, "call": 1} for a in answers)
    assert all(int(a.headers["Age"]) >= 1 for a in answers)  # expired after max-age=1
    assert all(STALE_STATUS.fullmatch(a.headers["Cache-Status"]) for a in answers)
    wait_for(lambda: control(swr_upstream)["held"] == 1)
    control(swr_upstream, gate="open")
    fresh = wait_for(lambda: (a := proxy.call(name, {"k": 1})).headers["X-Cache"] == "HIT" and a)
    assert body(fresh) == {"echo": {"k": 1}, "call": 2}
    assert swr_upstream.calls(name) == 2  # the first call and one refresh
    # At most two refresh threads, whatever the number of stale answers.
    assert len([t for t in threading.enumerate() if t.name == THREAD_NAME]) <= 2


@pytest.mark.parametrize("cache", ["memory", "file"])
def test_a_failing_refresh_keeps_the_stale_entry_served(
    swr_proxy: Callable[..., Proxy], swr_upstream: Upstream, tmp_path: Path, cache: str
):
    url = "memory://" if cache == "memory" else f"file://{tmp_path}/cache"
    proxy = swr_proxy(cache_url=url)
    assert proxy.call("render", {"k": 2}).headers["X-Cache"] == "MISS"
    control(swr_upstream, fail=True)
    first_stale(lambda: proxy.call("render", {"k": 2}))
    wait_for(lambda: swr_upstream.calls("render") >= 2)  # the refresh reached the host: a 500
    for _ in range(3):  # the entry is still there, and still served
        again = proxy.call("render", {"k": 2})
        assert (again.headers["X-Cache"], body(again)) == ("STALE", {"echo": {"k": 2}, "call": 1})
    control(swr_upstream, fail=False)
    fresh = wait_for(lambda: (a := proxy.call("render", {"k": 2})).headers["X-Cache"] == "HIT" and a)
    assert body(fresh)["call"] == swr_upstream.calls("render") > 2


def test_a_refresh_with_the_host_down_keeps_the_stale_entry_served(
    swr_proxy: Callable[..., Proxy], swr_upstream: Upstream, caplog: pytest.LogCaptureFixture
):
    proxy = swr_proxy()
    assert proxy.call("render", {"k": 3}).headers["X-Cache"] == "MISS"
    swr_upstream.stop()
    with caplog.at_level("INFO", logger="js_host_proxy"):
        first_stale(lambda: proxy.call("render", {"k": 3}))
        wait_for(lambda: "got 502, not stored" in caplog.text)
    again = proxy.call("render", {"k": 3})
    assert (again.status_code, again.headers["X-Cache"]) == (200, "STALE")
    assert body(again) == {"echo": {"k": 3}, "call": 1}


@pytest.mark.parametrize(
    "name, settings, wait",
    [("brief", {}, 2.2), ("plain", {"ttl": 0.3, "stale_while_revalidate": 0.3}, 0.8)],
    ids=["the host's window (1 s)", "the proxy's default window (0.3 s)"],
)
def test_past_the_window_a_call_is_a_plain_miss(
    swr_proxy: Callable[..., Proxy], swr_upstream: Upstream, name: str, settings: dict[str, Any], wait: float
):
    proxy = swr_proxy(**settings)
    assert proxy.call(name, {}).headers["X-Cache"] == "MISS"
    time.sleep(wait)  # past freshness and window, with no call in between (one would refresh it)
    late = proxy.call(name, {})
    assert (late.headers["X-Cache"], body(late)) == ("MISS", {"echo": {}, "call": 2})
    assert late.headers["Cache-Status"].startswith("js-host-proxy; fwd=miss; fwd-status=200; stored")


def test_must_revalidate_is_never_served_while_refreshed(
    swr_proxy: Callable[..., Proxy], swr_upstream: Upstream
):
    proxy = swr_proxy(stale_while_revalidate=600)
    assert proxy.call("strict", {}).headers["X-Cache"] == "MISS"  # must-revalidate, swr=600
    time.sleep(1.2)  # expired (max-age=1)
    late = proxy.call("strict", {})
    assert (late.headers["X-Cache"], body(late)) == ("MISS", {"echo": {}, "call": 2})


def test_the_window_is_the_storage_decisions():
    def window(cache_control: str, **kwargs: Any) -> float:
        headers = {"Cache-Control": cache_control} if cache_control else {}
        return decide(200, headers, framed=True, default_ttl=300, **kwargs).revalidate_for

    assert window("max-age=60, stale-while-revalidate=30") == 30
    assert window("max-age=60, stale-while-revalidate=30", stale_while_revalidate=5) == 30  # the host's wins
    assert window("max-age=60, stale-while-revalidate=0", stale_while_revalidate=5) == 0  # off, said the host
    assert window("max-age=60", stale_while_revalidate=5) == 5  # the proxy's default
    assert window("", stale_while_revalidate=5) == 5
    assert (
        window("max-age=60, stale-while-revalidate=soon", stale_while_revalidate=5) == 5
    )  # invalid: ignored
    assert window("max-age=60, stale-while-revalidate=999", stale_ttl=100) == 100  # kept no longer
    assert window("max-age=60") == 0
    # RFC 9111 §4.2.4: never served stale, so never while refreshed either.
    for forbidding in ("must-revalidate", "proxy-revalidate", "s-maxage=60"):
        assert window(f"max-age=60, {forbidding}, stale-while-revalidate=30") == 0, forbidding


def test_the_proxys_default_window_is_a_setting():
    assert ProxyConfig.from_env({}).stale_while_revalidate == 0  # off unless the answer says so
    assert ProxyConfig.from_env({"JS_HOST_PROXY_STALE_WHILE_REVALIDATE": "30"}).stale_while_revalidate == 30
    for bad in ("-1", "soon"):
        with pytest.raises(ConfigError, match="JS_HOST_PROXY_STALE_WHILE_REVALIDATE"):
            ProxyConfig.from_env({"JS_HOST_PROXY_STALE_WHILE_REVALIDATE": bad})


# -- the revalidator's threads ------------------------------------------------------------


def test_the_revalidator_runs_one_refresh_per_key_on_a_few_threads_and_drops_the_rest_at_close():
    revalidator = Revalidator(threads=2, max_pending=4)
    assert not [t for t in threading.enumerate() if t.name == THREAD_NAME]  # none before the first
    release = threading.Event()
    ran: list[str] = []

    def job(key: str) -> Callable[[], None]:
        def run() -> None:
            ran.append(key)
            release.wait(30)

        return run

    assert [revalidator.submit(k, job(k)) for k in ("a", "a", "b", "c", "d", "e")] == [
        True,
        False,  # "a" is already queued or running
        True,
        True,
        True,
        False,  # four pending: the bound
    ]
    wait_for(lambda: sorted(ran) == ["a", "b"])  # two threads, each on one refresh
    assert revalidator.pending("c") and revalidator.pending("d")
    threads = [t for t in threading.enumerate() if t.name == THREAD_NAME]
    assert len(threads) == 2
    closing = threading.Thread(target=revalidator.close, kwargs={"timeout": 30})
    closing.start()
    wait_for(lambda: not revalidator.pending("c"))  # the queued ones are dropped at once
    release.set()  # the running ones finish
    closing.join(30)
    assert not closing.is_alive() and not any(t.is_alive() for t in threads)
    assert sorted(ran) == ["a", "b"]  # "c" and "d" never ran
    assert not revalidator.submit("f", job("f"))  # closed: nothing starts any more


def test_a_forked_child_runs_its_own_refreshes():
    revalidator = Revalidator(threads=1)
    done = threading.Event()
    assert revalidator.submit("parent", done.set)
    assert done.wait(10)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread is not here; a new one must run this
        try:
            ok = threading.Event()
            queued = revalidator.submit("child", ok.set)
            os.write(write, b"1" if queued and ok.wait(10) else b"0")
        finally:
            os._exit(0)
    os.close(write)
    try:
        assert os.read(read, 1) == b"1"
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    revalidator.close()


# -- under gunicorn -----------------------------------------------------------------------


def call(base: str, name: str, data: dict[str, Any]) -> requests.Response:
    path, payload = call_path(name, data)
    return requests.post(base + path, data=payload, headers={"Content-Type": "application/json"}, timeout=30)


def refreshing_pids(*servers: Server) -> set[str]:
    """The worker pids that logged the start of a refresh of ``render``."""
    lines = [line for s in servers for line in s.log.splitlines()]
    return {line.split("[")[2].split("]")[0] for line in lines if "refreshing" in line and "render" in line}


def test_under_gunicorn_fifty_stale_callers_make_one_refresh_across_workers(
    start_gunicorn: Callable[..., Any], swr_upstream: Upstream
):
    # A worker takes at most 25 connections at a time: the 50 calls reach both workers.
    base, server = start_gunicorn(
        upstream=swr_upstream.url, threads=32, gunicorn_args="--worker-connections 25"
    )
    assert call(base, "render", {"k": 4}).headers["X-Cache"] == "MISS"
    control(swr_upstream, gate="closed")
    stale = first_stale(lambda: call(base, "render", {"k": 4}))
    answers = [stale, *concurrently(50, lambda i: call(base, "render", {"k": 4}))]
    assert [a.headers["X-Cache"] for a in answers] == ["STALE"] * 51
    assert all(a.json() == {"echo": {"k": 4}, "call": 1} for a in answers)
    assert all(STALE_STATUS.fullmatch(a.headers["Cache-Status"]) for a in answers)
    # Both workers started a refresh; one call is held at the host, the other worker waits for it.
    wait_for(lambda: len(refreshing_pids(server)) == 2)
    wait_for(lambda: control(swr_upstream)["held"] == 1)
    control(swr_upstream, gate="open")
    fresh = wait_for(lambda: (a := call(base, "render", {"k": 4})).headers["X-Cache"] == "HIT" and a)
    assert fresh.json() == {"echo": {"k": 4}, "call": 2}
    wait_for(lambda: "another process called the host" in server.log)
    assert swr_upstream.calls("render") == 2
    assert "Traceback" not in server.log


def test_two_proxies_on_one_redis_make_one_refresh(
    start_gunicorn: Callable[..., Any], swr_upstream: Upstream, redis_server: tuple[str, Server]
):
    url, _ = redis_server
    first, first_server = start_gunicorn(upstream=swr_upstream.url, cache=url, threads=32)
    second, second_server = start_gunicorn(upstream=swr_upstream.url, cache=url, threads=32)
    assert call(first, "render", {"k": 5}).headers["X-Cache"] == "MISS"
    control(swr_upstream, gate="closed")
    first_stale(lambda: call(first, "render", {"k": 5}))
    bases = (first, second)
    answers = concurrently(50, lambda i: call(bases[i % 2], "render", {"k": 5}))
    assert [a.headers["X-Cache"] for a in answers] == ["STALE"] * 50
    assert all(a.json() == {"echo": {"k": 5}, "call": 1} for a in answers)
    # The second proxy started a refresh too, and waits on the first one's lock in Redis.
    wait_for(lambda: refreshing_pids(second_server))
    wait_for(lambda: control(swr_upstream)["held"] == 1)
    control(swr_upstream, gate="open")
    for base in bases:
        fresh = wait_for(lambda b=base: (a := call(b, "render", {"k": 5})).headers["X-Cache"] == "HIT" and a)
        assert fresh.json() == {"echo": {"k": 5}, "call": 2}
    assert swr_upstream.calls("render") == 2
    assert "Traceback" not in first_server.log + second_server.log


def test_a_worker_exiting_abandons_a_refresh_held_at_the_host(
    start_gunicorn: Callable[..., Any], swr_upstream: Upstream
):
    base, server = start_gunicorn(upstream=swr_upstream.url, workers=1)
    assert call(base, "render", {"k": 6}).headers["X-Cache"] == "MISS"
    control(swr_upstream, gate="closed")
    first_stale(lambda: call(base, "render", {"k": 6}))
    wait_for(lambda: control(swr_upstream)["held"] == 1)
    server.stop()  # SIGTERM: the worker exits, its refresh still held at the host
    assert server.process is not None and server.process.poll() is not None
    assert "abandoning 1 background refresh" in server.log
    control(swr_upstream, gate="open")
