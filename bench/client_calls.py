"""Speed of the Python client (Function.call) against a floor measured in the same run.

The floor is a bare ``node:http`` echo server (bench/client_floor_echo.js)
called over a kept-alive raw socket with hand-written request bytes. The same
server also answers ``GET /status`` like a host, so ``Function.call`` can be
measured against it too: that ratio is the client's own overhead. Calls to the
real hosts (the bundled one and js-host 0.11.7 from npm) add their server side.

Targets: Function.call on a 50-byte echo <= 2 x floor; 100 KB <= 1.3 x; with 2
and 8 threads >= 0.8 x the floor's throughput; settings.configure() against a
running host <= 50 ms; cold start with USE_MANAGER=True <= 600 ms to the first
answer. http.client and requests.Session are measured for comparison, and
with --legacy the 2015 stack (PyPI js-host==0.2.0 + npm js-host@0.12.0,
installed into bench/.venv-legacy and bench/legacy/node_modules).

Usage: python3 bench/client_calls.py [--rounds 3] [--legacy]
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from support import NODE_ENV, options
from support.client import (
    BINS,
    FLOOR_ECHO,
    LARGE,
    SMALL,
    cold_start,
    configure_runs,
    function_on,
    host_cmd,
    host_config,
    quiet,
    raw_client,
    serialize,
)
from support.install import LEGACY_BIN, LEGACY_PYTHON, ensure_legacy
from support.processes import NodeServer, exit_on_sigterm, free_port, fresh_log, run_python
from support.runs import alternate, per_call, throughput

Call = Callable[[], object]


# Clients ---------------------------------------------------------------------


def http_client(port: int, body: bytes) -> Call:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Content-Type": "application/json"}

    def call() -> bytes:
        conn.request("POST", "/function/echo", body, headers)
        return conn.getresponse().read()

    return call


def requests_client(port: int, body: bytes) -> Call | None:
    try:
        import requests
    except ImportError:
        return None
    session = requests.Session()
    url = f"http://127.0.0.1:{port}/function/echo"
    headers = {"Content-Type": "application/json"}
    return lambda: session.post(url, data=body, headers=headers).content


def function_client(url: str, data: dict, bin_path: Path) -> Call:
    function = function_on(url, bin_path)
    return lambda: function.call(**data)


LEGACY_CODE = """
    import json, time, statistics
    from js_host.conf import settings
    settings.configure(SOURCE_ROOT={root!r}, PATH_TO_BIN={bin!r}, VERBOSITY=0)
    from js_host.function import Function
    f = Function("echo")
    for _ in range(100):
        f.call(**{data!r})
    times = []
    for _ in range({rounds}):
        t = time.perf_counter()
        for _ in range({n}):
            f.call(**{data!r})
        times.append((time.perf_counter() - t) / {n})
    print(json.dumps({{"per_call": statistics.median(times)}}))
"""


def legacy_per_call(n: int, rounds: int, tmp: Path, logdir: Path) -> float | None:
    """Per-call seconds of js-host==0.2.0 + npm js-host@0.12.0 (installed on first use)."""
    missing = ensure_legacy(allow=True)
    if missing:
        raise RuntimeError(missing)
    workdir = tmp / "legacy"
    workdir.mkdir()
    config = host_config(workdir, free_port())
    server = NodeServer(["node", str(LEGACY_BIN), str(config), "--json"], fresh_log(logdir, "legacy"))
    code = LEGACY_CODE.format(root=str(workdir), bin=str(LEGACY_BIN), data=SMALL, rounds=rounds, n=n)
    try:
        return run_python(code, NODE_ENV, python=str(LEGACY_PYTHON), cwd=workdir, timeout=300)["per_call"]
    except RuntimeError as err:
        print(f"legacy stack failed: {err}", file=sys.stderr)
        return None
    finally:
        server.stop()


# Measuring -------------------------------------------------------------------


@dataclass
class Run:
    """One run: its options, its folders, the servers it started."""

    args: argparse.Namespace
    tmp: Path
    logdir: Path
    servers: list[NodeServer] = field(default_factory=list)
    hosts: dict[str, NodeServer] = field(default_factory=dict)

    def row(self, label: str, value: str, ratio: str = "") -> None:
        print(f"  {label:<58} {value:>14} {ratio}", flush=True)

    def versus(self, label: str, base: Call, call: Call | None, calls: int) -> None:
        """``call`` against ``base`` (the floor), alternating round by round."""
        if call is not None:
            _, seconds, ratio = alternate(base, call, calls, self.args.rounds)
            self.row(label, f"{seconds * 1e6:8.1f} us", f"{ratio:.2f} x")

    def floor_row(self, label: str, call: Call, calls: int) -> float:
        seconds = per_call(call, calls, self.args.rounds)
        self.row(label, f"{seconds * 1e6:8.1f} us", "1.00 x")
        return seconds


def start_servers(run: Run) -> NodeServer:
    """The floor and one host of each implementation there is; returns the floor."""
    floor = NodeServer(["node", str(FLOOR_ECHO)], fresh_log(run.logdir, "floor"))
    run.servers.append(floor)
    for impl, path in BINS.items():
        if not path.exists():
            continue
        try:
            run.hosts[impl] = NodeServer(host_cmd(impl), fresh_log(run.logdir, impl))
            run.servers.append(run.hosts[impl])
        except RuntimeError as err:
            print(f"skipping {impl}: {err}", file=sys.stderr)
    return floor


def against_floor(run: Run, floor: NodeServer, data: dict, n: int, target: str) -> tuple[Call, bytes]:
    """The floor, then Function.call and http.client against it, with ``data``;
    returns the floor's call and the request body."""
    body = serialize(data).encode()
    base = raw_client(floor.port, body)
    run.floor_row("floor: raw socket -> node:http echo", base, n)
    function = function_client(floor.url, data, BINS["npm-0.11"])
    run.versus(f"Function.call -> node:http echo (target <= {target} x)", base, function, n)
    run.versus("http.client -> node:http echo", base, http_client(floor.port, body), n)
    return base, body


