"""The proxy in-process (werkzeug's test client) in front of a real host: every test
checks how many calls reached the host, not only the headers."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from js_host_proxy.__main__ import main
from js_host_proxy.cache.entry import Entry
from js_host_proxy.cache.file import FileCache
from js_host_proxy.httpcache_format import stored_response
from tests.support.processes import free_port
from tests.support.proxy import Proxy, Upstream, call_path, sha1
from tests.support.threads import run_on_threads

pytestmark = pytest.mark.timeout(60)


def test_a_repeated_call_is_answered_from_the_cache(make_proxy: Callable[..., Proxy], upstream: Upstream):
    proxy = make_proxy()
    first = proxy.call("echo", {"n": 1})
    second = proxy.call("echo", {"n": 1})
    assert (first.status_code, first.headers["X-Cache"]) == (200, "MISS")
    assert (second.status_code, second.headers["X-Cache"]) == (200, "HIT")
    assert first.data == second.data == b'{"echo":{"n":1}}'
    assert second.headers["Content-Type"] == first.headers["Content-Type"]
    assert "Age" in second.headers
    assert upstream.calls("echo", {"n": 1}) == 1
    # Another body is another key.
    assert proxy.call("echo", {"n": 2}).headers["X-Cache"] == "MISS"
    assert upstream.calls("echo") == 2


def test_a_wrong_hash_is_refused_and_never_stored(make_proxy: Callable[..., Proxy], upstream: Upstream):
    proxy = make_proxy()
    path, body = call_path("echo", {"n": 1})
    wrong = proxy.client.post(path.replace("hash=", "hash=0"), data=body, content_type="application/json")
    assert wrong.status_code == 400
    assert sha1(body) in wrong.text
    other = proxy.client.post(path, data=body + b" ", content_type="application/json")
    assert other.status_code == 400
    assert upstream.calls("echo") == 0
    assert proxy.call("echo", {"n": 1}).headers["X-Cache"] == "MISS"


def test_a_call_without_hash_is_forwarded_uncached(make_proxy: Callable[..., Proxy], upstream: Upstream):
    proxy = make_proxy()
    for _ in range(2):
        answer = proxy.client.post("/function/echo", json={"n": 1})
        assert (answer.status_code, answer.headers["X-Cache"]) == (200, "BYPASS")
        assert json.loads(answer.text) == {"echo": {"n": 1}}
    assert upstream.calls("echo", {"n": 1}) == 2
    # ... and it stored nothing.
    assert proxy.call("echo", {"n": 1}).headers["X-Cache"] == "MISS"


def test_an_upper_case_hash_is_the_same_key(make_proxy: Callable[..., Proxy], upstream: Upstream):
    proxy = make_proxy()
    path, body = call_path("echo", {"n": 1})
    proxy.client.post(path, data=body, content_type="application/json")
    digest = sha1(body)
    upper = proxy.client.post(path.replace(digest, digest.upper()), data=body)
    assert upper.headers["X-Cache"] == "HIT"
    assert upstream.calls("echo") == 1


def test_only_200s_are_stored(make_proxy: Callable[..., Proxy], upstream: Upstream):
    proxy = make_proxy()
    for _ in range(2):
        failed = proxy.call("fail", {})
        assert (failed.status_code, failed.headers["X-Cache"]) == (500, "MISS")
        assert failed.text.startswith("Error: failed on purpose")
    unknown = proxy.call("nope", {})
    assert unknown.status_code == 404
    assert upstream.calls("fail") == 2


def test_no_store_from_the_host_is_honoured(make_proxy: Callable[..., Proxy], any_upstream: Upstream):
    proxy = make_proxy(upstreams=(any_upstream.url,))
    answers = [proxy.call("counter", {}) for _ in range(3)]
    assert [a.text for a in answers] == ["1", "2", "3"]
    assert {a.headers["X-Cache"] for a in answers} == {"MISS"}
    assert answers[0].headers["Cache-Control"] == "no-store"
    assert any_upstream.calls("counter") == 3


def test_max_age_from_the_host_wins_over_the_default_ttl(
    make_proxy: Callable[..., Proxy], any_upstream: Upstream
):
    proxy = make_proxy(upstreams=(any_upstream.url,), ttl=1)
    assert [proxy.call(fn, {}).headers["X-Cache"] for fn in ("short", "long", "short", "long")] == [
        "MISS",
        "MISS",
        "HIT",
        "HIT",
    ]
    time.sleep(1.2)
    # short: max-age=1 has expired; long: max-age=3600 outlives the proxy's 1 s default.
    assert proxy.call("short", {}).headers["X-Cache"] == "MISS"
    assert proxy.call("long", {}).headers["X-Cache"] == "HIT"
    assert (any_upstream.calls("short"), any_upstream.calls("long")) == (2, 1)


def test_the_default_ttl_expires(make_proxy: Callable[..., Proxy], upstream: Upstream):
    proxy = make_proxy(ttl=1)
    assert "Cache-Control" not in proxy.call("echo", {}).headers  # the default TTL is the proxy's own
    assert proxy.call("echo", {}).headers["X-Cache"] == "HIT"
    time.sleep(1.2)
    assert proxy.call("echo", {}).headers["X-Cache"] == "MISS"
    assert upstream.calls("echo") == 2


def test_ttl_zero_stores_nothing_by_default(make_proxy: Callable[..., Proxy], upstream: Upstream):
    proxy = make_proxy(ttl=0)
    assert [proxy.call("echo", {}).headers["X-Cache"] for _ in range(2)] == ["MISS", "MISS"]
    assert proxy.call("long", {}).headers["X-Cache"] == "MISS"
    assert upstream.calls("echo") == 2


def test_namespaces_separate_deploys(make_proxy: Callable[..., Proxy], upstream: Upstream, tmp_path: Path):
    v1 = make_proxy(backend=FileCache(tmp_path / "cache"), namespace="v1")
    v2 = make_proxy(backend=FileCache(tmp_path / "cache"), namespace="v2")
    v1_again = make_proxy(backend=FileCache(tmp_path / "cache"), namespace="v1")
    assert v1.call("echo", {}).headers["X-Cache"] == "MISS"
    assert v2.call("echo", {}).headers["X-Cache"] == "MISS"
    assert v1_again.call("echo", {}).headers["X-Cache"] == "HIT"
    assert upstream.calls("echo") == 2


def test_purge_empties_the_cache(
    make_proxy: Callable[..., Proxy], upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    url = f"file://{tmp_path}/cache"
    v1 = make_proxy(cache_url=url, namespace="v1")
    v2 = make_proxy(cache_url=url, namespace="v2")
    for proxy in (v1, v2):
        proxy.call("echo", {"a": 1})
        proxy.call("echo", {"a": 2})
    assert main(["purge", "--cache", url, "--namespace", "v1"]) == 0
    assert "removed 2 entries" in capsys.readouterr().out
    assert v1.call("echo", {"a": 1}).headers["X-Cache"] == "MISS"
    assert v2.call("echo", {"a": 1}).headers["X-Cache"] == "HIT"
    assert main(["purge", "--all", "--cache", url]) == 0
    assert "removed 3 entries" in capsys.readouterr().out
    assert v2.call("echo", {"a": 1}).headers["X-Cache"] == "MISS"
    assert upstream.calls("echo") == 6


def test_purge_expired_keeps_what_may_still_be_served(
    make_proxy: Callable[..., Proxy],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("JS_HOST_PROXY_STALE_TTL", "0.5")
    url = f"file://{tmp_path}/cache"
    proxy = make_proxy(cache_url=url, ttl=1, stale_ttl=0.5)
    proxy.call("echo", {})
    proxy.call("long", {})
    time.sleep(1.6)
    assert main(["purge", "--cache", url, "--expired"]) == 0
    assert "removed 1 entries" in capsys.readouterr().out
    assert proxy.call("long", {}).headers["X-Cache"] == "HIT"


def _concurrently(count: int, call: Callable[[int], Any]) -> list[Any]:
    results: list[Any] = [None] * count
    start = threading.Barrier(count)

    def run(i: int) -> None:
        start.wait()
        results[i] = call(i)

    run_on_threads(run, count, timeout=30)
    return results


def test_concurrent_misses_make_one_call(make_proxy: Callable[..., Proxy], upstream: Upstream):
    proxy = make_proxy()
    answers = _concurrently(20, lambda i: proxy.call("slow", {"ms": 300}))
    assert [a.status_code for a in answers] == [200] * 20
    assert sorted(a.headers["X-Cache"] for a in answers) == ["HIT"] * 19 + ["MISS"]
    assert upstream.calls("slow") == 1


@pytest.mark.parametrize("cache", ["file", "redis"])
def test_concurrent_misses_in_several_processes_make_one_call(
    make_proxy: Callable[..., Proxy],
    upstream: Upstream,
    tmp_path: Path,
    cache: str,
    request: pytest.FixtureRequest,
):
    # Two apps stand for two processes: each has its own coalescer and its own
    # backend (its own lock files or Redis connections), sharing the cache.
    url = f"file://{tmp_path}/cache" if cache == "file" else request.getfixturevalue("redis_server")[0]
    proxies = [make_proxy(cache_url=url) for _ in range(2)]
    answers = _concurrently(20, lambda i: proxies[i % 2].call("slow", {"ms": 400}))
    assert [a.status_code for a in answers] == [200] * 20
    assert sorted(a.headers["X-Cache"] for a in answers) == ["HIT"] * 19 + ["MISS"]
    assert upstream.calls("slow") == 1


def test_waiters_call_the_host_themselves_when_the_answer_must_not_be_stored(
    make_proxy: Callable[..., Proxy], upstream: Upstream
):
    proxy = make_proxy()
    answers = _concurrently(5, lambda i: proxy.call("counter", {}))
    assert sorted(a.text for a in answers) == ["1", "2", "3", "4", "5"]
    assert upstream.calls("counter") == 5


def test_a_stale_entry_is_served_when_the_host_is_down(make_proxy: Callable[..., Proxy], upstream: Upstream):
    proxy = make_proxy(ttl=1)
    assert proxy.call("echo", {}).status_code == 200
    assert upstream.calls("echo") == 1
    upstream.stop()
    time.sleep(1.2)
    stale = proxy.call("echo", {})
    assert (stale.status_code, stale.headers["X-Cache"]) == (200, "STALE")
    assert stale.data == b'{"echo":{}}'
    assert "111" in stale.headers["Warning"]
    assert upstream.url in stale.headers["X-Cache-Stale-Reason"]


def test_the_host_down_is_a_502_naming_it(make_proxy: Callable[..., Proxy]):
    dead = f"http://127.0.0.1:{free_port()}"
    proxy = make_proxy(upstreams=(dead,))
    answer = proxy.call("echo", {})
    assert answer.status_code == 502
    assert dead in answer.text
    assert "Connection refused" in answer.text
    status = proxy.client.get("/status")
    assert status.status_code == 502
    assert dead in status.text


def test_a_host_that_does_not_answer_in_time_is_a_504(make_proxy: Callable[..., Proxy], upstream: Upstream):
    proxy = make_proxy(upstream_timeout=0.3)
    answer = proxy.call("slow", {"ms": 1500})
    assert answer.status_code == 504
    assert upstream.url in answer.text
    assert "0.3s" in answer.text
    assert upstream.calls("slow") == 1  # not retried elsewhere


def test_one_upstream_down_is_skipped(make_proxy: Callable[..., Proxy], upstream: Upstream):
    dead = f"http://127.0.0.1:{free_port()}"
    proxy = make_proxy(upstreams=(dead, upstream.url, dead))
    answers = [proxy.call("echo", {"n": i}) for i in range(6)]
    assert [a.status_code for a in answers] == [200] * 6
    assert upstream.calls("echo") == 6


def test_calls_are_spread_over_the_upstreams(start_upstream: Callable[..., Upstream], make_proxy):
    first, second = start_upstream(), start_upstream()
    proxy = make_proxy(upstreams=(first.url, second.url))
    for i in range(6):
        assert proxy.call("echo", {"n": i}).status_code == 200
    assert (first.calls("echo"), second.calls("echo")) == (3, 3)
    # An entry stored from one upstream is a hit whichever upstream is next.
    assert [proxy.call("echo", {"n": 0}).headers["X-Cache"] for _ in range(2)] == ["HIT", "HIT"]


def test_the_manager_endpoints_are_not_forwarded(make_proxy: Callable[..., Proxy], upstream: Upstream):
    proxy = make_proxy()
    for path in ("/manager/stop", "/host/start", "/host/stop", "/host/connect"):
        answer = proxy.client.post(path, json={"config": "/etc/passwd"})
        assert answer.status_code == 403
        assert "manager" in answer.text
    status = proxy.client.get("/status")
    assert status.status_code == 200
    assert status.json["type"] == "Host"
    assert proxy.client.get("/function/echo").status_code == 405
    assert proxy.client.get("/elsewhere").status_code == 404


def test_the_hosts_last_errors_are_not_forwarded(make_proxy: Callable[..., Proxy], upstream: Upstream):
    """Another client's error texts stay on the host: the proxy forwards only the bare /status."""
    proxy = make_proxy()
    assert proxy.client.post("/function/fail", json={}).status_code == 500
    direct = requests.get(f"{upstream.url}/status?errors", timeout=5).json()
    assert [error["function"] for error in direct["lastErrors"]] == ["fail"]
    for path in ("/status", "/status?errors"):
        status = proxy.client.get(path)
        assert status.status_code == 200
        assert status.json["type"] == "Host"
        assert "lastErrors" not in status.json
        assert "failed on purpose" not in status.text


