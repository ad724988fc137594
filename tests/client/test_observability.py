"""What a Function call reports: the client's Prometheus metrics (counted by outcome,
duration, errors by class, local cache hits; summed over gunicorn's workers in
prometheus_client's multiprocess mode; nothing and no error without prometheus_client),
one DEBUG record per call with its fields, and the X-Request-Id it sends."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from js_host.exceptions import ConnectionError, FunctionError  # noqa: A004
from js_host.function import Function, call_many, call_many_async
from js_host.host import JSHost
from js_host.local_cache import LocalCache
from tests.support.processes import BUNDLED_BIN, ROOT, NodeProcess, free_port
from tests.support.recording_server import RecordingServer
from tests.support.servers import base_env, get, gunicorn, hit_all_workers

pytestmark = pytest.mark.timeout(60)

CONFIG = """
module.exports = {
  cacheControl: { kept: 'max-age=600' },
  functions: {
    echo: function(data, cb) { cb(null, JSON.stringify(data)); },
    kept: function(data, cb) { cb(null, 'kept ' + JSON.stringify(data)); },
    fail: function(data, cb) { cb(new Error('failed on purpose')); },
    slow: function(data, cb) { setTimeout(function() { cb(null, 'late'); }, 3000); },
  },
};
"""


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeProcess, JSHost]]:
    """One bundled host for the module, and a JSHost on it with a local cache."""
    folder = tmp_path_factory.mktemp("observability")
    config = folder / "host.config.js"
    config.write_text(CONFIG)
    process = NodeProcess(BUNDLED_BIN, config, "--port", "0", logdir=folder).start()
    client = JSHost(str(config), url_override=process.url, bin_path=str(BUNDLED_BIN))
    client.local_cache = LocalCache(1 << 20, 60.0)
    yield process, client
    process.stop()


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_calls_are_counted_by_function_and_outcome(host: tuple[NodeProcess, JSHost]) -> None:
    _, client = host
    before = {
        "ok": sample("js_host_client_calls_total", function="echo", outcome="ok"),
        "error": sample("js_host_client_calls_total", function="fail", outcome="error"),
        "errors": sample("js_host_client_errors_total", function="fail", error="FunctionError"),
        "echo_seconds": sample("js_host_client_call_duration_seconds_count", function="echo"),
        "kept_ok": sample("js_host_client_calls_total", function="kept", outcome="ok"),
        "kept_hits": sample("js_host_client_local_cache_hits_total", function="kept"),
    }
    for n in range(3):
        assert Function("echo", host=client).call(n=n) == json.dumps({"n": n}, separators=(",", ":"))
    with pytest.raises(FunctionError):
        Function("fail", host=client).call()
    # The first call is sent (and kept), the next two are answered from the local cache.
    for _ in range(3):
        assert Function("kept", host=client).call(x=1) == 'kept {"x":1}'

    assert sample("js_host_client_calls_total", function="echo", outcome="ok") == before["ok"] + 3
    assert sample("js_host_client_call_duration_seconds_count", function="echo") == before["echo_seconds"] + 3
    assert sample("js_host_client_calls_total", function="fail", outcome="error") == before["error"] + 1
    errors = sample("js_host_client_errors_total", function="fail", error="FunctionError")
    assert errors == before["errors"] + 1
    assert sample("js_host_client_calls_total", function="kept", outcome="ok") == before["kept_ok"] + 3
    assert sample("js_host_client_local_cache_hits_total", function="kept") == before["kept_hits"] + 2


def test_a_fallback_is_counted_with_its_error(tmp_path: Path) -> None:
    # Nothing listens on the port: a ConnectionError, which the fallback replaces.
    config = tmp_path / "host.config.js"
    config.write_text(CONFIG)
    client = JSHost(str(config), url_override=f"http://127.0.0.1:{free_port()}", bin_path=str(BUNDLED_BIN))
    fallback = sample("js_host_client_calls_total", function="echo", outcome="fallback")
    errors = sample("js_host_client_errors_total", function="echo", error="ConnectionError")
    assert Function("echo", host=client, fallback="later").call() == "later"
    with pytest.raises(ConnectionError):
        Function("echo", host=client).call()
    assert sample("js_host_client_calls_total", function="echo", outcome="fallback") == fallback + 1
    assert sample("js_host_client_errors_total", function="echo", error="ConnectionError") == errors + 2


def call_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "js_host.function" and hasattr(r, "duration_ms")]


def test_each_call_logs_one_debug_record(
    host: tuple[NodeProcess, JSHost], caplog: pytest.LogCaptureFixture
) -> None:
    _, client = host
    caplog.set_level(logging.DEBUG, logger="js_host")
    Function("echo", host=client).call(log=1)
    with pytest.raises(FunctionError):
        Function("fail", host=client).call(log=2)
    Function("kept", host=client).call(log=3)
    Function("kept", host=client).call(log=3)  # a local cache hit
    records = call_records(caplog)
    assert [(r.function, r.status, r.cache, r.outcome, r.error) for r in records] == [
        ("echo", 200, None, "ok", None),
        ("fail", 500, None, "error", "FunctionError"),
        ("kept", 200, None, "ok", None),
        ("kept", 200, "local", "ok", None),
    ]
    for record in records:
        assert record.levelno == logging.DEBUG
        assert re.fullmatch(r"[0-9a-f]{40}", record.hash)
        assert record.duration_ms >= 0
    sent = [r.request_id for r in records[:3]]
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in sent) and len(set(sent)) == 3
    assert records[3].request_id is None  # nothing was sent
    message = records[1].getMessage()
    assert message.startswith(f"Function 'fail' (hash {records[1].hash[:8]}): FunctionError (status 500) in ")
    assert message.endswith(f"cache none, request id {records[1].request_id}")
    assert "local cache hit" in records[3].getMessage()


def test_call_async_logs_and_counts_as_call_does(
    host: tuple[NodeProcess, JSHost], caplog: pytest.LogCaptureFixture
) -> None:
    _, client = host
    caplog.set_level(logging.DEBUG, logger="js_host")
    before = sample("js_host_client_calls_total", function="echo", outcome="ok")

    async def calls() -> None:
        await Function("echo", host=client).call_async(log="async")
        with pytest.raises(FunctionError):
            await Function("fail", host=client).call_async(log="async")

    asyncio.run(calls())
    records = call_records(caplog)
    expected = [("echo", 200, "ok"), ("fail", 500, "error")]
    assert [(r.function, r.status, r.outcome) for r in records] == expected
    assert all(re.fullmatch(r"[0-9a-f]{32}", r.request_id) for r in records)
    assert sample("js_host_client_calls_total", function="echo", outcome="ok") == before + 1


def test_call_many_logs_and_counts_each_call(
    host: tuple[NodeProcess, JSHost], caplog: pytest.LogCaptureFixture
) -> None:
    """A record per call of a batch, as Function.call's; the batch's X-Request-Id on each."""
    _, client = host
    caplog.set_level(logging.DEBUG, logger="js_host")
    echo, fail, kept = (Function(name, host=client) for name in ("echo", "fail", "kept"))
    kept.call(many=1)  # now in the local cache
    caplog.clear()
    before = sample("js_host_client_calls_total", function="echo", outcome="ok")
    calls = [(echo, {"many": 1}), (fail, {"many": 2}), (kept, {"many": 1})]
    blocking = call_many(calls)
    assert isinstance(blocking[1], FunctionError)
    records = call_records(caplog)
    assert sorted((r.function, r.status, r.cache, r.outcome) for r in records) == [
        ("echo", 200, None, "ok"),
        ("fail", 500, None, "error"),
        ("kept", 200, "local", "ok"),
    ]
    sent = [r for r in records if r.cache != "local"]
    assert re.fullmatch(r"[0-9a-f]{32}", sent[0].request_id) and sent[0].request_id == sent[1].request_id
    assert all(re.fullmatch(r"[0-9a-f]{40}", r.hash) for r in records)

    caplog.clear()
    asyncio.run(call_many_async(calls))
    assert len(call_records(caplog)) == 3
    assert sample("js_host_client_calls_total", function="echo", outcome="ok") == before + 2


def test_a_cancelled_call_async_is_recorded(
    host: tuple[NodeProcess, JSHost], caplog: pytest.LogCaptureFixture
) -> None:
    _, client = host
    caplog.set_level(logging.DEBUG, logger="js_host")
    errors = sample("js_host_client_errors_total", function="slow", error="CancelledError")

    async def cancelled() -> None:
        task = asyncio.ensure_future(Function("slow", host=client).call_async(a=1))
        await asyncio.sleep(0.05)  # under way: sent, or being sent
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancelled())
    (record,) = call_records(caplog)
    assert (record.function, record.outcome, record.error) == ("slow", "error", "CancelledError")
    assert sample("js_host_client_errors_total", function="slow", error="CancelledError") == errors + 1


def test_the_request_id_is_sent_and_the_proxy_cache_state_logged(caplog: pytest.LogCaptureFixture) -> None:
    """The recording server answers like a proxy, with X-Cache: the record says HIT, and
    the X-Request-Id it got is the one logged."""
    caplog.set_level(logging.DEBUG, logger="js_host")
    server = RecordingServer(["echo"], headers={"X-Cache": "HIT"})
    try:
        client = JSHost("host.config.js", url_override=server.url, bin_path=str(BUNDLED_BIN))
        Function("echo", host=client).call(a=1)
        calls = server.function_requests()
    finally:
        server.close()
    (record,) = call_records(caplog)
    assert calls[0]["headers"]["x-request-id"] == record.request_id
    assert record.cache == "HIT"
    assert record.getMessage().endswith(f"cache HIT, request id {record.request_id}")


def test_without_prometheus_client_calls_work_and_count_nothing(host: tuple[NodeProcess, JSHost]) -> None:
    process, _ = host
    script = f"""