def small_calls(run: Run, floor: NodeServer) -> None:
    n, rounds = run.args.calls, run.args.rounds
    print(f"per call, 50-byte echo ({n} calls x {rounds} rounds, alternating with the floor; median):")
    base, small = against_floor(run, floor, SMALL, n, "2")
    run.versus("requests.Session -> node:http echo", base, requests_client(floor.port, small), n // 5)
    for impl, server in run.hosts.items():
        run.versus(f"raw socket -> {impl} host", base, raw_client(server.port, small), n)
        run.versus(f"Function.call -> {impl} host", base, function_client(server.url, SMALL, BINS[impl]), n)
    if run.args.legacy:
        # It opens a new connection per call (requests.post): fewer calls are enough.
        seconds = legacy_per_call(max(100, n // 10), rounds, run.tmp, run.logdir)
        if seconds is not None:
            floor_seconds = per_call(base, n, rounds)
            label = "2015 stack: js-host 0.2.0 -> npm js-host 0.12.0"
            run.row(label, f"{seconds * 1e6:8.1f} us", f"{seconds / floor_seconds:.2f} x")


def large_calls(run: Run, floor: NodeServer) -> None:
    n = max(100, run.args.calls // 10)
    print(f"per call, 100 KB echo ({n} calls x {run.args.rounds} rounds, alternating with the floor):")
    against_floor(run, floor, LARGE, n, "1.3")


def threaded_calls(run: Run, floor: NodeServer) -> None:
    seconds, rounds = run.args.seconds, run.args.rounds
    print(f"throughput, 50-byte echo ({seconds} s x {rounds} rounds, alternating):")
    small = serialize(SMALL).encode()
    for threads in (2, 8):
        floor_runs, runs = [], []
        shared = function_client(floor.url, SMALL, BINS["npm-0.11"])
        for _ in range(rounds):
            floor_runs.append(throughput(lambda: raw_client(floor.port, small), threads, seconds))
            runs.append(throughput(lambda shared=shared: shared, threads, seconds))
        ratio = statistics.median(r / f for r, f in zip(runs, floor_runs))
        run.row(
            f"floor: {threads} threads, raw sockets", f"{statistics.median(floor_runs):8.0f} /s", "1.00 x"
        )
        label = f"Function.call: {threads} threads (target >= 0.8 x)"
        run.row(label, f"{statistics.median(runs):8.0f} /s", f"{ratio:.2f} x")


def start_up(run: Run) -> None:
    print("start-up (in new Python processes):")
    for impl in run.hosts:
        try:
            uncached, cached = configure_runs(impl, run.tmp / f"configure-{impl}", run.logdir, 2)
        except Exception as err:
            print(f"  configure with {impl} failed: {err}", file=sys.stderr)
            continue
        label = f"configure() -> running {impl} host"
        run.row(f"{label}, config read by node", f"{uncached['configure'] * 1e3:8.1f} ms")
        run.row(f"{label}, cached (target <= 50 ms)", f"{cached['configure'] * 1e3:8.1f} ms")
        run.row(f"configure() again in the same process ({impl})", f"{cached['reconfigure'] * 1e3:8.1f} ms")
    for impl in run.hosts:
        try:
            seconds = cold_start(impl, run.tmp / f"cold-{impl}")
        except Exception as err:
            print(f"  cold start with {impl} failed: {err}", file=sys.stderr)
            continue
        run.row(f"cold start, USE_MANAGER=True, {impl} (target <= 600 ms)", f"{seconds * 1e3:8.1f} ms")


def measure(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="js-host-bench-"))
    run = Run(args, tmp, tmp / "logs")
    run.logdir.mkdir()
    os.environ["JS_HOST_RUNTIME_DIR"] = str(tmp / "runtime")
    try:
        floor = start_servers(run)
        small_calls(run, floor)
        large_calls(run, floor)
        threaded_calls(run, floor)
        start_up(run)
    finally:
        for server in run.servers:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = options.parser(__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3000, help="calls per round for 50-byte bodies")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per threaded round")
    parser.add_argument("--legacy", action="store_true", help="also measure the 2015 stack (installs it)")
    args = parser.parse_args()
    exit_on_sigterm()  # stopped by timeout: the servers are still stopped
    quiet()
    measure(args)


if __name__ == "__main__":
    main()
