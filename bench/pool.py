"""A pool of workers against the single-process host and hypernova, in one run.

A CPU-bound server-side render (React 18 ``renderToString`` of bench/pool/app.js, a
listing of ``--rows`` rows, ~10 ms on a 2-core machine), driven by wrk at ``--connections``
(8) kept-alive connections, POSTing the same JSON body to:

- single: the bundled host without ``workers`` (js-host 0.11's single process), the baseline;
- pool: the same host and config with ``--workers 2``;
- hypernova 2.5 (npm, with hypernova-react, 2 cluster workers, the same component,
  one job per ``POST /batch``).

Then a 50-byte echo (wrk -c8): a 1-worker pool against the single-process host, as
requests per second and the CPU time per request of the whole process group (host and
workers); and the latency of echo calls (wrk -c1) while another connection keeps one
worker of a 2-worker pool busy with 2-second synchronous renders, with the same on the
single-process host for contrast.

Targets, as ratios measured in this run: pool >= 1.7 x single and >= 1.0 x hypernova
(SSR req/s); a pooled echo <= 1.3 x the single host's cost; echo p99 <= 5 ms while one
worker renders for 2 s. Every host runs with NODE_ENV=production (React's production
build) and its console output to a file.

Usage: python3 bench/pool.py [--duration 5] [--rounds 2] [--no-install] [--no-docs]
(installs wrk with apt-get and bench/pool/node_modules with npm on first use; about
2 minutes; writes the table into docs/bench.md unless --no-docs).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from support import options
from support.docs import run_started, section_head, write_own_section
from support.install import ensure_pool_stack, ensure_tools
from support.processes import OwnedProcess
from support.ssr_servers import (
    batch,
    busy_rendering,
    check_hypernova,
    post,
    props,
    start_host,
    start_hypernova,
)
from support.tables import format_table
from support.wrk import Result, wrk

ECHO = json.dumps({"message": "x" * 35}, sort_keys=True).encode()  # 50 bytes, as the Python client sends
assert len(ECHO) == 50

SINGLE, POOL, HYPERNOVA_ROW = "single-process host", "pool, workers: 2", "hypernova 2.5, 2 workers"
POOL1 = "pool, workers: 1"
#: The 50-byte echo of each host: (best req/s, lowest CPU us a request of its process group).
Echo = dict[str, tuple[float, float]]


def load(url: str, body: bytes, args: argparse.Namespace, workdir: Path, **settings: float) -> Result:
    """wrk -t1 (the load generator shares the 2 cores: one thread is plenty at these rates)."""
    settings.setdefault("connections", args.connections)
    settings.setdefault("duration", args.duration)
    result = wrk(url, body, workdir=workdir, threads=1, **settings)  # type: ignore[arg-type]
    if result["errors"]:
        sys.exit(f"bench: {result['errors']} error responses from {url}")
    return result


def ssr(args: argparse.Namespace, workdir: Path, logdir: Path) -> dict[str, Result]:
    """Rendering req/s of each subject: best of the rounds, the subjects taking turns."""
    data = props(args.rows)
    body = json.dumps(data, sort_keys=True).encode()
    servers: list[OwnedProcess] = []
    try:
        single = start_host(logdir)
        servers.append(single)
        pool = start_host(logdir, "--workers", "2")
        servers.append(pool)
        hypernova, hypernova_url = start_hypernova(logdir, 2)
        servers.append(hypernova)
        check_hypernova(hypernova_url, data)
        targets = {
            SINGLE: (f"{single.url}/function/render", body),
            POOL: (f"{pool.url}/function/render", body),
            HYPERNOVA_ROW: (f"{hypernova_url}/batch", batch(data)),
        }
        size = len(post(single.url, "/function/render", body))
        print(f"SSR: {args.rows} rows, {size:,} bytes of HTML a render", flush=True)
        for url, payload in targets.values():  # warm-up: JIT, connections, every worker
            load(url, payload, args, workdir, duration=2)
        best: dict[str, Result] = {}
        for round_ in range(args.rounds):
            for label, (url, payload) in targets.items():
                r = load(url, payload, args, workdir)
                print(
                    f"  round {round_ + 1}: {label:<26} {r['rps']:8.1f} req/s  p99 {r['p99']:7.1f} ms",
                    flush=True,
                )
                if label not in best or r["rps"] > best[label]["rps"]:
                    best[label] = r
        return best
    finally:
        for server in servers:
            server.stop()


def echo_cost(args: argparse.Namespace, workdir: Path, logdir: Path) -> Echo:
    """50-byte echo: (best req/s, lowest CPU us a request of the whole process group)."""
    servers = {SINGLE: start_host(logdir), POOL1: start_host(logdir, "--workers", "1")}
    try:
        for server in servers.values():
            load(f"{server.url}/function/echo", ECHO, args, workdir, duration=1)
        best: Echo = {}
        for round_ in range(args.rounds):
            for label, server in servers.items():
                before = server.group_cpu_seconds()
                r = load(f"{server.url}/function/echo", ECHO, args, workdir)
                cpu = (server.group_cpu_seconds() - before) / r["requests"] * 1e6
                print(
                    f"  round {round_ + 1}: echo, {label:<21} {r['rps']:8.0f} req/s  {cpu:6.1f} CPU us/req",
                    flush=True,
                )
                rate, low = best.get(label, (0.0, float("inf")))
                best[label] = (max(rate, r["rps"]), min(low, cpu))
        return best
    finally:
        for server in servers.values():
            server.stop()


def echo_latency(args: argparse.Namespace, workdir: Path, logdir: Path) -> dict[str, Result]:
    """Echo latency at one connection: the pool idle, the pool with one worker rendering
    2 s renders, the single-process host doing the same (for contrast)."""
    results: dict[str, Result] = {}
    servers = {POOL: start_host(logdir, "--workers", "2"), SINGLE: start_host(logdir)}
    seconds = max(args.duration, 4.0)  # at least two 2-second renders
    try:
        for label, server in servers.items():
            echo = f"{server.url}/function/echo"
            load(echo, ECHO, args, workdir, connections=1, duration=1)
            if label == POOL:
                results[f"{label}, idle"] = load(echo, ECHO, args, workdir, connections=1, duration=seconds)
            with busy_rendering(server.url, 2000, args.rows):
                r = load(echo, ECHO, args, workdir, connections=1, duration=seconds, timeout=10)
            results[f"{label}, one 2 s render running"] = r
            print(f"  echo p99, {label}: {r['p99']:.2f} ms", flush=True)
        return results
    finally:
        for server in servers.values():
            server.stop()


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def figure_rows(ssr_best: dict[str, Result], echo: Echo, latency: dict[str, Result]) -> list[list[str]]:
    """The figures: SSR req/s against the single process, the echo's cost, its latency."""
    rows = [["SSR (React 18 renderToString)", "req/s", "p50 ms", "p99 ms", "vs single"]]
    base = ssr_best[SINGLE]["rps"]
    for label in (SINGLE, POOL, HYPERNOVA_ROW):
        r = ssr_best[label]
        rows.append(
            [label, f"{r['rps']:.1f}", f"{r['p50']:.1f}", f"{r['p99']:.1f}", f"{r['rps'] / base:.2f}x"]
        )
    rows += [[], ["50-byte echo, wrk -c8", "req/s", "CPU us/req", "", "cost vs single"]]
    for label in (SINGLE, POOL1):
        rate, cpu = echo[label]
        rows.append(
            [
                label,
                f"{rate:.0f}",
                f"{cpu:.1f}",
                "",
                f"{echo[SINGLE][0] / rate:.2f}x wall, {cpu / echo[SINGLE][1]:.2f}x CPU",
            ]
        )
    rows += [[], ["echo latency, wrk -c1", "req/s", "p50 ms", "p99 ms", ""]]
    for label, r in latency.items():
        timeouts = f"  ({r['socket_errors']})" if r["socket_errors"] else ""
        rows.append([label, f"{r['rps']:.0f}", f"{r['p50']:.2f}", f"{r['p99']:.2f}", timeouts.strip()])
    return rows


