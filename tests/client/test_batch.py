"""call_many against real hosts (each kind: bundled, pooled, and npm js-host 0.11, which has no
/batch): results in order, each call's own outcome or exception, fallbacks per call, the local
cache, one request per batch (counted in the host's log), splitting, and single calls against a
host without the endpoint (remembered). One host per kind for the module."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from js_host.exceptions import ConfigError, ConnectionError, FunctionError, FunctionTimeout  # noqa: A004
from js_host.function import Function, call_many
from js_host.host import JSHost
from js_host.local_cache import LocalCache
from tests.support.client import bin_setting, write_config
from tests.support.processes import HOST_KINDS, NodeProcess, free_port, kind_args
from tests.support.waiting import wait_for

HOST_TIMEOUT_MS = 400


@pytest.fixture(scope="module", params=sorted(HOST_KINDS))
def kind_host(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """(kind, process, config) of a host of each kind, for the whole module."""
    kind = request.param
    folder = tmp_path_factory.mktemp(f"batch-{kind}")
    config = write_config(folder, functionTimeout=HOST_TIMEOUT_MS)
    process = NodeProcess(HOST_KINDS[kind], config, "--port", "0", *kind_args(kind), logdir=folder)
    process.start()
    yield kind, process, config
    process.stop()


@pytest.fixture
def host(kind_host: tuple) -> JSHost:
    """A new JSHost (nothing remembered) on the module's host of this kind."""
    kind, process, config = kind_host
    return JSHost(str(config), url_override=process.url, bin_path=bin_setting(kind).get("BIN_PATH"))


def requests_seen(process: NodeProcess) -> tuple[int, int]:
    """(POST /batch, POST /function/) lines in the host's log, counted after one more call
    (to hello_world), once its line is there: the lines of every earlier request are too."""
    markers = process.log.count("POST /function/hello_world")
    Function("hello_world", host=JSHost(url_override=process.url)).call()
    # The bundled host logs "Host: POST <url> <status> <ms>", npm's "Host: POST <url>".
    wait_for(lambda: process.log.count("POST /function/hello_world") > markers)
    log = process.log
    return len(re.findall(r"POST /batch\b", log)), log.count("POST /function/")


def test_results_in_order_each_the_call_s_outcome(host: JSHost, kind_host: tuple) -> None:
    echo, double = Function("echo", host=host), Function("double", host=host)
    calls = [
        (echo, {"text": "first"}),
        (double, {}),  # a JavaScript error
        (Function("hello_world", host=host), {"name": "h\u00e9llo \u2603"}),
        (Function("nope", host=host), {}),  # unknown: refused before anything is sent
        (double, {"number": 21}),
        (echo, {"text": "x" * 5000}),
    ]
    results = call_many(calls)
    assert results[0] == "first"
    assert isinstance(results[1], FunctionError)
    assert results[1].js_message == "No number was provided"
    with pytest.raises(FunctionError) as single:
        double.call()
    assert type(results[1]) is type(single.value) and results[1].js_message == single.value.js_message
    assert results[2] == "Hello, h\u00e9llo \u2603!"
    assert isinstance(results[3], ConfigError) and "'nope'" in str(results[3])
    assert results[4:] == ["42", "x" * 5000]
    assert call_many([]) == []


def test_one_request_per_batch_and_single_calls_without_the_endpoint(host: JSHost, kind_host: tuple) -> None:
    kind, process, _ = kind_host
    echo = Function("echo", host=host)
    before = requests_seen(process)
    assert call_many([(echo, {"text": str(i)}) for i in range(5)]) == [str(i) for i in range(5)]
    assert call_many([(echo, {"text": str(i)}) for i in range(3)]) == [str(i) for i in range(3)]
    batches, singles = requests_seen(process)
    if kind == "npm-0.11":
        # It answered 404 to the first batch; the host is remembered: no second try.
        assert (batches - before[0], singles - before[1]) == (1, 5 + 3 + 1)
    else:
        assert (batches - before[0], singles - before[1]) == (2, 1)


