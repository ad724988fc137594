"""The proxy's metrics, health endpoints, request ids and JSON logs, against real
gunicorn (2 workers) in front of a real host: one stack for the module.

The stack: the host on a port of its own (so that it can be stopped and started again
there), gunicorn with JSON logs and its access log on, ``/metrics`` on a second socket
(``JS_HOST_PROXY_METRICS_BIND``) behind a token, and the default multiprocess directory
(a private folder under the stack's TMPDIR), whose files say which worker counted what.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import BUNDLED_BIN, NodeProcess, free_port
from tests.support.proxy import CONFIGS, Server, call_path, in_process_proxies
from tests.support.recording_server import RecordingServer
from tests.support.waiting import wait_for

TOKEN = "metrics-token-" + "0123456789abcdef"
pytestmark = pytest.mark.skipif(not BUNDLED_BIN.exists(), reason="the bundled host is needed")


@dataclass
class Stack:
    host_port: int
    folder: Path
    url: str  # the proxy's public socket
    metrics_url: str  # its metrics socket
    host: NodeProcess = field(init=False)
    gunicorn: Server = field(init=False)

    def start_host(self) -> None:
        self.host = NodeProcess(
            BUNDLED_BIN, CONFIGS["bundled"], "--port", str(self.host_port), logdir=self.folder
        ).start()

    def call(self, name: str, data: dict[str, Any], **headers: str) -> requests.Response:
        path, body = call_path(name, data)
        headers.setdefault("Content-Type", "application/json")
        return requests.post(self.url + path, data=body, headers=headers, timeout=10)

    def scrape(self) -> dict[str, float]:
        """Every sample of GET /metrics: ``name{label="v",...}`` -> value (labels sorted)."""
        answer = requests.get(self.metrics_url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200, answer.text
        samples = {}
        for family in text_string_to_metric_families(answer.text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    @property
    def multiproc_dir(self) -> Path:
        return next((self.folder / "tmp").glob(f"js-host-proxy-{os.getuid()}/metrics-*"))

    def counted_by_pid(self, name: str) -> dict[int, float]:
        """pid -> that worker's count of the samples named ``name`` (from its file)."""
        counts: dict[int, float] = {}
        for path in self.multiproc_dir.glob("counter_*.db"):
            if path.stat().st_size < 8:
                continue  # being made by its worker
            pid = int(path.stem.split("_")[1])
            for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
                if json.loads(key)[1] == name:
                    counts[pid] = counts.get(pid, 0) + value
        return counts

    def worker_pids(self) -> list[int]:
        return [int(p) for p in re.findall(r"Booting worker with pid: (\d+)", self.gunicorn.log)]

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.gunicorn.log.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("metrics")
    (folder / "tmp").mkdir(mode=0o700)
    port, metrics_port, host_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JS_HOST_PROXY_", "PROMETHEUS_"))}
    env.update(
        TMPDIR=str(folder / "tmp"),
        GUNICORN_CMD_ARGS="",
        JS_HOST_PROXY_UPSTREAM=f"http://127.0.0.1:{host_port}",
        JS_HOST_PROXY_BIND=f"127.0.0.1:{port}",
        JS_HOST_PROXY_METRICS_BIND=f"127.0.0.1:{metrics_port}",
        JS_HOST_PROXY_METRICS_TOKEN=TOKEN,
        JS_HOST_PROXY_WORKERS="2",
        JS_HOST_PROXY_THREADS="4",
        JS_HOST_PROXY_CACHE=f"file://{folder}/cache",
        JS_HOST_PROXY_STALE_WHILE_REVALIDATE="30",
        JS_HOST_PROXY_UPSTREAM_TIMEOUT="1",
        JS_HOST_PROXY_RETRY_DOWN_AFTER="0",
        JS_HOST_PROXY_LOG_FORMAT="json",
        JS_HOST_PROXY_ACCESS_LOG="-",
        JS_HOST_PROXY_LOG_LEVEL="info",
    )
    stack = Stack(host_port, folder, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}")
    stack.start_host()
    stack.gunicorn = Server([sys.executable, "-m", "gunicorn"], log=folder / "gunicorn.log", env=env)
    try:
        stack.gunicorn.start(port, ready=lambda: len(stack.worker_pids()) >= 2)
        yield stack
    finally:
        stack.gunicorn.stop()
        stack.host.stop()


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