def target_rows(ssr_best: dict[str, Result], echo: Echo, latency: dict[str, Result]) -> list[list[str]]:
    """Each target, the ratio measured in this run, and whether it is met."""
    base, pool, hyper = ssr_best[SINGLE]["rps"], ssr_best[POOL]["rps"], ssr_best[HYPERNOVA_ROW]["rps"]
    wall, cpu = echo[SINGLE][0] / echo[POOL1][0], echo[POOL1][1] / echo[SINGLE][1]
    p99 = latency[f"{POOL}, one 2 s render running"]["p99"]
    return [
        ["target (ratios measured in this run)", "measured", ""],
        [
            "pool (workers: 2) >= 1.7 x single-process, SSR req/s",
            f"{pool / base:.2f}x",
            verdict(pool / base >= 1.7),
        ],
        ["pool (workers: 2) >= 1.0 x hypernova (2 workers)", f"{pool / hyper:.2f}x", verdict(pool >= hyper)],
        [
            "echo through a 1-worker pool <= 1.3 x the single host's cost",
            f"{wall:.2f}x wall, {cpu:.2f}x CPU",
            verdict(max(wall, cpu) <= 1.3),
        ],
        ["echo p99 <= 5 ms while one worker renders for 2 s", f"{p99:.2f} ms", verdict(p99 <= 5)],
    ]