def test_more_jobs_than_a_batch_takes_are_split(host: JSHost, kind_host: tuple) -> None:
    kind, process, _ = kind_host
    echo = Function("echo", host=host)
    before = requests_seen(process)
    assert call_many([(echo, {"text": str(i)}) for i in range(230)]) == [str(i) for i in range(230)]
    batches, _ = requests_seen(process)
    assert batches - before[0] == (1 if kind == "npm-0.11" else 3)  # 100 + 100 + 30


def test_timeouts_and_fallbacks_are_per_call(host: JSHost, kind_host: tuple) -> None:
    # The host stops the call at its functionTimeout (npm 0.11 has none: the client's timeout).
    slow = Function("sleep", host=host, timeout=1.5)
    late = Function("sleep", host=host, timeout=1.5, fallback=lambda err: f"late ({type(err).__name__})")
    results = call_many(
        [(slow, {"ms": 5000}), (Function("echo", host=host), {"text": "ok"}), (late, {"ms": 5000})]
    )
    assert isinstance(results[0], FunctionTimeout), results
    assert results[1:] == ["ok", "late (FunctionTimeout)"]
    # A JavaScript error is never replaced by the fallback.
    failing = Function("double", host=host, fallback="never used")
    (error,) = call_many([(failing, {})])
    assert isinstance(error, FunctionError)


def test_the_local_cache_answers_its_calls_without_sending_them(host: JSHost, kind_host: tuple) -> None:
    _, process, _ = kind_host
    host.local_cache = LocalCache(1 << 20, 60.0)
    echo = Function("echo", host=host)
    calls = [(echo, {"text": f"kept {i}"}) for i in range(4)]
    assert call_many(calls) == [f"kept {i}" for i in range(4)]
    before = requests_seen(process)
    assert call_many(calls) == [f"kept {i}" for i in range(4)]
    assert echo.call(text="kept 2") == "kept 2"
    assert requests_seen(process) == (before[0], before[1] + 1)  # the marker call only


def test_a_host_that_is_down_fails_each_call(tmp_path: Path) -> None:
    host = JSHost(str(write_config(tmp_path, port=free_port())))
    results = call_many(
        [(Function("echo", host=host), {"text": "a"}), (Function("echo", host=host, fallback="later"), {})]
    )
    assert isinstance(results[0], ConnectionError)
    assert results[1] == "later"


def test_a_host_that_is_down_is_tried_once_per_call_many(tmp_path: Path, monkeypatch) -> None:
    host = JSHost(str(write_config(tmp_path, port=free_port())))
    tries: list[int] = []
    real = host._connection.connect

    def connect(*args: object, **kwargs: object) -> None:
        tries.append(1)
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(host._connection, "connect", connect)
    results = call_many([(Function("echo", host=host), {"n": n}) for n in range(20)])
    assert all(isinstance(result, ConnectionError) for result in results)
    assert len(tries) == 1  # not once per call


def test_bad_arguments_raise_at_once(host: JSHost) -> None:
    with pytest.raises(TypeError, match="argument 'when'"):
        call_many(
            [(Function("echo", host=host), {"text": "a"}), (Function("echo", host=host), {"when": object()})]
        )
    with pytest.raises(TypeError, match="item 0"):
        call_many([Function("echo", host=host)])  # type: ignore[list-item]


def test_a_host_with_a_lower_max_batch_jobs(tmp_path: Path, start_host) -> None:
    # The host refuses the batch as a whole (400): its calls are sent one by one instead.
    process = start_host(write_config(tmp_path, maxBatchJobs=2))
    host = JSHost(url_override=process.url)
    echo = Function("echo", host=host)
    assert call_many([(echo, {"text": str(i)}) for i in range(3)]) == ["0", "1", "2"]
