#!/usr/bin/env python3
"""js-host against the alternatives, side by side, in one run on this machine.

    python3 bench/compare.py [--seconds 0.5] [--rounds 3] [--no-install]

Measured (a 50-byte and a 100 KB echo; 1, 2 and 8 threads; cold and warm start):

- the floor: a bare ``node:http`` echo (bench/client_floor_echo.js) called over
  a kept-alive raw socket with hand-written request bytes;
- this project: ``Function.call`` to the host directly, and through the caching
  proxy (gunicorn, file cache) on a hit, on a miss and on a stale answer served
  while its refresh runs (stale-while-revalidate);
- nginx ``proxy_cache`` in front of the same host, hit and miss, called with the
  same ``Function.call`` (the bar for the proxy);
- the 2015 stack: PyPI js-host==0.2.0 + npm js-host@0.12.0 (bench/.venv-legacy and
  bench/legacy/node_modules, measured by bench/compare_legacy.py in that venv);
- PyExecJS (a Node process per call) and mini-racer (V8 in-process, no require).

Per-call time = wall time / calls answered by all threads (so with 8 threads it
is the inverse of throughput); the median over rounds, the subjects taking turns
within each round so that load from elsewhere weighs on all alike. Ratios are
against the floor at the same payload and thread count. Cold = from nothing to
the first answer (spawn the host / manager; create the context), warm = a new
Python process connecting to a running host (for PyExecJS and mini-racer: the
second call on the context).

Writes bench/results/compare.json (raw figures) and compare.png, and copies the
chart and the table to docs/bench.png and docs/bench.md. Installs what it needs
(pip: PyExecJS, mini-racer, matplotlib; the legacy venv and npm packages; apt:
nginx) unless --no-install; what cannot be installed or run is "n/a" with the reason.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from comparison import measure, subjects
from comparison.report import RESULTS, report
from comparison.results import Results, machine
from support import options
from support.client import quiet


def run(results: Results, missing: dict[str, str | None], started_at: float) -> None:
    """Start the subjects in a temporary folder, take the figures, stop the subjects."""
    for name, reason in missing.items():
        if reason:
            results.fail(name, reason)
    tmp = Path(tempfile.mkdtemp(prefix="js-host-compare-"))
    os.chmod(tmp, 0o755)  # nginx workers (nobody) must reach their prefix
    os.environ["JS_HOST_RUNTIME_DIR"] = str(tmp / "runtime")
    started = subjects.Subjects(tmp, tmp / "logs")
    started.logdir.mkdir()
    try:
        subjects.start(started, results, missing)
        measure.calls(results, started, started_at)
        measure.legacy(results, started)
        measure.start_up(results, started)
    finally:
        started.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = options.parser(__doc__, first_line_only=True)
    parser.add_argument("--seconds", type=float, default=0.4, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (the median counts)")
    parser.add_argument("--no-install", action="store_true", help="do not install missing tools")
    args = parser.parse_args()
    started_at = time.monotonic()
    quiet()
    missing, chart_missing = subjects.install(allow=not args.no_install)
    results = Results(machine(), args.seconds, args.rounds)
    run(results, missing, started_at)
    report(results, chart_missing)
    print(
        f"\nwrote {RESULTS / 'compare.json'}, {RESULTS / 'compare.png'}, docs/bench.md, docs/bench.png "
        f"in {time.monotonic() - started_at:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
