"""Per-request time of the Node host for a 50-byte JSON echo, against a floor.

Three servers answer the same ``POST /function/echo`` with a 50-byte JSON body,
driven by wrk over kept-alive connections on 127.0.0.1, in the same run:

- floor: a bare ``node:http`` echo server (bench/node_echo.js);
- bundled: the project's host (js_host/node/bin/js-host.js);
- npm-0.11: js-host 0.11.7 from npm (tests/npm), the reference.

Each host runs as it does in production: its console output goes to a file.
Targets: bundled <= 1.2 x the floor's time per request, and >= 5 x the
throughput of js-host 0.11.7.

Two measures of the time per request: wall clock (1 / req/s) and the server
process's own CPU time per request (/proc/<pid>/stat). wrk needs about as much
CPU per request as a bare node:http server, so on a small machine the floor's
req/s is the load generator's limit, and other load on the machine moves the
wall-clock numbers; the CPU time per request is the steadier measure of the
server itself.

Usage: python3 bench/host_throughput.py [--duration 5] [--connections 8] [--rounds 2]
(installs wrk with apt-get when it is missing; about 5 s per server and round).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

from support import BENCH, BINS, options
from support.install import ensure_tools
from support.processes import NodeServer
from support.tables import format_table
from support.wrk import wrk

BODY = json.dumps({"message": "x" * 35}, sort_keys=True).encode()  # 50 bytes, as the Python client sends it
assert len(BODY) == 50

ECHO_CONFIG = str(BENCH / "host_echo.config.js")
SERVERS = {
    "floor (node:http)": ["node", str(BENCH / "node_echo.js"), "0"],
    "bundled js-host 1.0": ["node", str(BINS["bundled"]), ECHO_CONFIG, "--json", "--port", "0"],
    "npm js-host 0.11.7": ["node", str(BINS["npm-0.11"]), ECHO_CONFIG, "--json", "--port", "0"],
}
FLOOR, OURS, REFERENCE = SERVERS


def load(server: NodeServer, seconds: float, connections: int, workdir: Path) -> tuple[float, int]:
    """wrk -t1 against ``server`` for ``seconds``: (req/s, requests); every answer a 2xx."""
    url = f"{server.url}/function/echo"
    result = wrk(url, BODY, duration=seconds, connections=connections, workdir=workdir, threads=1)
    if result["errors"]:
        sys.exit(f"bench: {result['errors']} error responses from port {server.port}")
    return result["rps"], result["requests"]


def measure(args: argparse.Namespace, workdir: Path) -> tuple[dict[str, float], dict[str, float]]:
    """The best req/s and the lowest CPU microseconds per request of each server."""
    best: dict[str, float] = {}
    cpu: dict[str, float] = {}
    servers: dict[str, NodeServer] = {}
    try:
        for name, cmd in SERVERS.items():
            servers[name] = NodeServer(cmd, workdir / (re.sub(r"\W+", "-", name) + ".out"))
        for server in servers.values():  # warm-up: JIT, connection setup
            load(server, 1, args.connections, workdir)
        for _ in range(args.rounds):
            for name, server in servers.items():
                before = server.cpu_seconds()
                rate, requests = load(server, args.duration, args.connections, workdir)
                used = (server.cpu_seconds() - before) / requests * 1e6
                best[name] = max(best.get(name, 0.0), rate)
                cpu[name] = min(cpu.get(name, float("inf")), used)
    except RuntimeError as err:  # a server that did not start: its log says why
        sys.exit(f"bench: {err}")
    finally:
        for server in servers.values():
            server.stop()
    return best, cpu


def report(args: argparse.Namespace, best: dict[str, float], cpu: dict[str, float]) -> None:
    floor, reference = best[FLOOR], best[REFERENCE]
    print(
        f"\n50-byte JSON echo, wrk -t1 -c{args.connections}, {args.duration:g}s x {args.rounds} rounds "
        "(best), console output to a file"
    )
    print(
        "ms/request = 1000 / req/s (wall clock, the load generator shares the machine); "
        "CPU us/request = the server process's own CPU time per request\n"
    )
    rows = [["server", "req/s", "ms/request", "vs floor", "CPU us/req", "vs floor", "req/s vs 0.11.7"]]
    for name in SERVERS:
        rate = best[name]
        rows.append(
            [
                name,
                f"{rate:.0f}",
                f"{1000 / rate:.4f}",
                f"{floor / rate:.2f}x",
                f"{cpu[name]:.1f}",
                f"{cpu[name] / cpu[FLOOR]:.2f}x",
                f"{rate / reference:.2f}x",
            ]
        )
    print(format_table(rows, widths=[22, 9, 11, 9, 11, 9, 16], sep=" "))

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    ours = best[OURS]
    wall, cpu_ratio = floor / ours, cpu[OURS] / cpu[FLOOR]
    speedup, cpu_speedup = ours / reference, cpu[REFERENCE] / cpu[OURS]
    print(
        f"\ntarget time per request <= 1.2 x floor: {wall:.2f}x wall clock ({verdict(wall <= 1.2)}), "
        f"{cpu_ratio:.2f}x CPU ({verdict(cpu_ratio <= 1.2)})"
    )
    print(
        f"target >= 5 x js-host 0.11.7: {speedup:.1f}x req/s ({verdict(speedup >= 5)}), "
        f"{cpu_speedup:.1f}x less CPU per request ({verdict(cpu_speedup >= 5)})"
    )


def main() -> None:
    parser = options.parser(__doc__)
    options.add_wrk_options(parser, duration=5.0, rounds=2, connections=8)
    args = parser.parse_args()
    ensure_tools("wrk")
    with tempfile.TemporaryDirectory(prefix="bench-host-") as tmp:
        best, cpu = measure(args, Path(tmp))
    report(args, best, cpu)


if __name__ == "__main__":
    main()
