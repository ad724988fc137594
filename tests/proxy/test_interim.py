"""1xx interim answers (RFC 9110 §15.2) never shift one call's answer onto another.

A config function can send 103 Early Hints, 102 Processing or 100 Continue through
``this.res`` before its output. http.client skips only 100; a proxy that took a 103
for the answer would put the socket back in its pool with the real answer still to
come, and the next call would get (and store under its own key) the previous call's
output. Here many distinct calls run at once, through the app in-process and under
gunicorn, and every answer, live and stored, must be the one of its own input.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.client import HTTPConnection
from typing import Any, Callable

import pytest
import requests

from js_host_proxy.connections import AlignedHTTPConnection
from tests.support.proxy import FIXTURES, Proxy, Upstream, call_path, in_process_proxies
from tests.support.scripted_upstream import ScriptedUpstream
from tests.support.threads import run_on_threads

pytestmark = pytest.mark.timeout(120)

FUNCTIONS = ["hints", "processing", "continued", "several", "echo"]
THREADS = 8
CALLS_PER_THREAD = 40


@pytest.fixture
def interim_upstream(start_upstream: Callable[..., Upstream]) -> Upstream:
    return start_upstream("bundled", FIXTURES / "interim.config.js")


@pytest.fixture
def interim_proxy(interim_upstream: Upstream) -> Iterator[Proxy]:
    with in_process_proxies(interim_upstream.url) as make:
        yield make()


def _inputs(thread: int) -> list[tuple[str, dict[str, Any]]]:
    names = FUNCTIONS
    return [(names[(thread + i) % len(FUNCTIONS)], {"t": thread, "i": i}) for i in range(CALLS_PER_THREAD)]


def _run_threads(work: Callable[[int], list[str]]) -> list[str]:
    """Runs ``work(thread)`` in THREADS threads at once; the mismatches they found."""
    found: list[list[str]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def run(t: int) -> None:
        try:
            start.wait()
            found[t] = work(t)
        except BaseException as err:  # reported below, with the thread's number
            errors.append(err)

    run_on_threads(run, THREADS, timeout=90)
    assert not errors, errors
    return [m for ms in found for m in ms]


def _mismatch(name: str, data: dict[str, Any], answer: Any) -> str | None:
    """What is wrong with ``answer`` to ``name(data)`` (None: it is that call's own)."""
    try:
        if answer.status_code == 200 and json.loads(answer.text) == {"echo": data}:
            return None
    except ValueError:
        pass
    return f"{name}({data}): {answer.status_code} {answer.headers.get('X-Cache')} {answer.text[:80]!r}"


def test_interim_answers_never_shift_answers_in_process(interim_proxy: Proxy, interim_upstream: Upstream):
    # werkzeug's test client is not thread-safe: one per thread, over the same app.
    def work(t: int) -> list[str]:
        client = Proxy(interim_proxy.app)
        bad = []
        for name, data in _inputs(t):
            answer = client.call(name, data)
            problem = _mismatch(name, data, answer)
            if problem:
                bad.append(problem)
        return bad

    assert _run_threads(work) == []
    # Every stored entry holds its own key's answer: the same calls again are hits.
    again = _run_threads(work)
    assert again == []
    total = THREADS * CALLS_PER_THREAD
    assert sum(interim_upstream.calls(name) for name in FUNCTIONS) == total
    hit = interim_proxy.call("hints", {"t": 0, "i": 0})
    assert hit.headers["X-Cache"] == "HIT"


def test_interim_answers_never_shift_answers_under_gunicorn(
    start_gunicorn: Callable[..., Any], interim_upstream: Upstream
):
    base, server = start_gunicorn(upstream=interim_upstream.url)

    def work(t: int) -> list[str]:
        bad = []
        with requests.Session() as session:
            for name, data in _inputs(t):
                path, body = call_path(name, data)
                answer = session.post(base + path, data=body, timeout=20)
                problem = _mismatch(name, data, answer)
                if problem:
                    bad.append(problem)
        return bad

    assert _run_threads(work) == []
    assert _run_threads(work) == []  # the stored entries, compared with their inputs
    assert sum(interim_upstream.calls(name) for name in FUNCTIONS) == THREADS * CALLS_PER_THREAD
    assert "Traceback" not in server.log


def test_the_response_class_skips_1xx_over_http_client(scripted: ScriptedUpstream):
    # AlignedHTTPConnection's response reads past every 1xx but 101: this pins the
    # http.client internals it relies on (HTTPResponse.begin calling _read_status).
    scripted.script(
        "/x",
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 102 Processing\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </b.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Final: yes\r\n\r\nfinal",
    )
    conn = AlignedHTTPConnection("127.0.0.1", scripted.port, timeout=5)
    try:
        conn.request("POST", "/x", body=b"{}")
        response = conn.getresponse()
        assert (response.status, response.headers.get("X-Final"), response.data) == (200, "yes", b"final")
        assert "Link" not in response.headers  # the interim answers' fields are not the answer's
    finally:
        conn.close()
    # The stock class takes the first 1xx other than 100 for the answer (why the subclass exists).
    stock = HTTPConnection("127.0.0.1", scripted.port, timeout=5)
    try:
        stock.request("POST", "/x", body=b"{}")
        assert stock.getresponse().status in (102, 200)
    finally:
        stock.close()


def test_a_101_is_a_502_and_the_connection_is_not_reused(
    scripted_proxy: Callable[..., Proxy], scripted: ScriptedUpstream
):
    scripted.script(
        "/function/up",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nupgraded",
    )
    proxy = scripted_proxy()
    for _ in range(2):
        answer = proxy.call("up", {})
        assert answer.status_code == 502
        assert "101" in answer.text and scripted.url in answer.text
    assert scripted.requests("/function/up") == 2  # nothing stored
    # The next call gets its own answer, on a new connection.
    connections = scripted.connections
    assert proxy.call("ok", {}).data == b"ok"
    assert scripted.connections == connections + 1


def test_bytes_after_an_answer_close_the_connection(
    scripted_proxy: Callable[..., Proxy], scripted: ScriptedUpstream
):
    # A host that writes more than its answer: those bytes must never be read as the next answer.
    scripted.script(
        "/function/extra",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"
        b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nCache-Control: max-age=3600\r\n\r\npoison",
    )
    proxy = scripted_proxy()
    assert proxy.call("extra", {}).data == b"first"
    connections = scripted.connections
    for i in range(3):
        answer = proxy.call("ok", {"n": i})
        assert (answer.status_code, answer.data) == (200, b"ok")
    assert scripted.connections == connections + 1  # a new one, then kept alive


def test_the_scripted_upstream_answers_ok_by_default(scripted: ScriptedUpstream):
    with socket.create_connection(("127.0.0.1", scripted.port), timeout=5) as sock:
        sock.sendall(b"POST /function/x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        assert sock.recv(1000).endswith(b"\r\n\r\nok")


def test_uncached_calls_skip_interim_answers_too(interim_proxy: Proxy, interim_upstream: Upstream):
    for i in range(20):
        answer = interim_proxy.client.post("/function/several", json={"i": i})
        assert (answer.status_code, answer.headers["X-Cache"]) == (200, "BYPASS")
        assert json.loads(answer.text) == {"echo": {"i": i}}
    assert interim_upstream.calls("several") == 20
