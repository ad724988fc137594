"""What a Python user of a host with a pool of workers observes: a runaway function is a
FunctionTimeout naming it and its limit, a worker that dies is a WorkerDied naming the
cause, and in both cases the next call is served; calls from 8 threads survive a worker
being killed; ``get_status()`` and ``get_workers()`` show the pool."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Callable

import pytest

from js_host.exceptions import FunctionError, FunctionTimeout, WorkerDied
from js_host.function import Function
from js_host.host import JSHost
from js_host.workers import WorkerPool
from tests.support.client import FIXTURES
from tests.support.proc import children
from tests.support.processes import BUNDLED_BIN, NPM_BIN, POOL_WORKERS, NodeProcess
from tests.support.threads import run_on_threads
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

POOL_CONFIG = FIXTURES / "pool.config.js"
FUNCTION_TIMEOUT_MS = 1000


def pooled_config(folder: Path, **props: object) -> Path:
    """tests/fixtures/client/pool.config.js in ``folder`` with ``props`` added."""
    extra = "".join(f"  {key}: {json.dumps(value)},\n" for key, value in props.items())
    path = folder / "pool.config.js"
    path.write_text(
        POOL_CONFIG.read_text().replace("module.exports = {\n", "module.exports = {\n" + extra, 1)
    )
    return path


@pytest.fixture
def start_pool(
    tmp_path: Path, start_host: Callable[..., NodeProcess]
) -> Callable[..., tuple[NodeProcess, JSHost]]:
    """``start_pool(**props)``: a host of 2 workers (functionTimeout 1 s, 128 MB a worker,
    unless ``props`` say otherwise) logging to host.log in tmp_path, once every worker is
    ready, and a JSHost on it."""

    def start(**props: object) -> tuple[NodeProcess, JSHost]:
        settings = {
            "workers": POOL_WORKERS,
            "functionTimeout": FUNCTION_TIMEOUT_MS,
            "maxWorkerMemory": "128mb",
            **props,
        }
        config = pooled_config(tmp_path, **settings)
        process = start_host(config, "--logfile", str(tmp_path / "host.log"))
        wait_for(lambda: ready_workers(process) == POOL_WORKERS, what="every worker ready")
        return process, JSHost(str(config), url_override=process.url, bin_path=str(BUNDLED_BIN))

    return start


@pytest.fixture
def pool_host(start_pool: Callable[..., tuple[NodeProcess, JSHost]]) -> tuple[NodeProcess, JSHost]:
    return start_pool()


def restarts(host: JSHost, cause: str | None = None) -> int:
    """Workers replaced so far (for ``cause``, or in all); counted once the old one is gone."""
    pool = host.get_workers()
    assert pool is not None
    return pool.total_restarts if cause is None else pool.restarts.get(cause, 0)


def ready_workers(process: NodeProcess) -> int:
    pool = JSHost(str(POOL_CONFIG), url_override=process.url, bin_path=str(BUNDLED_BIN)).get_workers()
    return pool.ready if pool is not None else 0


def echo(host: JSHost, **data: object) -> object:
    """The data, as the host's echo function sent it back."""
    return json.loads(Function("echo", host=host, timeout=30).call(**data))


def test_a_runaway_loop_is_a_timeout_naming_the_function_and_limit_then_calls_work(pool_host) -> None:
    _, host = pool_host
    for _ in range(POOL_WORKERS + 1):  # every worker in turn, and one of their replacements
        with pytest.raises(FunctionTimeout) as info:
            Function("spin", host=host, timeout=30).call()
        message = str(info.value)
        assert "spin" in message and str(FUNCTION_TIMEOUT_MS) in message, message
        assert echo(host, n=1) == {"n": 1}
    wait_for(lambda: restarts(host, "timeout") >= POOL_WORKERS + 1)


