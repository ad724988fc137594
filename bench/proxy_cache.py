#!/usr/bin/env python3
"""Benchmark js-host-proxy's cache against nginx proxy_cache, in front of the same host.

    python3 bench/proxy_cache.py [--duration 5] [--connections 16]

Everything runs on loopback and is stopped at the end: one host (the project's
own when it exists, else js-host 0.11 from tests/npm), the proxy under gunicorn
(gunicorn.conf.py, 2 workers) with each cache backend in turn, and nginx with
``proxy_cache`` (POST, key ``$request_uri``, ``proxy_cache_lock on``) from a
temporary prefix folder on a free port. wrk sends the load (2 threads, 16
connections, every request a cache hit); nginx and wrk are installed with
apt-get when missing.

Printed: a table of throughput and latency, and the targets as ratios measured
in this run (hits >= 0.15 x nginx with p99 <= 10 ms; a miss adds <= 1 ms over
calling the host directly; a cached 20 ms call >= 20x faster than uncached; 50
concurrent identical cold calls reach the host once, the waiters answered as
soon as it returns).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from support import options
from support.install import ensure_tools, which
from support.processes import OwnedProcess, free_port
from support.proxies import (
    JSON,
    body_and_path,
    paired_ms,
    post_environ,
    start_host,
    start_nginx,
    start_proxy,
    warm,
)
from support.runs import timed
from support.tables import format_table
from support.wrk import Result, best_of

HIT_BODY, HIT_URI = body_and_path("echo", {"bench": "hit"})


@dataclass
class Servers:
    """Everything the run measures, by base URL; ``started`` is stopped at the end."""

    host: str = ""
    nginx: str = ""
    nginx_pass: str = ""
    floor: str = ""
    caches: dict[str, str] = field(default_factory=dict)  # cache backend -> its URL
    proxies: dict[str, str] = field(default_factory=dict)  # cache backend or "cachecontrol" -> proxy
    started: list[Any] = field(default_factory=list)


def start_redis(workdir: Path, servers: Servers) -> None:
    """A redis-server for the redis cache, nothing saved; none when it is not installed."""
    binary = which("redis-server")
    if not binary:
        return
    port = free_port()
    options = {"port": port, "bind": "127.0.0.1", "save": "", "appendonly": "no", "dir": workdir}
    cmd = [binary, *(part for key, value in options.items() for part in (f"--{key}", str(value)))]
    servers.started.append(OwnedProcess(cmd, workdir / "redis.log").wait_port(port))
    servers.caches["redis"] = f"redis://127.0.0.1:{port}/0"


def start_servers(workdir: Path, servers: Servers) -> None:
    impl, host = start_host(workdir)
    servers.started.append(host)
    servers.host = host.url
    print(f"host: {impl} at {host.url}", flush=True)
    nginx, servers.nginx, servers.nginx_pass = start_nginx(workdir, host.url)
    servers.started.append(nginx)
    servers.caches.update(file=f"file://{workdir}/proxy-cache", memory="memory://")
    start_redis(workdir, servers)
    for name, cache_url in servers.caches.items():
        proc, servers.proxies[name] = start_proxy(workdir, host.url, cache=cache_url)
        servers.started.append(proc)
    proc, servers.proxies["cachecontrol"] = start_proxy(
        workdir, host.url, app="support.cachecontrol_hits:app", cache=f"file://{workdir}/proxy-cache-cc"
    )
    servers.started.append(proc)
    proc, servers.floor = start_proxy(workdir, host.url, app="proxy_floor_app:app")
    servers.started.append(proc)
    assert warm(servers.nginx, HIT_BODY, HIT_URI) == "HIT", "nginx did not cache the call"
    for name, url in servers.proxies.items():
        assert warm(url, HIT_BODY, HIT_URI) == "HIT", f"the proxy ({name}) did not cache the call"


def wrk_targets(servers: Servers) -> dict[str, tuple[str, bytes]]:
    """label -> (URL, body); all of them serve every request from their cache (or never cache)."""
    urls = {
        "nginx proxy_cache, hits": servers.nginx + HIT_URI,
        "gunicorn floor: constant answer, no cache": servers.floor + HIT_URI,
        **{f"js-host-proxy hits, {name} cache": servers.proxies[name] + HIT_URI for name in servers.caches},
        "js-host-proxy hits via requests+CacheControl": servers.proxies["cachecontrol"] + HIT_URI,
        "host directly, no cache": servers.host + HIT_URI,
        "nginx pass-through, no cache": servers.nginx_pass + HIT_URI,
        "js-host-proxy pass-through (no hash)": servers.proxies["file"] + HIT_URI.split("?")[0],
    }
    return {label: (url, HIT_BODY) for label, url in urls.items()}


def stampede(base: str, host: str, count: int = 50, ms: int = 300) -> dict[str, float]:
    """``count`` identical cold calls at once: host calls, and how long the waiters
    took after the first answer."""
    data = {"ms": ms, "run": uuid.uuid4().hex}
    body, path = body_and_path("sleep", data)
    done: list[float] = [0.0] * count
    states: list[str] = [""] * count
    barrier = threading.Barrier(count)

    def one(i: int) -> None:
        with requests.Session() as session:
            barrier.wait()
            r = session.post(base + path, data=body, headers=JSON, timeout=30)
            done[i] = time.perf_counter()
            states[i] = r.headers.get("X-Cache", "?") if r.ok else f"error {r.status_code}"

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    first = min(done)
    calls = int(requests.post(host + "/function/calls", json=data, timeout=5).text)
    return {
        "host_calls": calls,
        "last_after_first_ms": (max(done) - first) * 1000,
        "median_after_first_ms": statistics.median(d - first for d in done) * 1000,
        "misses": states.count("MISS"),
        "errors": sum(1 for s in states if s.startswith("error")),
    }


def in_process_hit_us(upstream: str, hits: str, count: int = 3000) -> float:
    """Microseconds per cache hit, calling the WSGI app directly (no HTTP server): the
    proxy's own (``direct``) or one whose hits go through requests+CacheControl."""
    from support.cachecontrol_hits import CacheControlHits

    from js_host_proxy.app import ProxyApp
    from js_host_proxy.config import ProxyConfig

    config = ProxyConfig(upstreams=(upstream,), cache_url="memory://")
    app = ProxyApp(config) if hits == "direct" else CacheControlHits(config)
    body, path = body_and_path("echo", {"in-process": hits})
    environ = post_environ(path, body, REMOTE_ADDR="127.0.0.1")

    def call() -> None:
        b"".join(app(environ(), lambda status, headers, exc_info=None: None))

    for _ in range(5):
        call()
    seconds = timed(call, count)
    app.close()
    return seconds * 1e6