def test_an_oversized_body_is_refused(make_proxy: Callable[..., Proxy], upstream: Upstream):
    proxy = make_proxy(max_body=100)
    data = {"text": "x" * 200}
    answer = proxy.call("echo", data)
    assert answer.status_code == 413
    assert "100 bytes" in answer.text
    assert proxy.client.post("/function/echo", json=data).status_code == 413
    assert proxy.call("echo", {"text": "x"}).status_code == 200
    assert upstream.calls("echo") == 1


def test_hop_by_hop_headers_are_stripped(make_proxy: Callable[..., Proxy], upstream: Upstream):
    proxy = make_proxy()
    for _ in range(2):  # miss, then hit
        answer = proxy.call("echo", {}, headers={"Connection": "X-Secret", "X-Secret": "1", "TE": "trailers"})
        names = {k.lower() for k, _ in answer.headers}
        assert not names & {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}
        assert answer.headers["Content-Length"] == str(len(answer.data))


def test_the_redis_cache_is_shared(make_proxy: Callable[..., Proxy], upstream: Upstream, redis_server):
    url, _ = redis_server
    one, two = make_proxy(cache_url=url), make_proxy(cache_url=url)
    assert one.call("echo", {}).headers["X-Cache"] == "MISS"
    assert two.call("echo", {}).headers["X-Cache"] == "HIT"
    assert upstream.calls("echo") == 1
    assert main(["purge", "--all", "--cache", url]) == 0
    assert two.call("echo", {}).headers["X-Cache"] == "MISS"
    assert upstream.calls("echo") == 2