@pytest.mark.parametrize(
    ("function", "data", "cause"),
    [
        ("throw_later", {"message": "Thrown later"}, "uncaught exception"),
        ("exit", {"code": 3}, "exited"),
        ("hog", {}, "memory"),
    ],
    ids=["uncaught-async-exception", "process-exit", "out-of-memory"],
)
def test_a_dead_workers_call_names_the_cause_and_the_next_call_works(
    start_pool, function: str, data: dict[str, object], cause: str, tmp_path: Path
) -> None:
    _, host = start_pool(functionTimeout=60_000)  # filling a heap takes a while on a busy machine
    with pytest.raises(WorkerDied) as info:
        Function(function, host=host, timeout=60).call(**data)
    err = info.value
    assert isinstance(err, FunctionError)  # what code written for js-host 0.11 catches
    assert cause in err.cause, err.cause
    assert function in str(err) and cause in str(err) and "replaced" in str(err), str(err)
    assert str(tmp_path / "host.log") in str(err), "the message names the logfile"
    if function == "throw_later":
        assert "Thrown later" in err.cause
    for n in range(2 * POOL_WORKERS):  # each worker, the replacement included
        assert echo(host, n=n) == {"n": n}
    wait_for(lambda: restarts(host) >= 1)


def test_calls_from_8_threads_survive_a_worker_killed_under_them(pool_host) -> None:
    process, host = pool_host
    calls_per_thread = 150
    answers: dict[int, list[object]] = {n: [] for n in range(8)}
    failures: list[BaseException] = []
    done = threading.Semaphore(0)

    def work(thread: int) -> None:
        for i in range(calls_per_thread):
            try:
                answers[thread].append(echo(host, thread=thread, i=i))
            except WorkerDied as err:  # the one call the killed worker was running
                failures.append(err)
            except BaseException as err:
                failures.append(err)
                return
            done.release()

    killed: list[int] = []
    killer = threading.Thread(target=kill_a_worker_after, args=(process, done, 200, killed))
    killer.start()
    run_on_threads(work, 8, timeout=90)
    killer.join(30)
    assert killed, "no worker was killed"
    assert all(isinstance(err, WorkerDied) and "killed" in err.cause for err in failures), failures
    assert len(failures) <= 1, failures  # a worker runs one call at a time
    answered = sum(len(got) for got in answers.values())
    assert answered == 8 * calls_per_thread - len(failures)
    for thread, got in answers.items():
        expected = [{"i": i, "thread": thread} for i in range(calls_per_thread)]
        assert all(answer in expected for answer in got), got
        assert len({json.dumps(answer) for answer in got}) == len(got)
    wait_for(lambda: restarts(host, "signal") == 1)
    wait_for(lambda: ready_workers(process) == POOL_WORKERS, what="the killed worker replaced")


def kill_a_worker_after(
    process: NodeProcess, done: threading.Semaphore, calls: int, killed: list[int]
) -> None:
    """SIGKILL one of the host's worker processes once ``calls`` calls were answered."""
    for _ in range(calls):
        done.acquire(timeout=60)
    workers = sorted(children(process.pid))
    if workers:
        os.kill(workers[0], signal.SIGKILL)
        killed.append(workers[0])


def test_get_status_and_get_workers_show_the_pool(pool_host) -> None:
    _, host = pool_host
    status = host.get_status()  # live, through URL_OVERRIDE
    assert status["type"] == "Host" and status["workers"]["size"] == POOL_WORKERS
    pool = host.get_workers()
    assert isinstance(pool, WorkerPool)
    assert (pool.size, pool.ready, pool.busy, pool.queue) == (POOL_WORKERS, POOL_WORKERS, 0, 0)
    assert pool.total_restarts == 0 and pool.loaded_at
    with pytest.raises(WorkerDied):
        Function("exit", host=host, timeout=30).call()
    assert echo(host, after="exit") == {"after": "exit"}
    wait_for(lambda: restarts(host, "exit") == 1)


@pytest.mark.parametrize("kind", ["bundled", "npm-0.11"])
def test_get_workers_is_none_for_a_host_without_a_pool(
    kind: str, tmp_path: Path, start_host: Callable[..., NodeProcess]
) -> None:
    process = start_host(POOL_CONFIG, impl=kind)
    host = JSHost(
        str(POOL_CONFIG),
        url_override=process.url,
        bin_path=str(BUNDLED_BIN if kind == "bundled" else NPM_BIN),
    )
    assert host.get_workers() is None
    assert "workers" not in host.get_status()
