"""What the proxy's metrics cost a cache hit: the same proxy with them on and off, same run.

    python3 bench/proxy_metrics.py [--duration 3] [--rounds 5] [--connections 16] [--no-docs]

Two gunicorn proxies (2 workers, the file cache, every request a hit) in front of one
host: one with ``JS_HOST_PROXY_METRICS=1`` (the default: every request counted into
prometheus_client's multiprocess files, plus the request id every answer carries), one
with ``JS_HOST_PROXY_METRICS=0``. wrk drives each in turn within every round, so that
other load on the machine weighs on both alike; the best round of each counts. The
target: hits per second with metrics >= 0.95 x without. Writes its section of
docs/bench.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from support.docs import write_section
from support.install import ensure_tools
from support.proxies import body_and_path, start_host, start_proxy, warm
from support.tables import format_table
from support.wrk import Result, best_of

TARGET = 0.95
LABELS = {"1": "metrics on", "0": "metrics off"}


def measure(args: argparse.Namespace) -> tuple[dict[str, Result], int]:
    started: list[Any] = []
    with tempfile.TemporaryDirectory(prefix="js-host-proxy-bench-") as tmp:
        workdir = Path(tmp)
        try:
            _, host = start_host(workdir)
            started.append(host)
            body, path = body_and_path("echo", {"bench": "metrics"})
            loads = {}
            urls = {}
            for flag, label in LABELS.items():
                cache = f"file://{workdir}/cache-{flag}"
                proc, url = start_proxy(workdir, host.url, cache=cache, metrics=flag)
                started.append(proc)
                assert warm(url, body, path) == "HIT", label
                loads[label] = (url + path, body)
                urls[label] = url
            best = best_of(
                args.rounds, loads, workdir=workdir, duration=args.duration, connections=args.connections
            )
            # What the "on" proxy counted: every request of every round, summed over its workers.
            scraped = requests.get(urls["metrics on"] + "/metrics", timeout=10).text
            hits = sum(
                float(line.rsplit(" ", 1)[1])
                for line in scraped.splitlines()
                if line.startswith('js_host_proxy_requests_total{cache="HIT"')
            )
            return best, int(hits)
        finally:
            for proc in reversed(started):
                proc.stop()


def report(args: argparse.Namespace, best: dict[str, Result], hits: int) -> str:
    off = best["metrics off"]["rps"]
    rows = [[f"best of {args.rounds} rounds", "req/s", "x off", "p50 ms", "p99 ms"]]
    for label, r in best.items():
        ratio = r["rps"] / off
        rows.append([label, f"{r['rps']:,.0f}", f"{ratio:.3f}", f"{r['p50']:.2f}", f"{r['p99']:.2f}"])
    ratio = best["metrics on"]["rps"] / off
    verdict = "met" if ratio >= TARGET else "NOT met"
    lines = [
        format_table(rows, widths=[22, 9, 7, 7, 7], sep=" "),
        "",
        f"hits/s with metrics over without: {ratio:.3f} (target >= {TARGET}: {verdict})",
        f"hits the metrics-on proxy counted (js_host_proxy_requests_total, both workers): {hits:,}",
    ]
    return "\n".join(lines)


def markdown(args: argparse.Namespace, text: str, started: str, load: float) -> str:
    return f"""## The proxy's metrics on a hit: `bench/proxy_metrics.py`

Measured by `python3 bench/proxy_metrics.py` on {started} ({os.cpu_count()} CPUs shared with other
work, Python {platform.python_version()}, load average {load:.1f} at the start). The same proxy
(gunicorn, 2 workers, file cache, every request a hit) with `JS_HOST_PROXY_METRICS=1` (each
request counted in prometheus_client's multiprocess files, its `X-Request-Id` echoed) and
`=0`, driven in turn by `wrk -c{args.connections}` for {args.duration:g} s per round.

```text
{text}
```

Each hit costs one dictionary lookup and one increment of a labelled counter, which
prometheus_client writes into the worker's mmap'ed file (about 1 µs, against some
hundred µs per request through gunicorn): counting in-process and flushing now and then
would save nothing measurable and lose the last counts of a killed worker.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/bench.md")
    args = parser.parse_args()
    ensure_tools("wrk")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    best, hits = measure(args)
    text = report(args, best, hits)
    print()
    print(text)
    if not args.no_docs:
        write_section("proxy_metrics", markdown(args, text, started, load))
        print("\nwritten to docs/bench.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