def test_counts_are_summed_over_the_workers_and_survive_a_killed_worker(stack: Stack) -> None:
    run = uuid.uuid4().hex
    before = stack.scrape()
    misses = [{"run": run, "i": i} for i in range(3)]
    for data in misses:
        assert stack.call("echo", data).headers["X-Cache"] == "MISS"
    # Hits, concurrently on fresh connections, until both workers have answered some.
    hits = 0
    with ThreadPoolExecutor(4) as pool:
        while hits < 200:
            states = list(pool.map(lambda i: stack.call("echo", misses[i % 3]).headers["X-Cache"], range(4)))
            assert states == ["HIT"] * 4
            hits += 4
            if len(stack.counted_by_pid("js_host_proxy_requests_total")) >= 2:
                break
    assert len(stack.counted_by_pid("js_host_proxy_requests_total")) == 2, "one worker answered everything"
    # One stale answer (short: max-age=1, served stale while one call refreshes it).
    assert stack.call("short", {"run": run}).headers["X-Cache"] == "MISS"
    time.sleep(1.1)
    assert stack.call("short", {"run": run}).headers["X-Cache"] == "STALE"
    # One upstream error (the function throws: the host answers 500), one timeout (504).
    assert stack.call("fail", {"run": run}).status_code == 500
    assert stack.call("slow", {"run": run, "ms": 1500}).status_code == 504

    expected = {
        'js_host_proxy_requests_total{cache="MISS",function="echo"}': 3,
        'js_host_proxy_requests_total{cache="HIT",function="echo"}': hits,
        'js_host_proxy_requests_total{cache="MISS",function="short"}': 1,
        'js_host_proxy_requests_total{cache="STALE",function="short"}': 1,
        'js_host_proxy_requests_total{cache="MISS",function="fail"}': 1,
        # Never answered (the proxy's 504): a name is a label once the host has answered it.
        'js_host_proxy_requests_total{cache="MISS",function="_unknown"}': 1,
        "js_host_proxy_stale_answers_total": 1,
        'js_host_proxy_upstream_errors_total{cause="5xx"}': 1,
        'js_host_proxy_upstream_errors_total{cause="timeout"}': 1,
        # 3 echo, 2 short (the miss and the background refresh), fail, slow.
        "js_host_proxy_upstream_duration_seconds_count": 7,
    }

    def counters(samples: dict[str, float]) -> dict[str, float]:
        changed = delta(samples, before)
        return {k: v for k, v in changed.items() if k in expected or k.startswith("js_host_proxy_requests")}

    wait_for(lambda: counters(stack.scrape()) == expected, 10)  # the refresh runs in the background
    totals = stack.scrape()

    # A worker SIGKILLed: its counts stay in its files, its replacement counts in new ones.
    victim = max(stack.counted_by_pid("js_host_proxy_requests_total").items(), key=lambda kv: kv[1])[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(stack.worker_pids()) >= 3, 15, "the replacement worker")
    wait_for(lambda: requests.get(stack.url + "/health", timeout=2).ok)
    after = stack.scrape()
    assert counters(after) == expected
    for name in ("js_host_proxy_upstream_duration_seconds_sum", "js_host_proxy_coalesced_waiters_total"):
        assert after[name] == totals[name]
    # And counting goes on, once per request, whichever worker answers.
    for _ in range(6):
        assert stack.call("echo", misses[0]).headers["X-Cache"] == "HIT"
    expected['js_host_proxy_requests_total{cache="HIT",function="echo"}'] += 6
    assert counters(stack.scrape()) == expected