def test_redis_down_serves_uncached(
    make_proxy: Callable[..., Proxy], upstream: Upstream, redis_server, caplog: pytest.LogCaptureFixture
):
    url, server = redis_server
    proxy = make_proxy(cache_url=url)
    assert proxy.call("echo", {"a": 1}).headers["X-Cache"] == "MISS"
    server.stop()
    with caplog.at_level(logging.WARNING, logger="js_host_proxy"):
        answers = [proxy.call("echo", {"b": 1}) for _ in range(3)]
    assert [(a.status_code, a.headers["X-Cache"]) for a in answers] == [(200, "MISS")] * 3
    assert upstream.calls("echo", {"b": 1}) == 3
    assert any("Redis cache" in r.getMessage() and url in r.getMessage() for r in caplog.records)


def test_an_unwritable_cache_folder_serves_uncached(
    make_proxy: Callable[..., Proxy], upstream: Upstream, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proxy = make_proxy(cache_url=f"file://{blocker}/cache")
    with caplog.at_level(logging.WARNING, logger="js_host_proxy"):
        answers = [proxy.call("echo", {}) for _ in range(2)]
    assert [(a.status_code, a.headers["X-Cache"]) for a in answers] == [(200, "MISS")] * 2
    assert upstream.calls("echo") == 2
    assert any("file cache" in r.getMessage() for r in caplog.records)


def test_file_entries_are_written_whole(make_proxy: Callable[..., Proxy], upstream: Upstream, tmp_path: Path):
    backend = FileCache(tmp_path / "cache")
    proxy = make_proxy(backend=backend)
    proxy.call("echo", {"n": 1})
    files = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert len(files) == 1 and not files[0].name.startswith(".tmp-")  # no temp or lock file left
    # A truncated entry (a crash mid-write without os.replace) is ignored, never served.
    files[0].write_bytes(files[0].read_bytes()[:-3])
    assert proxy.call("echo", {"n": 1}).headers["X-Cache"] == "MISS"
    assert upstream.calls("echo") == 2
    key = upstream.key("echo", {"n": 1})
    entry = Entry.loads(backend.get(key))
    assert entry is not None and stored_response(entry.blob)[2] == b'{"echo":{"n":1}}'
