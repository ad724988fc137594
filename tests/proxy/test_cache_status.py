"""RFC 9211 ``Cache-Status`` beside ``X-Cache``: one member of the proxy's own on every
answer it forwards or serves from the cache (hit, miss, collapsed, stale, bypass),
after any member the host's answer carries; none on the proxy's own answers. Hits and
stale answers carry ``Age`` (RFC 9111 §5.1)."""

from __future__ import annotations

import re
import threading
import time
from typing import Any, Callable

import pytest
import requests

from js_host.exceptions import ConfigError
from js_host_proxy.config import ProxyConfig
from tests.support.processes import free_port
from tests.support.proxy import FIXTURES, Proxy, Upstream, call_path, in_process_proxies
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.threads import run_on_threads

pytestmark = pytest.mark.timeout(90)


def ttl_of(value: str, prefix: str) -> int:
    """The ttl of a Cache-Status value that is ``prefix`` then ``; ttl=N`` (and maybe a detail)."""
    match = re.fullmatch(re.escape(prefix) + r"; ttl=(-?\d+)(; detail=[a-z-]+)?", value)
    assert match, value
    return int(match.group(1))


def test_misses_hits_and_bypasses_say_what_happened(make_proxy: Callable[..., Proxy], upstream: Upstream):
    proxy = make_proxy()  # the default TTL, 300 s
    miss, hit = (proxy.call("echo", {"n": 1}) for _ in range(2))
    assert (miss.headers["X-Cache"], hit.headers["X-Cache"]) == ("MISS", "HIT")
    assert miss.headers["Cache-Status"] == "js-host-proxy; fwd=miss; fwd-status=200; stored; ttl=300"
    assert 0 < ttl_of(hit.headers["Cache-Status"], "js-host-proxy; hit") <= 300
    assert int(hit.headers["Age"]) >= 0 and "Age" not in miss.headers
    # Not stored: a no-store answer, an error.
    counter = proxy.call("counter", {})
    assert counter.headers["Cache-Status"] == "js-host-proxy; fwd=miss; fwd-status=200"
    failed = proxy.call("fail", {})
    assert (failed.status_code, failed.headers["Cache-Status"]) == (
        500,
        "js-host-proxy; fwd=miss; fwd-status=500",
    )
    # Not cacheable: forwarded as it is.
    no_hash = proxy.client.post("/function/echo", data=b"{}", content_type="application/json")
    assert (no_hash.headers["X-Cache"], no_hash.headers["Cache-Status"]) == (
        "BYPASS",
        "js-host-proxy; fwd=bypass; fwd-status=200",
    )
    status = proxy.client.get("/status")
    assert status.headers["Cache-Status"] == "js-host-proxy; fwd=bypass; fwd-status=200"
    assert upstream.calls("echo") == 2


def test_the_proxys_own_answers_carry_none(make_proxy: Callable[..., Proxy], upstream: Upstream):
    # RFC 9211 §2: an intermediary does not add Cache-Status to answers it generates.
    proxy = make_proxy()
    path, _ = call_path("echo", {"a": 1})
    wrong_hash = proxy.client.post(path, data=b'{"b": 2}', content_type="application/json")
    manager = proxy.client.post("/manager/stop", data=b"{}")
    nowhere = proxy.client.get("/nowhere")
    assert [a.status_code for a in (wrong_hash, manager, nowhere)] == [400, 403, 404]
    assert all("Cache-Status" not in a.headers for a in (wrong_hash, manager, nowhere))
    down = make_proxy(upstreams=(f"http://127.0.0.1:{free_port()}",)).call("echo", {})
    assert down.status_code == 502 and "Cache-Status" not in down.headers


def test_waiters_given_another_requests_answer_are_collapsed(
    make_proxy: Callable[..., Proxy], upstream: Upstream
):
    proxy = make_proxy()
    answers: list[Any] = [None] * 10
    start = threading.Barrier(10)

    def run(i: int) -> None:
        start.wait()
        answers[i] = proxy.call("slow", {"ms": 500})

    run_on_threads(run, 10, timeout=30)
    statuses = sorted(a.headers["Cache-Status"] for a in answers)
    assert statuses == ["js-host-proxy; fwd=miss; collapsed"] * 9 + [
        "js-host-proxy; fwd=miss; fwd-status=200; stored; ttl=300"
    ]
    assert sorted(a.headers["X-Cache"] for a in answers) == ["HIT"] * 9 + ["MISS"]
    assert upstream.calls("slow") == 1


