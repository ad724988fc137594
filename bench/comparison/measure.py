"""Taking bench/compare.py's figures: per-call times paired with the floor, the 2015
stack in its venv, and the start-up times."""

from __future__ import annotations

import itertools
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

from support.client import FLOOR_ECHO, SMALL, cold_start, configure_runs, function_on, host_cmd, raw_client
from support.processes import NodeServer, fresh_log
from support.runs import seconds_to, threaded_per_call
from support.tables import fmt_time

from .names import DIRECT, EXECJS, FLOOR, LEGACY, PAYLOADS, RACER, THREADS
from .results import Figures, Results, add
from .subjects import ECHO_JS, Legacy, Subjects


def calls(results: Results, subjects: Subjects, started_at: float) -> None:
    """Seconds per call of every subject, payload and thread count, each measurement right
    after one of the floor with the same payload and thread count (so that load from
    elsewhere weighs on both alike); a subject that fails is recorded and left out."""
    print(
        f"per call: {results.rounds} rounds x {results.seconds} s, each subject right after the floor",
        flush=True,
    )
    figures: dict[str, Figures] = {name: {} for name in subjects.makers}
    ratios: dict[str, Figures] = {name: {} for name in subjects.makers}
    for name in subjects.makers:
        results.subject(name)
    floor = subjects.makers[FLOOR]
    for r in range(results.rounds):
        for payload, threads in itertools.product(PAYLOADS, THREADS):
            for name, make in subjects.makers.items():
                if name == FLOOR or results.failed(name):
                    continue
                try:
                    base = threaded_per_call(floor(payload), threads, results.seconds)
                    value = threaded_per_call(make(payload), threads, results.seconds)
                except Exception as err:
                    results.fail(name, f"{type(err).__name__}: {err}")
                    print(f"  {name}: failed: {err}", file=sys.stderr)
                    continue
                add(figures[FLOOR], payload, threads, base)
                add(figures[name], payload, threads, value)
                add(ratios[name], payload, threads, value / base)
        print(f"  round {r + 1} done ({time.monotonic() - started_at:.0f} s)", flush=True)
    for name in subjects.makers:
        if not results.failed(name):
            results.subjects[name].calls = figures[name]
            results.subjects[name].ratios = ratios[name]


def legacy(results: Results, subjects: Subjects) -> None:
    """The 2015 stack, measured by bench/compare_legacy.py in its venv."""
    print("the 2015 stack ...", flush=True)
    if results.failed(LEGACY) and LEGACY in results.subjects:
        return  # not installed: the reason is in the results already
    try:
        subjects.legacy = Legacy(subjects.tmp)
        threads = list(THREADS)
        measured = subjects.legacy.run(threads=threads, seconds=results.seconds, rounds=results.rounds)
        warm = [subjects.legacy.run(warm=True)["warm"] for _ in range(results.rounds)]
        figures: Figures = {}
        for key, runs in measured["calls"].items():
            payload, count = key.rsplit(" ", 1)
            figures.setdefault(payload, {})[count] = runs
        subject = results.subject(LEGACY)
        subject.calls, subject.cold, subject.warm = figures, [measured["cold"]], warm
    except Exception as err:
        results.fail(LEGACY, str(err))
        print(f"  the 2015 stack failed: {err}", file=sys.stderr)
    finally:
        if subjects.legacy:
            subjects.legacy.stop()


def cold_spawn(cmd: list[str], logdir: Path, call: Callable[[NodeServer], object]) -> float:
    """Seconds from spawning ``cmd`` to the first answer of ``call``."""
    start = time.perf_counter()
    server = NodeServer(cmd, fresh_log(logdir, "cold"))
    try:
        call(server)
        return time.perf_counter() - start
    finally:
        server.stop()


def new_context(name: str) -> Any:
    """A PyExecJS or mini-racer context with the echo function."""
    if name == EXECJS:
        import execjs

        return execjs.compile(ECHO_JS)
    from py_mini_racer import MiniRacer

    context = MiniRacer()
    context.eval(ECHO_JS)
    return context


def engine_start_up(name: str) -> tuple[float, float]:
    """PyExecJS or mini-racer: (create the context and call it, call it again)."""
    start = time.perf_counter()
    context = new_context(name)
    context.call("echo", SMALL)
    cold = time.perf_counter() - start
    return cold, seconds_to(lambda: context.call("echo", SMALL))


def start_up(results: Results, subjects: Subjects) -> None:
    """Cold: from nothing to the first answer; warm: a new Python process connecting to a
    running host (PyExecJS, mini-racer: the second call on a context)."""
    print("start-up ...", flush=True)
    rounds, logdir, tmp = results.rounds, subjects.logdir, subjects.tmp
    floor_cmd = ["node", str(FLOOR_ECHO)]
    results.subject(FLOOR).cold = [
        cold_spawn(floor_cmd, logdir, lambda s: raw_client(s.port, b"{}")()) for _ in range(rounds)
    ]
    direct = results.subject(DIRECT)
    direct.cold = [
        cold_spawn(host_cmd(), logdir, lambda s: function_on(s.url).call(text="x")) for _ in range(rounds)
    ]
    # The first reads the config with node; the others find the host's status cached.
    connects = configure_runs("bundled", tmp / "warm", logdir, rounds + 1)
    direct.warm = [run["first_answer"] for run in connects[1:]]
    manager = []
    for i in range(rounds):
        try:
            manager.append(cold_start("bundled", tmp / f"manager-{i}"))
        except Exception as err:
            print(f"  cold start with the manager failed: {err}", file=sys.stderr)
    if manager:
        direct.note = (
            f"cold = spawn the host and call it; with USE_MANAGER=True (spawn the manager, "
            f"which spawns the host) it is {fmt_time(statistics.median(manager))}"
        )
        direct.cold_manager = manager
    for name in (EXECJS, RACER):
        if not results.failed(name):
            pairs = [engine_start_up(name) for _ in range(rounds)]
            results.subjects[name].cold = [cold for cold, _ in pairs]
            results.subjects[name].warm = [warm for _, warm in pairs]