def report(
    args: argparse.Namespace, ssr_best: dict[str, Result], echo: Echo, latency: dict[str, Result]
) -> str:
    """The two tables under the run's settings, printed; returned for docs/bench.md."""
    figures = format_table(figure_rows(ssr_best, echo, latency), sep="  ")
    targets = format_table(target_rows(ssr_best, echo, latency), sep="  ")
    text = (
        f"SSR: {args.rows} rows, wrk -t1 -c{args.connections}, {args.duration:g} s x {args.rounds} rounds "
        f"(best round), NODE_ENV=production, console output to files\n\n"
        f"{figures}\n\n{targets}"
    )
    print("\n" + text)
    return text


def markdown(text: str, started: str, load: float) -> str:
    return (
        section_head("A pool of workers", "pool.py", started, load, busy=", so the figures are noisy")
        + "A React 18 `renderToString` "
        "of `bench/pool/app.js` driven by wrk over 8 kept-alive connections; a 50-byte echo; "
        "echo latency at one connection while another keeps one worker busy with 2-second "
        "synchronous renders.\n\n"
        f"```text\n{text}\n```\n\n"
        "Reading it: the pool's scaling needs the CPUs to itself; while other work holds them "
        "(a load average near or over the CPU count), 2 workers get less than 2 CPUs and the "
        "single process gets more than its share of one, so the SSR ratio shrinks. The CPU time "
        "per request, counted over the whole process group (host and workers), is the steadier "
        "measure of what the dispatch to a worker costs.\n"
    )


def measure(args: argparse.Namespace) -> tuple[dict[str, Result], Echo, dict[str, Result]]:
    """The three measurements, each starting and stopping its own servers, in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="bench-pool-") as tmp:
        workdir = Path(tmp)
        logdir = workdir / "logs"
        logdir.mkdir()
        try:
            return (
                ssr(args, workdir, logdir),
                echo_cost(args, workdir, logdir),
                echo_latency(args, workdir, logdir),
            )
        except RuntimeError as err:  # a server that did not start: its log says why
            sys.exit(f"bench: {err}")


def main() -> None:
    parser = options.parser(__doc__)
    options.add_wrk_options(parser, duration=5.0, rounds=2, connections=8)
    parser.add_argument("--rows", type=int, default=1000, help="rows of the rendered listing")
    parser.add_argument("--no-install", action="store_true", help="install nothing; fail instead")
    options.add_no_docs(parser)
    args = parser.parse_args()
    if not args.no_install:
        ensure_tools("wrk")
    missing = ensure_pool_stack(not args.no_install)
    if missing:
        sys.exit(f"bench: {missing}")
    started, load = run_started(show_load=True)
    ssr_best, echo, latency = measure(args)
    text = report(args, ssr_best, echo, latency)
    if not args.no_docs:
        write_own_section("pool", markdown(text, started, load))


if __name__ == "__main__":
    main()
