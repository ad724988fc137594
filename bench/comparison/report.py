"""bench/compare.py's results as text: the table on stdout, docs/bench.md, and the files
under bench/results/."""

from __future__ import annotations

import json
import shutil
import statistics
from typing import Callable

from support import BENCH, ROOT
from support.docs import write_section
from support.tables import fmt_time, format_table

from . import names
from .chart import chart
from .results import Results

RESULTS = BENCH / "results"
DOCS = ROOT / "docs"


def cell(results: Results, name: str, payload: str, threads: int) -> str:
    """Median seconds per call and, in brackets, the ratio to the floor."""
    subject = results.subjects[name]
    value = subject.median_call(payload, threads)
    if subject.error is not None or value is None:
        return "n/a"
    paired = (subject.ratios or {}).get(payload, {}).get(str(threads))
    if name == names.FLOOR:
        ratio = 1.0
    elif paired:  # the median of each measurement's ratio to the floor measured just before it
        ratio = statistics.median(paired)
    else:
        ratio = value / results.subjects[names.FLOOR].median_call(payload, threads)
    return f"{fmt_time(value)} ({ratio:.1f}x)"


def start_cell(runs: list[float] | None) -> str:
    return fmt_time(statistics.median(runs)) if runs else "-"


def table(results: Results) -> list[list[str]]:
    rows = [["", *(f"{p} x{t}" for p in names.PAYLOADS for t in names.THREADS), "cold", "warm"]]
    for name in names.ORDER:
        if name not in results.subjects:
            continue
        subject = results.subjects[name]
        figures = [cell(results, name, p, t) for p in names.PAYLOADS for t in names.THREADS]
        rows.append([name, *figures, start_cell(subject.cold), start_cell(subject.warm)])
    return rows


def versus(results: Results, name: str, other: str) -> str | None:
    """``other``'s per-call time over ``name``'s, for each payload and thread count."""
    return compared(results, name, other, lambda a, b: f"{b / a:.1f}x", names.PAYLOADS)


def compared(
    results: Results, name: str, other: str, figure: Callable[[float, float], str], payloads: tuple[str, ...]
) -> str | None:
    """``figure(name's per-call time, other's)`` for each payload and thread count."""
    mine, theirs = results.subjects.get(name), results.subjects.get(other)
    if not (mine and mine.calls and theirs and theirs.calls):
        return None
    parts = []
    for payload in payloads:
        for threads in names.THREADS:
            a, b = mine.median_call(payload, threads), theirs.median_call(payload, threads)
            if a and b:
                parts.append(f"{payload} x{threads}: {figure(a, b)}")
    return ", ".join(parts) or None


def summary(results: Results) -> list[str]:
    lines = []
    for name, other, what in (
        (names.DIRECT, names.LEGACY, "Function.call -> host is faster than the 2015 stack by"),
        (names.DIRECT, names.EXECJS, "Function.call -> host is faster than PyExecJS by"),
        (names.NGINX_HIT, names.PROXY_HIT, "an nginx proxy_cache hit is faster than a js-host proxy hit by"),
        (names.PROXY_HIT, names.PROXY_STALE, "a stale-while-revalidate answer takes, in proxy hits"),
    ):
        figures = versus(results, name, other)
        if figures:
            lines.append(f"- {what}: {figures}")
    # The targets, each a ratio or a difference of two subjects measured in this run.
    for name, other, figure, payloads, what in (
        (
            names.LOCAL_HIT,
            names.NGINX_HIT,
            lambda a, b: f"{a / b:.2f}x",
            names.PAYLOADS,
            "a local cache hit over an nginx proxy_cache hit of the same call (target <= 0.3x)",
        ),
        (
            names.PROXY_MISS,
            names.DIRECT,
            lambda a, b: f"{(a - b) * 1000:+.2f} ms",
            names.PAYLOADS,
            "a miss through the proxy over a direct call (target <= +1.0 ms)",
        ),
        (
            names.PROXY_HIT,
            names.GUNICORN_FLOOR,
            lambda a, b: f"{b / a:.2f}x",
            names.PAYLOADS[:1],  # the floor answers a constant 24 bytes
            "proxy hits per second over the gunicorn floor's, same worker (target >= 0.9x)",
        ),
    ):
        figures = compared(results, name, other, figure, payloads)
        if figures:
            lines.append(f"- {what}: {figures}")
    return lines


def markdown(results: Results, rows: list[list[str]]) -> str:
    machine = results.machine
    out = [
        "# Benchmark: js-host against the alternatives",
        "",
        f"Measured by `python3 bench/compare.py` on {machine['date']} "
        f"({machine['cpus']} CPUs, Python {machine['python']}, Node {machine['node']}, "
        f"load average {machine.get('load', 0):.1f} at the start). "
        "Per-call time (wall time / calls of all threads, "
        f"median of {results.rounds} rounds of {results.seconds} s) and, in brackets, "
        "the ratio to the floor (a bare `node:http` echo over a raw kept-alive socket) at the same "
        "payload and thread count. Cold: from nothing to the first answer; warm: a new Python "
        "process connecting to a running host (PyExecJS, mini-racer: the second call).",
        "",
        "| " + " | ".join(["subject", *rows[0][1:]]) + " |",
        "|" + "---|" * len(rows[0]),
    ]
    out += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    out += ["", *summary(results)]
    subjects = results.subjects.items()
    notes = [f"- {name}: {s.error}" for name, s in subjects if s.error is not None]
    notes += [f"- {name}: {s.note}" for name, s in subjects if s.note]
    if notes:
        out += ["", *notes]
    out += ["", "![per-call time, log scale](bench.png)", ""]
    return "\n".join(out)


def report(results: Results, chart_missing: str | None) -> None:
    """Print the table, the summary and the notes; write the JSON, docs/bench.md and the
    chart (unless ``chart_missing`` says why there is none)."""
    rows = table(results)
    print()
    print(format_table(rows))
    for line in summary(results):
        print(line)
    for name, subject in results.subjects.items():
        if subject.error is not None:
            print(f"  n/a {name}: {subject.error}")
        if subject.note:
            print(f"  {name}: {subject.note}")
    RESULTS.mkdir(exist_ok=True)
    DOCS.mkdir(exist_ok=True)
    results.table = rows
    (RESULTS / "compare.json").write_text(json.dumps(results.to_json(), indent=1))
    write_section("compare", markdown(results, rows), DOCS / "bench.md")
    if chart_missing:
        print(f"no chart: {chart_missing}")
    else:
        chart(results, RESULTS / "compare.png")
        shutil.copy(RESULTS / "compare.png", DOCS / "bench.png")
