"""POST /batch through the proxy: under real gunicorn (2 workers, the file cache) in front of a
host that counts its calls, jobs with a fresh entry are answered from the cache and only the
others reach the host, in one upstream batch, each stored under its own key (a later single
call hits it); a batch of hits reaches no host (counted in its log). In front
of js-host 0.11 (no /batch, in-process), the misses go as single upstream calls."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any, Callable

import pytest
import requests

from js_host.exceptions import FunctionError
from js_host.function import Function, call_many
from js_host.host import JSHost
from tests.support.proxy import Proxy, Upstream, body_of, call_path, in_process_proxies, sha1
from tests.support.recording_server import RecordingServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)


def job(name: str, data: dict[str, Any], digest: str | None = None) -> dict[str, str]:
    body = body_of(data).decode()
    return {"function": name, "hash": digest or sha1(body.encode()), "body": body}


def post_batch(base: str, jobs: list[dict[str, str]]) -> list[dict[str, Any]]:
    answer = requests.post(f"{base}/batch", json={"jobs": jobs}, timeout=20)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert len(results) == len(jobs)
    return results


def batches_seen(upstream: Upstream) -> int:
    """POST /batch lines in the host's log, once the line of a later request is there too."""
    marks = upstream.host.log.count("POST /function/calls")
    upstream.calls("echo")
    wait_for(lambda: upstream.host.log.count("POST /function/calls") > marks)
    return upstream.host.log.count("POST /batch")


def states(results: list[dict[str, Any]]) -> list[str]:
    return [result["headers"]["x-cache"] for result in results]


def test_mixed_hits_and_misses_under_gunicorn(start_gunicorn: Callable[..., Any], upstream: Upstream) -> None:
    base, server = start_gunicorn(upstream=upstream.url)
    # A single call stores one entry; the batch finds it.
    path, body = call_path("echo", {"n": 0})
    assert requests.post(base + path, data=body, timeout=10).headers["X-Cache"] == "MISS"
    jobs = [
        job("echo", {"n": 0}),  # stored by the single call
        job("echo", {"n": 1}),
        job("long", {"n": 2}),  # Cache-Control: max-age=3600
        job("counter", {}),  # no-store: never stored
        job("fail", {}),  # a 500: never stored
        job("echo", {"n": 1}),  # the same key twice: sent once
        job("echo", {"n": 5}, digest="0" * 40),  # a wrong hash: refused, not sent
    ]
    first = post_batch(base, jobs)
    assert [r["status"] for r in first] == [200, 200, 200, 200, 500, 200, 400]
    assert states(first[:6]) == ["HIT", "MISS", "MISS", "MISS", "MISS", "MISS"]
    assert "x-cache" not in first[6]["headers"] and "not the sha1" in first[6]["body"]
    assert json.loads(first[1]["body"]) == {"echo": {"n": 1}}
    assert first[2]["headers"]["cache-control"] == "max-age=3600"
    assert "; stored; ttl=" in first[2]["headers"]["cache-status"]
    assert "stored" not in first[3]["headers"]["cache-status"]  # no-store
    assert first[4]["body"].startswith("Error: failed on purpose")
    assert first[0]["headers"]["cache-status"].startswith("js-host-proxy; hit")
    assert "age" in first[0]["headers"] and first[0]["headers"]["js-host-code-version"] == upstream.version
    # Each job reached the host once: the hit and the wrong hash not at all, the repeated key once.
    counts = {name: upstream.calls(name) for name in ("echo", "long", "counter", "fail")}
    assert counts == {"echo": 2, "long": 1, "counter": 1, "fail": 1}

    second = post_batch(base, jobs[:6])
    assert states(second) == ["HIT", "HIT", "HIT", "MISS", "MISS", "HIT"]
    assert {name: upstream.calls(name) for name in counts} == {"echo": 2, "long": 1, "counter": 2, "fail": 2}
    # Each answer was stored under its own key: a single call finds it.
    path, body = call_path("long", {"n": 2})
    single = requests.post(base + path, data=body, timeout=10)
    assert (single.headers["X-Cache"], single.headers["Cache-Control"]) == ("HIT", "max-age=3600")
    assert single.json() == {"echo": {"n": 2}}
    assert single.headers["Content-Type"].startswith("text/plain")

    # A batch of hits reaches no host: no /batch, no call.
    before = batches_seen(upstream)
    hits = post_batch(base, jobs[:3])
    assert states(hits) == ["HIT", "HIT", "HIT"]
    assert [json.loads(r["body"]) for r in hits] == [{"echo": {"n": i}} for i in range(3)]
    assert batches_seen(upstream) == before
    assert {name: upstream.calls(name) for name in counts} == {"echo": 2, "long": 1, "counter": 2, "fail": 2}
    assert "Traceback" not in server.log


def test_the_client_through_the_proxy(start_gunicorn: Callable[..., Any], upstream: Upstream) -> None:
    base, _server = start_gunicorn(upstream=upstream.url)
    host = JSHost(url_override=base)
    echo, fail = Function("echo", host=host), Function("fail", host=host)
    calls = [(echo, {"n": i}) for i in range(3)] + [(fail, {})]
    for _ in range(2):
        results = call_many(calls)
        assert [json.loads(r) for r in results[:3]] == [{"echo": {"n": i}} for i in range(3)]
        assert isinstance(results[3], FunctionError) and results[3].js_message == "failed on purpose"
    assert upstream.calls("echo") == 3 and upstream.calls("fail") == 2


