"""Compare gunicorn settings for js-host-proxy, alternately in the same run.

    python3 bench/proxy_gunicorn.py [--duration 3] [--rounds 3] [--miss]
        [--config 'label:workers=2,threads=16,worker_class=gthread'] ...

For each configuration: the proxy with the file cache (every request a hit) and
the "gunicorn floor" (a constant answer) under the same settings; nginx
``proxy_cache`` in front of the same host is the baseline. The configurations
take turns within each round, so that other load on the machine weighs on each
alike; the best round counts. ``--miss`` also measures, one call at a time, a
miss against calling the host directly (median of paired calls).

A configuration is ``label:key=value,...``; keys: ``workers``, ``threads``,
``worker_class``, ``backlog``, ``keepalive`` (JS_HOST_PROXY_* settings) and
``args`` (extra gunicorn command line, ``+`` for spaces).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from support import options
from support.install import ensure_tools
from support.processes import OwnedProcess
from support.proxies import Calls, body_and_path, paired_ms, start_host, start_nginx, start_proxy, warm
from support.tables import format_table
from support.wrk import Result, best_of

DEFAULT_CONFIGS = [
    "default:",
    "sync:worker_class=sync",
    "gthread-4t:threads=4",
    "3w-4t:workers=3,threads=4",
]
Config = tuple[str, dict[str, str]]


def parse_config(text: str) -> Config:
    label, _, rest = text.partition(":")
    settings = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        settings[key.strip()] = value.strip()
    return label, settings


def launch(
    workdir: Path, host_url: str, settings: dict[str, str], app: str | None
) -> tuple[OwnedProcess, str]:
    """start_proxy() with ``settings``; their ``args`` go to gunicorn by GUNICORN_CMD_ARGS."""
    settings = dict(settings)
    extra = settings.pop("args", "").replace("+", " ")
    saved = os.environ.get("GUNICORN_CMD_ARGS")
    try:
        if extra:
            os.environ["GUNICORN_CMD_ARGS"] = extra
        return start_proxy(workdir, host_url, app=app, **settings)
    finally:
        if saved is None:
            os.environ.pop("GUNICORN_CMD_ARGS", None)
        else:
            os.environ["GUNICORN_CMD_ARGS"] = saved


def start_targets(
    args: argparse.Namespace, configs: list[Config], workdir: Path, started: list[Any]
) -> tuple[str, dict[str, str]]:
    """The host, nginx and each configuration's proxy (and floor), every cache warm.
    Returns (the host's URL, label -> base URL)."""
    _, host = start_host(workdir)
    started.append(host)
    nginx, nginx_url, _ = start_nginx(workdir, host.url)
    started.append(nginx)
    body, path = body_and_path("echo", {"bench": "hit"})
    assert warm(nginx_url, body, path) == "HIT"
    targets = {"nginx proxy_cache": nginx_url}
    for label, settings in configs:
        proc, url = launch(workdir, host.url, {"cache": f"file://{workdir}/cache-{label}", **settings}, None)
        started.append(proc)
        assert warm(url, body, path) == "HIT", label
        targets[f"{label}: proxy hits"] = url
        if not args.no_floor:
            proc, url = launch(workdir, host.url, settings, "proxy_floor_app:app")
            started.append(proc)
            targets[f"{label}: floor"] = url
    return host.url, targets


def measure_misses(host_url: str, targets: dict[str, str], configs: list[Config]) -> dict[str, float]:
    """Median ms of a miss through each configuration and of calling the host directly."""
    run = uuid.uuid4().hex
    calls: Calls = {"host directly": (host_url, "echo", lambda i: {"direct": i, "run": run})}
    for label, _ in configs:
        url = targets[f"{label}: proxy hits"]
        calls[f"{label}: miss"] = (url, "echo", lambda i, label=label: {label: i, "run": run})
    return paired_ms(calls, 300)


def measure(args: argparse.Namespace, configs: list[Config]) -> tuple[dict[str, Result], dict[str, float]]:
    started: list[Any] = []
    misses: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="js-host-proxy-bench-") as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)  # nginx workers (nobody) must reach their prefix
        try:
            host_url, targets = start_targets(args, configs, workdir, started)
            body, path = body_and_path("echo", {"bench": "hit"})
            loads = {label: (url + path, body) for label, url in targets.items()}
            best = best_of(
                args.rounds, loads, workdir=workdir, duration=args.duration, connections=args.connections
            )
            if args.miss:
                misses = measure_misses(host_url, targets, configs)
        finally:
            for proc in reversed(started):
                proc.stop()
    return best, misses


def report(rounds: int, best: dict[str, Result], misses: dict[str, float]) -> None:
    nginx_rps = best["nginx proxy_cache"]["rps"]
    rows = [[f"best of {rounds} rounds", "req/s", "x nginx", "x floor", "p99 ms"]]
    for label, r in best.items():
        floor = best.get(label.split(":")[0] + ": floor")
        rows.append(
            [
                label,
                f"{r['rps']:,.0f}",
                f"{r['rps'] / nginx_rps:.3f}",
                f"{(r['rps'] / floor['rps']) if floor else float('nan'):.3f}",
                f"{r['p99']:.2f}",
            ]
        )
    print()
    print(format_table(rows, widths=[34, 9, 8, 8, 7], sep=" "))
    if misses:
        direct = misses["host directly"]
        print("\none call at a time (median ms): " + ", ".join(f"{k} {v:.3f}" for k, v in misses.items()))
        for label, value in misses.items():
            if label != "host directly":
                print(f"  {label}: {value - direct:+.3f} ms over the host directly")


def main() -> int:
    parser = options.parser(__doc__, first_line_only=True)
    options.add_wrk_options(parser, duration=3.0, rounds=3, connections=16)
    parser.add_argument("--config", action="append", help="label:key=value,... (repeatable)")
    parser.add_argument("--no-floor", action="store_true", help="skip the constant-answer app")
    parser.add_argument("--miss", action="store_true", help="also measure miss - host directly")
    args = parser.parse_args()
    ensure_tools("wrk", "nginx")
    configs = [parse_config(c) for c in (args.config or DEFAULT_CONFIGS)]
    best, misses = measure(args, configs)
    report(args.rounds, best, misses)
    return 0


if __name__ == "__main__":
    sys.exit(main())
