"""The host's ``GET /metrics`` read by ``prometheus_client``'s own parser, as Prometheus
would read it: the families, their types, and the counts of a few known calls (a label
value with a quote, a backslash and a line feed among them), for both kinds of host."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.client import write_config
from tests.support.processes import POOL_WORKERS, NodeProcess
from tests.support.waiting import wait_for

ODD_NAME = 'a "quoted\\ name\nwith a line feed'


def post(url: str, data: bytes = b"{}") -> int:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        err.close()
        return err.code


def get_status(host: NodeProcess) -> dict:
    with urllib.request.urlopen(f"{host.url}/status", timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("impl", ["bundled", "pool"])
def test_metrics_parse_with_prometheus_client(
    impl: str, tmp_path: Path, start_host: Callable[..., NodeProcess]
) -> None:
    host = start_host(write_config(tmp_path), impl=impl)
    if impl == "pool":
        wait_for(lambda: get_status(host)["workers"]["ready"] == POOL_WORKERS, what="every worker ready")
    for _ in range(3):
        assert post(f"{host.url}/function/echo") == 200
    assert post(f"{host.url}/function/double") == 500
    assert post(f"{host.url}/function/{urllib.parse.quote(ODD_NAME, safe='')}") == 404

    with urllib.request.urlopen(f"{host.url}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = response.read().decode("utf-8")
    families = {family.name: family for family in text_string_to_metric_families(text)}

    # The parser names a counter without its _total suffix.
    assert families["js_host_calls"].type == "counter"
    calls = {
        (s.labels["function"], s.labels["status"]): s.value
        for s in families["js_host_calls"].samples
        if s.name == "js_host_calls_total"
    }
    assert calls == {("echo", "200"): 3, ("double", "500"): 1, (ODD_NAME, "404"): 1}

    durations = families["js_host_call_duration_seconds"]
    assert durations.type == "histogram"
    counts = {s.labels["function"]: s.value for s in durations.samples if s.name.endswith("_count")}
    assert counts == {"echo": 3, "double": 1}

    assert families["js_host_event_loop_delay_seconds"].type == "gauge"
    if impl == "pool":
        workers = {s.labels["state"]: s.value for s in families["js_host_workers"].samples}
        assert workers == {"busy": 0, "idle": POOL_WORKERS}
        assert [s.value for s in families["js_host_queue_length"].samples] == [0]
        assert len(families["js_host_worker_heap_used_bytes"].samples) == POOL_WORKERS