def test_a_batchs_jobs_are_counted_as_single_calls(stack: Stack) -> None:
    run = uuid.uuid4().hex
    jobs = [("echo", {"run": run, "i": i}) for i in range(3)]
    stack.call(*jobs[0]).raise_for_status()  # stored: the batch finds it

    def batch_body() -> bytes:
        items = []
        for name, data in jobs:
            path, body = call_path(name, data)
            items.append({"function": name, "hash": path.rsplit("hash=", 1)[1], "body": body.decode()})
        return json.dumps({"jobs": items}).encode()

    before = stack.scrape()
    answer = requests.post(
        stack.url + "/batch", data=batch_body(), headers={"Content-Type": "application/json"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    assert [r["headers"]["x-cache"] for r in answer.json()["results"]] == ["HIT", "MISS", "MISS"]
    counted = delta(stack.scrape(), before)
    assert counted['js_host_proxy_requests_total{cache="HIT",function="echo"}'] == 1
    assert counted['js_host_proxy_requests_total{cache="MISS",function="echo"}'] == 2


def test_the_metrics_text_parses_and_has_every_family(stack: Stack) -> None:
    stack.call("echo", {"families": 1})
    answer = requests.get(stack.metrics_url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert answer.headers["Cache-Control"] == "no-store"
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    # The parser names counters without their _total.
    for name, kind in {
        "js_host_proxy_requests": "counter",
        "js_host_proxy_coalesced_waiters": "counter",
        "js_host_proxy_stale_answers": "counter",
        "js_host_proxy_upstream_errors": "counter",
        "js_host_proxy_cache_evictions": "counter",
        "js_host_proxy_upstream_duration_seconds": "histogram",
        "js_host_proxy_cache_entries": "gauge",
        "js_host_proxy_cache_bytes": "gauge",
        "js_host_proxy_upstream_up": "gauge",
    }.items():
        assert families[name].type == kind, name
    up = {s.labels["upstream"]: s.value for s in families["js_host_proxy_upstream_up"].samples}
    assert up == {f"http://127.0.0.1:{stack.host_port}": 1.0}
    assert families["js_host_proxy_cache_entries"].samples[0].value >= 1
    assert families["js_host_proxy_cache_bytes"].samples[0].value > 0
    # The private directory made for the server.
    assert stack.multiproc_dir.stat().st_mode & 0o777 == 0o700


def test_metrics_are_on_their_own_socket_behind_the_token(stack: Stack) -> None:
    public = requests.get(stack.url + "/metrics")
    assert public.status_code == 404
    assert "JS_HOST_PROXY_METRICS_BIND" in public.text
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": TOKEN}):
        refused = requests.get(stack.metrics_url + "/metrics", headers=headers)
        assert refused.status_code == 401, headers
        assert "JS_HOST_PROXY_METRICS_TOKEN" in refused.text
    path, body = call_path("echo", {"metrics socket": 1})
    assert requests.post(stack.metrics_url + path, data=body).status_code == 404
    assert requests.get(stack.metrics_url + "/health").text == "ok\n"
    assert requests.get(stack.url + "/health").text == "ok\n"


def test_the_metrics_socket_is_the_accepted_connections_own_address(stack: Stack, tmp_path: Path) -> None:
    """A request on a unix public socket whose Host names the metrics socket (gunicorn then
    sets SERVER_NAME and SERVER_PORT from it) is a public one: the accepted socket says."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(tmp_path / "public.sock"))
    unix.listen()
    with listener, unix, socket.create_connection(("127.0.0.1", port)), socket.socket(socket.AF_UNIX) as peer:
        on_metrics = listener.accept()[0]
        peer.connect(str(tmp_path / "public.sock"))
        on_public = unix.accept()[0]
        forged = {"SERVER_NAME": "127.0.0.1", "SERVER_PORT": str(port)}
        with on_metrics, on_public, in_process_proxies(f"http://127.0.0.1:{stack.host_port}") as make:
            proxy = make(metrics_bind=f"127.0.0.1:{port}")
            public = proxy.client.get("/metrics", environ_overrides={**forged, "gunicorn.socket": on_public})
            assert public.status_code == 404
            assert "served on JS_HOST_PROXY_METRICS_BIND only" in public.text
            # In-process (no gunicorn socket): no request is on the metrics socket.
            assert proxy.client.get("/metrics", environ_overrides=forged).status_code == 404
            assert (
                proxy.client.get("/metrics", environ_overrides={"gunicorn.socket": on_metrics}).status_code
                == 200
            )


def test_request_ids_are_echoed_and_in_the_json_log_lines(stack: Stack) -> None:
    data = {"request id": uuid.uuid4().hex}
    miss = stack.call("echo", data, **{"X-Request-Id": "client-1.a:b_c"})
    assert (miss.headers["X-Cache"], miss.headers["X-Request-Id"]) == ("MISS", "client-1.a:b_c")
    hit = stack.call("echo", data, **{"X-Request-Id": "client-2"})
    assert (hit.headers["X-Cache"], hit.headers["X-Request-Id"]) == ("HIT", "client-2")
    for invalid in ("has space", "x" * 129, "é"):
        answer = stack.call("echo", data, **{"X-Request-Id": invalid.encode().decode("latin-1")})
        assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["X-Request-Id"]), invalid
    assert re.fullmatch(r"[0-9a-f]{32}", stack.call("echo", data).headers["X-Request-Id"])
    assert re.fullmatch(r"[0-9a-f]{32}", requests.get(stack.url + "/health").headers["X-Request-Id"])

    def line_of(rid: str) -> dict[str, Any] | None:
        """The call line (gunicorn's access line) of the request ``rid``."""
        calls = [x for x in stack.json_lines() if x["logger"] == "gunicorn.access"]
        return next((x for x in calls if x.get("request_id") == rid), None)

    line = wait_for(lambda: line_of("client-1.a:b_c"))
    assert line["function"] == "echo"
    assert (line["status"], line["cache"], line["level"], line["method"]) == (200, "MISS", "info", "POST")
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert datetime.fromisoformat(line["time"].replace("Z", "+00:00")).tzinfo is not None
    assert wait_for(lambda: line_of("client-2"))["cache"] == "HIT"
    # Every line of the log is one JSON object with the common fields: the master's, the
    # workers' and the proxy's own lines too.
    lines = stack.json_lines()
    assert all({"time", "level", "message"} <= set(line) for line in lines)
    assert any(line["logger"] == "gunicorn.error" for line in lines)
    assert any(line["logger"].startswith("js_host_proxy") for line in lines)


def test_a_function_label_is_a_name_the_host_answered(stack: Stack) -> None:
    """A client's made-up names, refused by the proxy (405, wrong hash, too large, a batch's
    wrong hash) or by the host (404), all count as _unknown: no label of theirs."""
    with in_process_proxies(f"http://127.0.0.1:{stack.host_port}") as make:
        proxy = make(max_body=1000)
        metrics = proxy.app.observer.metrics
        assert metrics is not None
        path, body = call_path("made-up-0", {})
        assert proxy.client.get("/function/made-up-1").status_code == 405
        wrong = path.replace("made-up-0", "made-up-2").replace("hash=", "hash=0")
        assert proxy.client.post(wrong, data=body, content_type="application/json").status_code == 400
        big = proxy.client.post("/function/made-up-3", data=b"x" * 2000, content_type="application/json")
        assert big.status_code == 413
        assert proxy.client.post(path, data=body, content_type="application/json").status_code == 404
        job = {"function": "made-up-4", "hash": "0" * 40, "body": "{}"}
        answer = proxy.client.post("/batch", json={"jobs": [job, {"function": "made-up-5", "body": "{}"}]})
        assert [r["status"] for r in answer.json["results"]] == [400, 404]
        # A real function's refusal before any answer of it is _unknown too; after one, its own.
        assert proxy.client.get("/function/echo").status_code == 405
        assert proxy.call("echo", {"label": 1}).status_code == 200
        assert proxy.client.get("/function/echo").status_code == 405
        counted = {
            (s.labels["cache"], s.labels["function"]): s.value
            for family in text_string_to_metric_families(metrics.render().decode())
            if family.name == "js_host_proxy_requests"
            for s in family.samples
            if s.name.endswith("_total")
        }
        assert counted == {
            ("NONE", "_unknown"): 5,
            ("MISS", "_unknown"): 1,
            ("BYPASS", "_unknown"): 1,
            ("MISS", "echo"): 1,
            ("NONE", "echo"): 1,
        }


def test_the_request_id_is_forwarded_to_the_host() -> None:
    recording = RecordingServer(["echo"])
    try:
        with in_process_proxies(recording.url) as make:
            proxy = make()
            given = proxy.call("echo", {"a": 1}, headers={"X-Request-Id": "from-the-client"})
            made = proxy.call("echo", {"a": 2}, headers={"X-Request-Id": "not valid!"})
            assert given.headers["X-Request-Id"] == "from-the-client"
            sent = [r["headers"].get("x-request-id") for r in recording.function_requests()]
            # Made unique per upstream request: the client's, then "." and 16 hex digits.
            for upstream_id, client_id in zip(sent, ["from-the-client", made.headers["X-Request-Id"]]):
                assert re.fullmatch(re.escape(client_id) + r"\.[0-9a-f]{16}", upstream_id), upstream_id
            assert len(sent) == 2
    finally:
        recording.close()


def test_readiness_follows_the_upstream(stack: Stack) -> None:
    assert requests.get(stack.url + "/health?ready").status_code == 200
    assert requests.get(stack.metrics_url + "/ready").status_code == 200
    stack.host.stop()
    try:
        # A list: a Response with status 503 is falsy.
        down = wait_for(lambda: [r for r in [requests.get(stack.url + "/ready")] if r.status_code == 503])[0]
        assert f"http://127.0.0.1:{stack.host_port}" in down.text
        assert down.headers["Cache-Control"] == "no-store"
        assert requests.get(stack.url + "/health").status_code == 200  # alive all the same
        up = f'js_host_proxy_upstream_up{{upstream="http://127.0.0.1:{stack.host_port}"}}'
        wait_for(lambda: stack.scrape()[up] == 0)  # each worker reuses its last check for a second
    finally:
        stack.start_host()
    wait_for(lambda: requests.get(stack.url + "/health?ready").status_code == 200)
    wait_for(lambda: stack.scrape()[up] == 1)


@pytest.mark.parametrize("cache", ["memory", "file"])
def test_cache_size_and_evictions_are_counted(cache: str, tmp_path: Path) -> None:
    recording = RecordingServer(["echo"])
    try:
        with in_process_proxies(recording.url) as make:
            url = "memory://" if cache == "memory" else f"file://{tmp_path}/cache"
            proxy = make(cache_url=url, max_size=1000)  # a few entries of ~150 bytes
            for i in range(20):
                assert proxy.call("echo", {"i": i}).headers["X-Cache"] == "MISS"
            families = {
                f.name: f.samples
                for f in text_string_to_metric_families(proxy.client.get("/metrics").get_data(as_text=True))
            }
            evicted = families["js_host_proxy_cache_evictions"][0].value
            entries = families["js_host_proxy_cache_entries"][0].value
            size = families["js_host_proxy_cache_bytes"][0].value
            assert evicted > 0 and entries + evicted == 20
            assert 0 < size <= 1000
    finally:
        recording.close()


def test_upstream_credentials_are_never_shown() -> None:
    with in_process_proxies("http://user:s3cret@127.0.0.1:1") as make:
        proxy = make()
        ready = proxy.client.get("/ready")
        assert ready.status_code == 503 and "http://127.0.0.1:1 (" in ready.get_data(as_text=True)
        text = proxy.client.get("/metrics").get_data(as_text=True)
        assert 'js_host_proxy_upstream_up{upstream="http://127.0.0.1:1"} 0.0' in text
        assert "s3cret" not in ready.get_data(as_text=True) + text


def test_a_given_multiprocess_dir_must_be_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its *.db files are deleted at start: a folder others can use (e.g. shared with another
    program's metrics) is refused, naming the setting."""
    from js_host.exceptions import ConfigError
    from js_host_proxy.metrics import prepare_multiprocess_dir

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    (shared / "counter_1.db").write_bytes(b"")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(shared))
    with pytest.raises(ConfigError, match="PROMETHEUS_MULTIPROC_DIR") as refused:
        prepare_multiprocess_dir("127.0.0.1:8000")
    assert "accessible by other users" in str(refused.value)
    assert (shared / "counter_1.db").exists()
    shared.chmod(0o700)
    (shared / "notes.txt").write_text("kept")
    assert prepare_multiprocess_dir("127.0.0.1:8000") == str(shared)
    assert sorted(p.name for p in shared.iterdir()) == ["notes.txt"]
    # A missing one is made, private.
    made = tmp_path / "made" / "metrics"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(made))
    assert prepare_multiprocess_dir("127.0.0.1:8000") == str(made)
    assert made.stat().st_mode & 0o777 == 0o700
