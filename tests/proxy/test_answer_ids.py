"""Bytes a function writes on its connection after its answer never become another
call's answer, live or stored.

The upstream's functions write a whole response of their own on ``this.res.socket``
from a ``setImmediate`` after calling back. Read as the next call's answer, it would be
stored under that call's key and every answer after it on the connection would be one
out of step (another call's output stored, and served as a HIT). Each upstream request
carries an id of its own, which the answer must carry back: here many distinct calls
run at once under gunicorn, every answer is its own input's or a 502, twice over (the
second time from the cache: every stored entry is its own key's), and the ids the host
sees are the client's made unique per upstream request.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from tests.support.processes import ROOT
from tests.support.proxy import Upstream, call_path, in_process_proxies
from tests.support.recording_server import RecordingServer
from tests.support.threads import run_on_threads

pytestmark = pytest.mark.timeout(120)

THREADS = 8
CALLS_PER_THREAD = 40
FUNCTIONS = ["stray", "echo", "stray_same_id", "echo"]

# The output names the function and echoes the data, so that another call's is told apart.
STRAY_CONFIG = """\
module.exports = {
  functions: require(FUNCTIONS)(function (name, data) { return JSON.stringify({fn: name, echo: data}); }),
};
"""
STRAY_FUNCTIONS = ROOT / "tests" / "fixtures" / "stray_functions.js"


@pytest.fixture
def stray_upstream(tmp_path: Path, start_upstream: Callable[..., Upstream]) -> Upstream:
    config = tmp_path / "stray.config.js"
    config.write_text(STRAY_CONFIG.replace("FUNCTIONS", json.dumps(str(STRAY_FUNCTIONS))))
    return start_upstream("bundled", config)


def judged(name: str, data: dict[str, Any], answer: requests.Response) -> str:
    """ "ok", "502" (the proxy's, for an answer that was not the call's) or what is wrong."""
    if answer.status_code == 502 and "X-Request-Id" in answer.text:
        return "502"
    try:
        if answer.status_code == 200 and json.loads(answer.text) == {"fn": name, "echo": data}:
            return "ok"
    except ValueError:
        pass
    return f"{name}({data}): {answer.status_code} {answer.headers.get('X-Cache')} {answer.text[:80]!r}"


def run_all(base: str, client_id: Callable[[int], str]) -> tuple[list[str], list[str]]:
    """Every thread's calls, at once; (the outcomes, the X-Cache of each answer that was
    ok). ``client_id(thread)``: the X-Request-Id the thread sends with each of its calls."""
    outcomes: list[str] = []
    caches: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def work(t: int) -> None:
        start.wait()
        with requests.Session() as session:
            for i in range(CALLS_PER_THREAD):
                name, data = FUNCTIONS[(t + i) % len(FUNCTIONS)], {"t": t, "i": i}
                path, body = call_path(name, data)
                headers = {"X-Request-Id": client_id(t)}
                answer = session.post(base + path, data=body, headers=headers, timeout=20)
                outcome = judged(name, data, answer)
                with lock:
                    outcomes.append(outcome)
                    if outcome == "ok":
                        caches.append(answer.headers["X-Cache"])

    run_on_threads(work, THREADS, timeout=100)
    return outcomes, caches


def wrong(outcomes: list[str]) -> list[str]:
    return [outcome for outcome in outcomes if outcome not in ("ok", "502")]


@pytest.mark.parametrize("ids", ["one-per-call", "one-per-client"])
def test_no_answer_reaches_another_call_nor_its_key_under_gunicorn(
    start_gunicorn: Callable[..., Any], stray_upstream: Upstream, ids: str
) -> None:
    base, server = start_gunicorn(upstream=stray_upstream.url)
    counter = iter(range(10**6))
    # A client may send one id with all its calls (a page's): the upstream ids differ all the same.
    client_id = (lambda t: f"call-{next(counter)}") if ids == "one-per-call" else (lambda t: f"client-{t}")
    first, _ = run_all(base, client_id)
    assert len(first) == THREADS * CALLS_PER_THREAD and wrong(first) == []
    # The same calls again: a stored entry is served (HIT) and must be its own key's answer.
    again, caches = run_all(base, client_id)
    assert len(again) == THREADS * CALLS_PER_THREAD and wrong(again) == []
    assert caches.count("HIT") >= first.count("ok") / 2
    assert "Traceback" not in server.log


def test_each_upstream_request_has_an_id_of_its_own() -> None:
    recording = RecordingServer(["echo"])
    try:
        with in_process_proxies(recording.url) as make:
            proxy = make()
            answers = [proxy.call("echo", {"n": n}, headers={"X-Request-Id": "page-7"}) for n in range(3)]
            made = proxy.call("echo", {"n": 4}, headers={"X-Request-Id": "not valid!"})
            long_id = "x" * 128
            proxy.call("echo", {"n": 5}, headers={"X-Request-Id": long_id})
            assert [answer.headers["X-Request-Id"] for answer in answers] == ["page-7"] * 3  # the client's
            sent = [r["headers"].get("x-request-id") for r in recording.function_requests()]
    finally:
        recording.close()
    assert len(sent) == 5 and len(set(sent)) == 5
    for upstream_id, client_id in zip(sent, ["page-7"] * 3 + [made.headers["X-Request-Id"], "x" * 111]):
        assert re.fullmatch(re.escape(client_id) + r"\.[0-9a-f]{16}", upstream_id), upstream_id