import sys
sys.modules["prometheus_client"] = None  # as if it were not installed: importing it fails
from js_host import metrics
from js_host.function import Function, call_many, call_many_async
from js_host.host import JSHost
client = JSHost("host.config.js", url_override={process.url!r}, bin_path={str(BUNDLED_BIN)!r})
print(Function("echo", host=client).call(a=1))
print(metrics.enabled(), "prometheus_client" in sys.modules and sys.modules["prometheus_client"] is not None)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=base_env(), cwd=ROOT, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['{"a":1}', "False False"]


APP = ROOT / "tests" / "support" / "metrics_app.py"


def test_gunicorn_workers_are_counted_together(tmp_path: Path, host: tuple[NodeProcess, JSHost]) -> None:
    """prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR): the calls made by
    both gunicorn workers add up in the /metrics any of them serves."""
    process, _ = host
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    port = free_port()
    env = base_env(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), JS_HOST_TEST_URL=process.url)
    server = gunicorn("tests.support.metrics_app:application", port, env=env, log=tmp_path / "app.log")
    server.start(f"http://127.0.0.1:{port}/call")
    try:
        replies = hit_all_workers(f"http://127.0.0.1:{port}/call", 2)
        assert len(replies) == 2, replies  # both workers called
        for _ in range(8):
            assert get(f"http://127.0.0.1:{port}/call").status == 200
        text = get(f"http://127.0.0.1:{port}/metrics").body
    finally:
        server.stop()
    calls = [
        s
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "js_host_client_calls_total" and s.labels == {"function": "echo", "outcome": "ok"}
    ]
    # The start-up check, the calls that reached both workers and the 8 more: every one.
    made = server.log.count("called echo")
    assert made >= 11, server.log
    assert [s.value for s in calls] == [made]
