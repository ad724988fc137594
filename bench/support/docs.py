"""The benchmarks' sections of docs/bench.md: each script rewrites its own, between
``<!-- begin NAME -->`` and ``<!-- end NAME -->``, and leaves the others as they are;
the time a run started and the machine's load then, which the section's first lines give."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from . import ROOT

BENCH_MD = ROOT / "docs" / "bench.md"


def write_section(name: str, text: str, path: Path = BENCH_MD) -> None:
    """Put ``text`` in the section ``name`` of ``path`` (appended when it has none yet)."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{text.strip()}\n{end}"
    old = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(old):
        new = pattern.sub(lambda _match: block, old, count=1)
    else:
        new = f"{old.rstrip()}\n\n{block}\n" if old.strip() else f"{block}\n"
    path.write_text(new)


def run_started(*, show_load: bool = False) -> tuple[str, float]:
    """When the run starts (UTC, to the minute) and the load average then: other work on
    the machine weighs on every figure, so a section says how busy it was. ``show_load``
    prints the load at once, above the figures as they come."""
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    if show_load:
        print(f"load average at the start: {load:.1f}", flush=True)
    return started, load


def section_head(title: str, script: str, started: str, load: float, *, busy: str = "") -> str:
    """A section's heading and first sentence: which script measured it, when, and how busy the
    machine was (``busy`` adds to that); other work weighs on every figure, the ratios less."""
    return (
        f"## {title}: `bench/{script}`\n\n"
        f"Measured by `python3 bench/{script}` on {started} ({os.cpu_count()} CPUs shared with other "
        f"work, load average {load:.1f} at the start{busy}; the ratios are within this one run). "
    )


def write_own_section(name: str, text: str) -> None:
    """``write_section`` into docs/bench.md, and say so under the figures."""
    write_section(name, text)
    print("\nwritten to docs/bench.md")
