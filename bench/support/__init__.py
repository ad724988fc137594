"""What the benchmark scripts share: owned processes, threaded runs, wrk, tables, the
command line, their sections of docs/bench.md.

The scripts run as ``python3 bench/<script>.py``, so ``bench/`` is first on
``sys.path`` and ``import support`` finds this package. Every module here is
stdlib only except ``support.client`` and ``support.proxies`` (which measure this
project and import it): ``bench/compare_legacy.py`` runs in the 2015 stack's venv,
where another ``js_host`` is installed, and imports ``support.processes`` and
``support.runs`` from there.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
# js-host 0.11 prints a deprecation warning on Node 20, which its own manager takes for
# a failed start; the environment of every node process the benchmarks start.
NODE_ENV = {**os.environ, "NODE_NO_WARNINGS": "1"}
#: The Node hosts: this project's bundled one and js-host 0.11.7 from npm (the reference).
BINS = {
    "bundled": ROOT / "js_host" / "node" / "bin" / "js-host.js",
    "npm-0.11": ROOT / "tests" / "npm" / "node_modules" / "js-host" / "bin" / "js-host.js",
}


def import_this_checkout() -> None:
    """Put the checkout's root first on ``sys.path``, so that the ``js_host`` and
    ``js_host_proxy`` measured are this checkout's, not another one installed in the
    environment. Called on import by the modules that measure the project (never in
    the 2015 stack's venv, whose ``js_host`` is the 2015 client)."""
    if sys.path[:1] != [str(ROOT)]:
        sys.path.insert(0, str(ROOT))
