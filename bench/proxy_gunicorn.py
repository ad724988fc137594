#!/usr/bin/env python3
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from proxy_cache import (
    HOST_CONFIG,
    IMPLEMENTATIONS,
    NodeProcess,
    body_and_path,
    ensure_tools,
    paired_ms,
    start_nginx,
    start_proxy,
    warm,
    wrk,
)

DEFAULT_CONFIGS = [
    "default:",
    "sync:worker_class=sync",
    "gthread-4t:threads=4",
    "3w-4t:workers=3,threads=4",
]


def parse_config(text: str) -> tuple[str, dict[str, str]]:
    label, _, rest = text.partition(":")
    settings = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        settings[key.strip()] = value.strip()
    return label, settings


def launch(workdir: Path, host_url: str, settings: dict[str, str], app: str | None) -> tuple[Any, str]:
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--config", action="append", help="label:key=value,... (repeatable)")
    parser.add_argument("--no-floor", action="store_true", help="skip the constant-answer app")
    parser.add_argument("--miss", action="store_true", help="also measure miss - host directly")
    args = parser.parse_args()
    ensure_tools()
    configs = [parse_config(c) for c in (args.config or DEFAULT_CONFIGS)]
    started: list[Any] = []
    best: dict[str, dict[str, float]] = {}
    misses: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="js-host-proxy-bench-") as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)
        try:
            impl = "bundled" if IMPLEMENTATIONS["bundled"].exists() else "npm-0.11"
            host = NodeProcess(IMPLEMENTATIONS[impl], HOST_CONFIG, "--port", "0", logdir=workdir).start()
            started.append(host)
            nginx, nginx_url, _ = start_nginx(workdir, host.url)
            started.append(nginx)
            body, path = body_and_path("echo", {"bench": "hit"})
            assert warm(nginx_url, body, path) == "HIT"
            targets = {"nginx proxy_cache": nginx_url}
            for label, settings in configs:
                cache = f"file://{workdir}/cache-{label}"
                proc, url = launch(workdir, host.url, {"cache": cache, **settings}, None)
                started.append(proc)
                assert warm(url, body, path) == "HIT", label
                targets[f"{label}: proxy hits"] = url
                if not args.no_floor:
                    proc, url = launch(workdir, host.url, settings, "proxy_floor_app:app")
                    started.append(proc)
                    targets[f"{label}: floor"] = url
            for round_ in range(args.rounds):
                for label, url in targets.items():
                    r = wrk(
                        url + path,
                        body,
                        duration=args.duration,
                        connections=args.connections,
                        workdir=workdir,
                    )
                    print(
                        f"  round {round_ + 1}: {label:<32} {r['rps']:>9,.0f} req/s  p50 {r['p50']:6.2f}"
                        f"  p99 {r['p99']:6.2f} ms  non-2xx {r['errors']} {r['socket_errors']}",
                        flush=True,
                    )
                    if label in best:
                        low_p99 = min(best[label]["p99"], r["p99"])
                        if r["rps"] < best[label]["rps"]:
                            r = best[label]
                        r = {**r, "p99": low_p99}
                    best[label] = r
            if args.miss:
                run = uuid.uuid4().hex
                calls = {"host directly": (host.url, "echo", lambda i: {"direct": i, "run": run})}
                for label, _ in configs:
                    url = targets[f"{label}: proxy hits"]
                    calls[f"{label}: miss"] = (url, "echo", lambda i, label=label: {label: i, "run": run})
                misses = paired_ms(calls, 300)
        finally:
            for proc in reversed(started):
                proc.stop()

    nginx_rps = best["nginx proxy_cache"]["rps"]
    print(f"\n{f'best of {args.rounds} rounds':<34} {'req/s':>9} {'x nginx':>8} {'x floor':>8} {'p99 ms':>7}")
    for label, r in best.items():
        floor = best.get(label.split(":")[0] + ": floor")
        print(
            f"{label:<34} {r['rps']:>9,.0f} {r['rps'] / nginx_rps:>8.3f} "
            f"{(r['rps'] / floor['rps']) if floor else float('nan'):>8.3f} {r['p99']:>7.2f}"
        )
    if misses:
        direct = misses["host directly"]
        print("\none call at a time (median ms): " + ", ".join(f"{k} {v:.3f}" for k, v in misses.items()))
        for label, value in misses.items():
            if label != "host directly":
                print(f"  {label}: {value - direct:+.3f} ms over the host directly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
