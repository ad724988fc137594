"""The proxy is a shared cache (RFC 9111): what it must not store reaches the host on
every call, no answer depends on who asks, and no answer carries a header the host
did not send. Each test counts the calls that reached the host."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import pytest
import requests
from werkzeug.test import Client

from js_host.exceptions import ConfigError
from js_host_proxy.config import ProxyConfig
from tests.support.proxy import FIXTURES, Proxy, Upstream, call_path, in_process_proxies
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.threads import run_on_threads

pytestmark = pytest.mark.timeout(60)

#: Functions of shared.config.js whose answers a shared cache must not store.
NOT_STORED = {
    "cookie": ("Set-Cookie", "session=for-one-client; HttpOnly"),
    "private_": ("Cache-Control", "private, max-age=3600"),
    "privateField": ("Cache-Control", 'max-age=3600, private="Set-Cookie"'),
    "noCache": ("Cache-Control", "no-cache, max-age=3600"),
    "noStore": ("Cache-Control", "no-store"),
    "varyCookie": ("Vary", "Cookie"),
    "varyStar": ("Vary", "*"),
    "varyOther": ("Vary", "Accept-Language"),
    "maxAgeZero": ("Cache-Control", "max-age=0"),
    "maxAgeBad": ("Cache-Control", "max-age=soon"),
    "expiresPast": ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
    "expiresZero": ("Expires", "0"),
}
#: Fields of a host's answer that are the connection's, not the answer's.
HOP_BY_HOP = {"connection", "keep-alive", "content-length", "transfer-encoding"}


@pytest.fixture
def shared_upstream(start_upstream: Callable[..., Upstream]) -> Upstream:
    return start_upstream("bundled", FIXTURES / "shared.config.js")


@pytest.fixture
def shared_proxy(shared_upstream: Upstream) -> Iterator[Callable[..., Proxy]]:
    with in_process_proxies(shared_upstream.url) as make:
        yield make


def _echoes(answer: Any, data: dict[str, Any]) -> bool:
    return answer.status_code == 200 and json.loads(answer.text) == {"echo": data}


def test_what_a_shared_cache_must_not_store_reaches_the_host_every_time(
    shared_proxy: Callable[..., Proxy], shared_upstream: Upstream
):
    proxy = shared_proxy()
    for name, (field, value) in NOT_STORED.items():
        answers = [proxy.call(name, {"n": 1}) for _ in range(2)]
        assert all(_echoes(a, {"n": 1}) for a in answers), name
        assert [a.headers["X-Cache"] for a in answers] == ["MISS", "MISS"], name
        # The client that asked gets the host's field as the host sent it.
        assert answers[0].headers[field] == value, name
        assert shared_upstream.calls(name, {"n": 1}) == 2, name


def test_a_set_cookie_answer_is_never_handed_to_waiting_requests(
    shared_proxy: Callable[..., Proxy], shared_upstream: Upstream
):
    proxy = shared_proxy()
    start = threading.Barrier(5)
    answers: list[Any] = [None] * 5

    def run(i: int) -> None:
        client = Proxy(proxy.app)
        start.wait()
        answers[i] = client.call("cookie", {"same": True})

    run_on_threads(run, 5, timeout=30)
    assert [a.headers["X-Cache"] for a in answers] == ["MISS"] * 5
    assert shared_upstream.calls("cookie") == 5


def test_must_understand_lets_a_200_be_stored_despite_no_store(
    shared_proxy: Callable[..., Proxy], shared_upstream: Upstream
):
    # RFC 9111 §5.2.2.3: a cache that understands the status code ignores no-store then.
    proxy = shared_proxy()
    states = [proxy.call("mustUnderstand", {}).headers["X-Cache"] for _ in range(2)]
    assert states == ["MISS", "HIT"]
    assert shared_upstream.calls("mustUnderstand") == 1


def test_s_maxage_wins_over_max_age(shared_proxy: Callable[..., Proxy], shared_upstream: Upstream):
    proxy = shared_proxy()
    for name in ("sMaxageShort", "sMaxageLong"):
        assert [proxy.call(name, {}).headers["X-Cache"] for _ in range(2)] == ["MISS", "HIT"]
    time.sleep(1.2)
    # s-maxage=1 has expired despite max-age=3600; s-maxage=3600 outlives max-age=1.
    assert proxy.call("sMaxageShort", {}).headers["X-Cache"] == "MISS"
    assert proxy.call("sMaxageLong", {}).headers["X-Cache"] == "HIT"
    assert (shared_upstream.calls("sMaxageShort"), shared_upstream.calls("sMaxageLong")) == (2, 1)


def test_expires_in_the_future_is_stored_as_the_host_sent_it(
    shared_proxy: Callable[..., Proxy], shared_upstream: Upstream
):
    proxy = shared_proxy(ttl=0)  # no default TTL: only Expires can make it fresh
    miss, hit = (proxy.call("expiresFuture", {}) for _ in range(2))
    assert (miss.headers["X-Cache"], hit.headers["X-Cache"]) == ("MISS", "HIT")
    assert hit.headers["Expires"] == miss.headers["Expires"]
    assert "Cache-Control" not in miss.headers and "Cache-Control" not in hit.headers
    assert shared_upstream.calls("expiresFuture") == 1


def test_answers_carry_only_the_hosts_headers(shared_proxy: Callable[..., Proxy], shared_upstream: Upstream):
    path, body = call_path("plain", {"direct": 1})
    direct = requests.post(shared_upstream.url + path, data=body, timeout=5)
    host_fields = {k.lower() for k in direct.headers} - HOP_BY_HOP
    proxy = shared_proxy()  # the default TTL (300 s) applies: it is stored
    miss, hit = (proxy.call("plain", {"n": 1}) for _ in range(2))
    assert (miss.headers["X-Cache"], hit.headers["X-Cache"]) == ("MISS", "HIT")
    fields = {k.lower() for k, _ in miss.headers.items()}
    # The proxy's: X-Cache, Cache-Status, and the request's own X-Request-Id (never a stored one).
    assert fields - {"content-length"} == host_fields | {"x-cache", "cache-status", "x-request-id"}
    assert miss.headers["X-Request-Id"] != hit.headers["X-Request-Id"]
    assert {k.lower() for k, _ in hit.headers.items()} == fields | {"age"}
    assert hit.headers["Age"] == "0"
    assert miss.headers["Cache-Status"] == "js-host-proxy; fwd=miss; fwd-status=200; stored; ttl=300"
    name, hit_param, ttl = hit.headers["Cache-Status"].split("; ")
    assert (name, hit_param) == ("js-host-proxy", "hit") and 0 < int(ttl.removeprefix("ttl=")) <= 300
    assert miss.headers["Content-Type"] == hit.headers["Content-Type"] == direct.headers["Content-Type"]
    assert hit.headers["Date"] == miss.headers["Date"]  # the host's, as stored
    assert shared_upstream.calls("plain", {"n": 1}) == 1


def test_credentials_never_reach_the_host_on_cached_calls(
    shared_proxy: Callable[..., Proxy], shared_upstream: Upstream
):
    proxy = shared_proxy()
    proxy.client = Client(proxy.app, use_cookies=False)  # send the Cookie field as given
    alice = {"Cookie": "session=alice", "Authorization": "Bearer alice-token"}
    bob = {"Cookie": "session=bob", "Authorization": "Bearer bob-token"}
    first = proxy.call("whoami", {}, headers=alice)
    assert json.loads(first.text) == {"cookie": None, "authorization": None}
    second = proxy.call("whoami", {}, headers=bob)
    assert (second.headers["X-Cache"], second.text) == ("HIT", first.text)
    assert shared_upstream.calls("whoami") == 1
    # Uncached calls (no hash) are the client's own: they keep its credentials.
    bypass = proxy.client.post("/function/whoami", data=b"{}", headers=alice)
    assert bypass.headers["X-Cache"] == "BYPASS"
    assert json.loads(bypass.text) == {"cookie": "session=alice", "authorization": "Bearer alice-token"}


def test_must_revalidate_and_s_maxage_are_never_served_stale(
    shared_proxy: Callable[..., Proxy], shared_upstream: Upstream
):
    proxy = shared_proxy()
    for name in ("mustRevalidate", "sMaxageShort", "public_"):
        assert proxy.call(name, {}).status_code == 200
    shared_upstream.stop()
    time.sleep(1.2)
    # RFC 9111 §4.2.4: the first two forbid it; public, max-age=1 may be served stale.
    assert proxy.call("mustRevalidate", {}).status_code == 502
    assert proxy.call("sMaxageShort", {}).status_code == 502
    stale = proxy.call("public_", {})
    assert (stale.status_code, stale.headers["X-Cache"]) == (200, "STALE")


def test_waiters_on_a_failed_call_call_the_host_themselves(
    make_proxy: Callable[..., Proxy], upstream: Upstream
):
    proxy = make_proxy(upstream_timeout=0.5)
    start = threading.Barrier(10)
    answers: list[Any] = [None] * 10

    def run(i: int) -> None:
        client = Proxy(proxy.app)
        start.wait()
        answers[i] = client.call("slow", {"ms": 3000})

    run_on_threads(run, 10, timeout=30)
    assert [a.status_code for a in answers] == [504] * 10
    assert [a.headers["X-Cache"] for a in answers] == ["MISS"] * 10  # none is another's answer
    assert all(upstream.url in a.text for a in answers)
    assert upstream.calls("slow") == 10


# -- framing and size: a stdlib upstream that writes exactly what is scripted ----------


def test_a_body_cut_short_of_its_content_length_is_a_502_never_stored(
    scripted_proxy: Callable[..., Proxy], scripted: ScriptedUpstream
):
    scripted.script(
        "/function/cut",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nCache-Control: max-age=3600\r\n\r\nonly ten b",
        close=True,
    )
    proxy = scripted_proxy()
    for _ in range(2):
        answer = proxy.call("cut", {})
        assert answer.status_code == 502
        assert "broke off" in answer.text and scripted.url in answer.text
    assert scripted.requests("/function/cut") == 2


def test_a_chunked_body_cut_off_is_a_502_never_stored(
    scripted_proxy: Callable[..., Proxy], scripted: ScriptedUpstream
):
    scripted.script(
        "/function/cut",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nCache-Control: max-age=3600\r\n\r\n5\r\nhel",
        close=True,
    )
    proxy = scripted_proxy()
    assert [proxy.call("cut", {}).status_code for _ in range(2)] == [502, 502]
    assert scripted.requests("/function/cut") == 2


def test_a_whole_chunked_body_is_stored(scripted_proxy: Callable[..., Proxy], scripted: ScriptedUpstream):
    scripted.script(
        "/function/chunked",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nCache-Control: max-age=3600\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    proxy = scripted_proxy()
    answers = [proxy.call("chunked", {}) for _ in range(2)]
    assert [(a.headers["X-Cache"], a.data) for a in answers] == [
        ("MISS", b"hello world"),
        ("HIT", b"hello world"),
    ]
    assert scripted.requests("/function/chunked") == 1


def test_a_close_delimited_answer_is_forwarded_never_stored(
    scripted_proxy: Callable[..., Proxy], scripted: ScriptedUpstream
):
    scripted.script(
        "/function/closed",
        b"HTTP/1.1 200 OK\r\nCache-Control: max-age=3600\r\nConnection: close\r\n\r\nthe whole body",
        close=True,
    )
    proxy = scripted_proxy()
    answers = [proxy.call("closed", {}) for _ in range(2)]
    assert [(a.status_code, a.headers["X-Cache"], a.data) for a in answers] == [
        (200, "MISS", b"the whole body")
    ] * 2
    assert scripted.requests("/function/closed") == 2


def test_an_answer_above_max_response_is_a_502_naming_the_setting(
    make_proxy: Callable[..., Proxy], upstream: Upstream
):
    proxy = make_proxy(max_response=1000)
    for _ in range(2):
        answer = proxy.call("echo", {"text": "x" * 2000})
        assert answer.status_code == 502
        assert "1000 bytes" in answer.text and "JS_HOST_PROXY_MAX_RESPONSE" in answer.text
    assert upstream.calls("echo") == 2  # nothing stored
    assert proxy.call("echo", {"text": "x"}).status_code == 200


def _endless(head: bytes, chunk: bytes) -> Callable[[socket.socket], None]:
    def write(sock: socket.socket) -> None:
        sock.sendall(head)
        try:
            while True:
                sock.sendall(chunk)
        except OSError:
            pass  # the proxy stopped reading and closed the connection

    return write


@pytest.mark.parametrize(
    "head, chunk",
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", b"x" * 65536),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"10000\r\n" + b"x" * 65536 + b"\r\n"),
    ],
    ids=["close-delimited", "chunked"],
)
def test_an_endless_answer_is_cut_at_max_response(
    scripted_proxy: Callable[..., Proxy], scripted: ScriptedUpstream, head: bytes, chunk: bytes
):
    # The proxy counts the body as it reads it: an endless one ends in a 502, not in memory.
    scripted.script("/function/endless", _endless(head, chunk), close=True)
    proxy = scripted_proxy(max_response=1 << 20)
    answer = proxy.call("endless", {})
    assert answer.status_code == 502
    assert f"{1 << 20} bytes" in answer.text and "JS_HOST_PROXY_MAX_RESPONSE" in answer.text
    assert proxy.call("ok", {}).data == b"ok"  # the next call has a connection of its own


def test_max_response_is_a_setting():
    assert ProxyConfig.from_env({}).max_response == 10 * 1024 * 1024
    assert ProxyConfig.from_env({"JS_HOST_PROXY_MAX_RESPONSE": "2048"}).max_response == 2048
    with pytest.raises(ConfigError, match="JS_HOST_PROXY_MAX_RESPONSE"):
        ProxyConfig.from_env({"JS_HOST_PROXY_MAX_RESPONSE": "0"})
