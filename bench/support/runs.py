"""Timed runs: calls in a loop, calls in threads, and their statistics.

Stdlib only: bench/compare_legacy.py imports this in the 2015 stack's venv.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Callable

Call = Callable[[], object]
#: Makes one thread's call (its own connection, context, ...).
MakeCall = Callable[[], Call]


def run_threads(make: MakeCall, threads: int, seconds: float) -> tuple[int, float]:
    """Calls answered by ``threads`` threads in ``seconds`` (each with its own ``make()``,
    called once first to connect and warm up), and the wall time they took."""
    calls = [make() for _ in range(threads)]
    for call in calls:
        call()
    counts = [0] * threads
    stop = threading.Event()
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            while not stop.is_set():
                calls[i]()
                counts[i] += 1
        except BaseException as err:  # raised below: a failing subject is not a figure
            errors.append(err)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return sum(counts), time.perf_counter() - start


def threaded_per_call(make: MakeCall, threads: int, seconds: float) -> float:
    """Seconds per call: wall time / calls answered by ``threads`` threads in ``seconds``
    (with several threads, the inverse of the throughput)."""
    answered, elapsed = run_threads(make, threads, seconds)
    return elapsed / max(1, answered)


def throughput(make: MakeCall, threads: int, seconds: float, rounds: int = 1) -> float:
    """Median over rounds of the calls per second of ``threads`` threads."""
    rates = []
    for _ in range(rounds):
        answered, elapsed = run_threads(make, threads, seconds)
        rates.append(answered / elapsed)
    return statistics.median(rates)


def timed(call: Call, n: int) -> float:
    """Mean seconds per call of ``n`` calls in a row."""
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n


def alternate(base: Call, call: Call, n: int, rounds: int) -> tuple[float, float, float]:
    """Seconds per call of ``base`` and ``call`` and their ratio, medians over rounds.

    The two take turns round by round, so that load from other processes on the
    machine weighs on both alike; the ratio is the median of the rounds' ratios.
    """
    for _ in range(max(50, n // 10)):
        base()
        call()
    base_times, times = [], []
    for _ in range(rounds):
        base_times.append(timed(base, n))
        times.append(timed(call, n))
    ratios = [t / b for t, b in zip(times, base_times)]
    return statistics.median(base_times), statistics.median(times), statistics.median(ratios)


def per_call(call: Call, n: int, rounds: int) -> float:
    """Median over rounds of the mean seconds per call."""
    return alternate(call, call, n, rounds)[1]


def seconds_to(action: Call) -> float:
    """Wall time of one ``action()``."""
    start = time.perf_counter()
    action()
    return time.perf_counter() - start