def one_at_a_time(servers: Servers) -> dict[str, Any]:
    """Calls one at a time (paired medians), the stampedes and the in-process hits."""
    proxy, run = servers.proxies["file"], uuid.uuid4().hex
    latency = paired_ms(
        {
            "host directly": (servers.host, "echo", lambda i: {"direct": i, "run": run}),
            "proxy miss": (proxy, "echo", lambda i: {"miss": i, "run": run}),
            "proxy hit": (proxy, "echo", lambda i: {"run": run}),
            "gunicorn floor": (servers.floor, "echo", lambda i: {"floor": i}),
        },
        300,
    )
    sleepy = paired_ms(
        {
            "20 ms function, uncached": (proxy, "sleep", lambda i: {"ms": 20, "i": i, "run": run}),
            "20 ms function, cached": (proxy, "sleep", lambda i: {"ms": 20, "run": run}),
        },
        60,
        block=10,
    )
    return {
        "latency": latency,
        "sleepy": sleepy,
        "herd": stampede(proxy, servers.host),
        "nginx_herd": stampede(servers.nginx, servers.host),
        "us_direct": in_process_hit_us(servers.host, "direct"),
        "us_cachecontrol": in_process_hit_us(servers.host, "cachecontrol"),
    }


def print_figures(rounds: int, best: dict[str, Result], calls: dict[str, Any]) -> None:
    rows = [[f"best of {rounds} rounds", "req/s", "p50 ms", "p99 ms", "non-2xx"]]
    for label, r in best.items():
        errors = f"socket errors: {r['socket_errors']}" if r["socket_errors"] else ""
        rows.append(
            [label, f"{r['rps']:,.0f}", f"{r['p50']:.2f}", f"{r['p99']:.2f}", str(r["errors"]), errors]
        )
    print()
    print(format_table(rows, align="lrrrrl", widths=[44, 9, 7, 7, 8], sep=" "))
    print()
    direct, via_cc = calls["us_direct"], calls["us_cachecontrol"]
    print(
        f"in-process cost of a hit (WSGI call, memory cache): direct {direct:.0f} us, "
        f"through requests+CacheControl {via_cc:.0f} us ({via_cc / direct:.1f}x)"
    )
    one_by_one = {**calls["latency"], **calls["sleepy"]}
    print("one call at a time (median ms): " + ", ".join(f"{k} {v:.2f}" for k, v in one_by_one.items()))
    for name, h in (("js-host-proxy", calls["herd"]), ("nginx", calls["nginx_herd"])):
        print(
            f"50 identical cold calls of a 300 ms function through {name}: {h['host_calls']} host call(s), "
            f"{h['misses']} MISS, {h['errors']} errors; answered "
            f"{h['median_after_first_ms']:.1f} ms (median) / {h['last_after_first_ms']:.1f} ms (last) "
            "after the first"
        )
    print()