def test_limits_and_bad_batches(make_proxy: Callable[..., Any]) -> None:
    proxy = make_proxy(max_body=20_000)
    cases = [
        (b"not json", 400, "not valid JSON"),
        # Nested deeper than Python's recursion limit: a 400, not a 500 with a traceback.
        (b'{"jobs":' + b"[" * 9000 + b"]" * 9000 + b"}", 400, "nested too deeply"),
        (b'{"work": []}', 400, "a batch is"),
        (json.dumps({"jobs": [{"body": "{}"}]}).encode(), 400, 'job 0 of the batch has no "function"'),
        (json.dumps({"jobs": [job("echo", {})] * 101}).encode(), 400, "101 jobs, more than 100"),
        (json.dumps({"jobs": [job("echo", {"t": "x" * 30_000})]}).encode(), 413, "JS_HOST_PROXY_MAX_BODY"),
    ]
    for body, status, text in cases:
        answer = proxy.client.post("/batch", data=body, content_type="application/json")
        assert (answer.status_code, text in answer.get_data(as_text=True)) == (status, True), (
            answer.get_data()
        )
    assert proxy.client.get("/batch").status_code == 405


def test_a_job_body_with_a_lone_surrogate_is_a_400(
    make_proxy: Callable[..., Any], upstream: Upstream
) -> None:
    """JSON can carry a lone surrogate (\\ud800), which has no UTF-8 form, so no hash: the
    batch is refused naming the job, as a batch nested too deeply is, not a 500."""
    proxy = make_proxy()
    good = json.dumps(job("echo", {"n": 1}))
    bodies = [b"\\ud800", b'{\\"a\\":\\"\\ud800\\"}']  # the surrogate alone, in the call's data
    for hashed, inner in itertools.product((b'"hash":"' + sha1(b"x").encode() + b'",', b""), bodies):
        bad = b'{"function":"echo",' + hashed + b'"body":"' + inner + b'"}'
        for body, index in (
            (b'{"jobs":[' + bad + b"]}", 0),
            (b'{"jobs":[' + good.encode() + b"," + bad + b"]}", 1),
        ):
            answer = proxy.client.post("/batch", data=body, content_type="application/json")
            text = answer.get_data(as_text=True)
            assert answer.status_code == 400, text
            assert text.startswith(
                f'js-host-proxy: job {index} of the batch has a "body" with a lone surrogate'
            ), text
            assert "U+D800" in text
    assert upstream.calls("echo") == 0


def test_an_upstream_without_batch_gets_single_calls(
    start_upstream: Callable[..., Upstream], make_proxy_for
) -> None:
    upstream = start_upstream("npm-0.11")
    proxy = make_proxy_for(upstream.url)
    jobs = [job("echo", {"n": 1}), job("long", {"n": 2}), job("fail", {})]
    for expected in (["MISS", "MISS", "MISS"], ["HIT", "HIT", "MISS"]):
        answer = proxy.client.post("/batch", json={"jobs": jobs})
        results = answer.get_json()["results"]
        assert [r["status"] for r in results] == [200, 200, 500]
        assert states(results) == expected
    assert (upstream.calls("echo"), upstream.calls("long"), upstream.calls("fail")) == (1, 1, 2)
    # The upstream is remembered: the next misses go straight to single calls.
    assert proxy.app.batch._no_batch == {upstream.url}


def test_the_single_calls_of_a_batch_carry_no_cookie_or_authorization(make_proxy_for) -> None:
    """Cached or not, a batch's jobs reach the host without the client's credentials, in one
    upstream batch or (a host without /batch: here every answer is a 404) as single calls."""
    recording = RecordingServer(["echo"], status_code=404)
    try:
        proxy = make_proxy_for(recording.url)
        uncached = {"function": "echo", "body": "{}"}
        answer = proxy.client.post(
            "/batch",
            json={"jobs": [job("echo", {"n": 1}), uncached]},
            headers={"Cookie": "session=secret", "Authorization": "Bearer secret", "X-Other": "kept"},
        )
        assert states(answer.get_json()["results"]) == ["MISS", "BYPASS"]
        sent = [r for r in recording.requests if r["target"] != "/status"]  # /status: the code version
        targets = [r["target"] for r in sent]
        assert targets[0] == "/batch"
        assert sorted(targets[1:]) == ["/function/echo", "/function/echo?hash=" + sha1(body_of({"n": 1}))]
        for request in sent:
            assert "cookie" not in request["headers"], request["target"]
            assert "authorization" not in request["headers"], request["target"]
            assert request["headers"]["x-other"] == "kept"
    finally:
        recording.close()


@pytest.fixture
def make_proxy_for() -> Iterator[Callable[[str], Proxy]]:
    """``make_proxy_for(url)``: the app in-process in front of the upstream at ``url``."""
    with ExitStack() as stack:
        yield lambda url: stack.enter_context(in_process_proxies(url))()