def test_a_stale_answer_for_a_host_that_is_down_says_so(make_proxy: Callable[..., Proxy], upstream: Upstream):
    proxy = make_proxy(ttl=1)
    assert proxy.call("echo", {}).headers["X-Cache"] == "MISS"
    upstream.stop()
    time.sleep(1.2)  # expired
    stale = proxy.call("echo", {})
    assert (stale.status_code, stale.headers["X-Cache"]) == (200, "STALE")
    # Forwarded because it was stale; no answer came back (no fwd-status); served stale.
    assert ttl_of(stale.headers["Cache-Status"], "js-host-proxy; fwd=stale") < 0
    assert stale.headers["Cache-Status"].endswith("; detail=stale-if-error")
    assert int(stale.headers["Age"]) >= 1


def test_the_name_is_a_setting_and_must_be_a_token(make_proxy: Callable[..., Proxy], upstream: Upstream):
    proxy = make_proxy(cache_name="edge-7")
    miss, hit = (proxy.call("echo", {}) for _ in range(2))
    assert miss.headers["Cache-Status"].startswith("edge-7; fwd=miss;")
    assert hit.headers["Cache-Status"].startswith("edge-7; hit; ttl=")
    assert ProxyConfig.from_env({"JS_HOST_PROXY_CACHE_NAME": "web-1.example:9010"}).cache_name == (
        "web-1.example:9010"
    )
    for bad in ("two words", "1st", 'quote"d', "semi;colon"):
        with pytest.raises(ConfigError, match="JS_HOST_PROXY_CACHE_NAME"):
            ProxyConfig.from_env({"JS_HOST_PROXY_CACHE_NAME": bad})


def test_the_hosts_own_cache_status_is_kept_first(start_upstream: Callable[..., Upstream]):
    # RFC 9211 §2: the first member is the cache nearest the origin; existing values are kept.
    upstream = start_upstream("bundled", FIXTURES / "swr.config.js")
    with in_process_proxies(upstream.url) as make:
        proxy = make()
        miss, hit = (proxy.call("chained", {}) for _ in range(2))
    assert miss.headers.getlist("Cache-Status") == [
        "OriginCache; hit; ttl=30",
        "js-host-proxy; fwd=miss; fwd-status=200; stored; ttl=600",
    ]
    origin, ours = hit.headers.getlist("Cache-Status")
    assert origin == "OriginCache; hit; ttl=30" and ours.startswith("js-host-proxy; hit; ttl=")


def test_under_gunicorn(start_gunicorn: Callable[..., Any], upstream: Upstream):
    base, _ = start_gunicorn(upstream=upstream.url, cache_name="proxy-a")
    path, body = call_path("echo", {"g": 1})
    with requests.Session() as session:
        miss, hit = (session.post(base + path, data=body, timeout=20) for _ in range(2))
    assert miss.headers["Cache-Status"] == "proxy-a; fwd=miss; fwd-status=200; stored; ttl=300"
    assert 0 < ttl_of(hit.headers["Cache-Status"], "proxy-a; hit") <= 300
    assert hit.headers["X-Cache"] == "HIT" and int(hit.headers["Age"]) >= 0


def test_a_stale_answer_for_a_host_answering_503_names_its_status(
    scripted_proxy: Callable[..., Proxy], scripted: ScriptedUpstream
):
    fresh = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=1\r\nContent-Length: 2\r\n\r\nok"
    scripted.script("/function/flaky", fresh)
    proxy = scripted_proxy()
    assert proxy.call("flaky", {}).headers["X-Cache"] == "MISS"
    scripted.script("/function/flaky", b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
    time.sleep(1.2)  # expired
    stale = proxy.call("flaky", {})
    assert (stale.status_code, stale.data, stale.headers["X-Cache"]) == (200, b"ok", "STALE")
    assert ttl_of(stale.headers["Cache-Status"], "js-host-proxy; fwd=stale; fwd-status=503") < 0
    assert scripted.requests("/function/flaky") == 2