def print_targets(best: dict[str, Result], caches: list[str], calls: dict[str, Any]) -> None:
    nginx_rps = best["nginx proxy_cache, hits"]["rps"]
    floor_rps = best["gunicorn floor: constant answer, no cache"]["rps"]
    file_hits = best["js-host-proxy hits, file cache"]
    file_share = file_hits["rps"] / nginx_rps
    best_share = max(best[f"js-host-proxy hits, {name} cache"]["rps"] for name in caches) / nginx_rps
    via_cc_rps = best["js-host-proxy hits via requests+CacheControl"]["rps"]
    latency, sleepy, herd = calls["latency"], calls["sleepy"], calls["herd"]
    miss_cost = latency["proxy miss"] - latency["host directly"]
    speedup = sleepy["20 ms function, uncached"] / sleepy["20 ms function, cached"]
    last = herd["last_after_first_ms"]
    targets = [
        ("hits (file cache) / nginx hits >= 0.15", f"{file_share:.3f}", file_share >= 0.15),
        ("hits (best cache) / nginx hits >= 0.15", f"{best_share:.3f}", best_share >= 0.15),
        ("  gunicorn floor / nginx hits (the ceiling)", f"{floor_rps / nginx_rps:.3f}", None),
        ("  hits (file cache) / gunicorn floor", f"{file_hits['rps'] / floor_rps:.3f}", None),
        ("  hits direct / hits via requests+CacheControl", f"{file_hits['rps'] / via_cc_rps:.1f}x", None),
        ("p99 of hits (file cache) <= 10 ms", f"{file_hits['p99']:.2f} ms", file_hits["p99"] <= 10),
        ("a miss adds <= 1 ms over the host directly", f"{miss_cost:+.2f} ms", miss_cost <= 1.0),
        ("cached 20 ms call >= 20x faster than uncached", f"{speedup:.1f}x", speedup >= 20),
        (
            "50 cold identical calls reach the host once",
            f"{herd['host_calls']} call(s)",
            herd["host_calls"] == 1,
        ),
        ("waiters answered as soon as that call returns", f"last +{last:.1f} ms after the first", last < 50),
    ]
    rows = [["target (ratios measured in this run)", "measured"]]
    rows += [
        [name, measured, "" if ok is None else "ok" if ok else "MISSED"] for name, measured, ok in targets
    ]
    print(format_table(rows, align="lrl", widths=[48, 32], sep=" "))


def measure(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="js-host-proxy-bench-") as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)  # nginx workers (nobody) must reach their prefix
        servers = Servers()
        try:
            start_servers(workdir, servers)
            print(
                f"wrk -t2 -c{args.connections} -d{args.duration:g}s, {args.rounds} rounds, the best counts",
                flush=True,
            )
            load = {"workdir": workdir, "duration": args.duration, "connections": args.connections}
            best = best_of(args.rounds, wrk_targets(servers), **load)
            calls = one_at_a_time(servers)
        finally:
            for proc in reversed(servers.started):
                proc.stop()
    print_figures(args.rounds, best, calls)
    print_targets(best, list(servers.caches), calls)
    return 0


def main() -> int:
    parser = options.parser(__doc__, first_line_only=True)
    options.add_wrk_options(parser, duration=4.0, rounds=3, connections=16)
    args = parser.parse_args()
    ensure_tools("wrk", "nginx")
    return measure(args)


if __name__ == "__main__":
    sys.exit(main())
