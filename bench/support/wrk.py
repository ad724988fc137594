"""HTTP load with wrk: one POST body over kept-alive connections, and the best of rounds."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: What one wrk run measured: rps, requests, p50 and p99 (ms), errors (non-2xx), socket_errors.
Result = dict[str, Any]


def wrk(
    url: str,
    body: bytes,
    *,
    duration: float,
    connections: int,
    workdir: Path,
    threads: int = 2,
    timeout: float = 2.0,
) -> Result:
    """``wrk`` POSTing ``body`` (application/json) to ``url`` for ``duration`` seconds; an
    answer slower than ``timeout`` seconds counts as a socket error (timeout), not a latency."""
    script = workdir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration:g}s",
        f"--timeout={timeout:g}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=duration + timeout + 30, check=True
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if not rps or not total:
        raise RuntimeError(f"unexpected output of {' '.join(cmd)}:\n{out}")
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(rps.group(1)),
        "requests": int(total.group(1)),
        "p50": _percentile_ms(out, 50),
        "p99": _percentile_ms(out, 99),
        "errors": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def _percentile_ms(out: str, percent: int) -> float:
    found = re.search(rf"{percent}%\s+([\d.]+)(\w+)", out)
    if not found:
        return float("nan")
    value, unit = found.groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def best_of(
    rounds: int, targets: Mapping[str, tuple[str, bytes]], *, workdir: Path, duration: float, connections: int
) -> dict[str, Result]:
    """wrk on every target (label -> (URL, body)) in turn, ``rounds`` times; for each,
    the best throughput and the best p99 of its rounds (other work on the machine only
    ever slows a round down). Prints each round's figures as they come."""
    width = max(map(len, targets))
    best: dict[str, Result] = {}
    for round_ in range(rounds):
        for label, (url, body) in targets.items():
            r = wrk(url, body, duration=duration, connections=connections, workdir=workdir)
            print(
                f"  round {round_ + 1}: {label:<{width}} {r['rps']:>9,.0f} req/s  p50 {r['p50']:6.2f}"
                f"  p99 {r['p99']:6.2f} ms  non-2xx {r['errors']} {r['socket_errors']}".rstrip(),
                flush=True,
            )
            if label in best:
                low_p99 = min(best[label]["p99"], r["p99"])
                r = {**max(best[label], r, key=lambda x: x["rps"]), "p99": low_p99}
            best[label] = r
    return best
