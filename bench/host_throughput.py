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
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
BODY = json.dumps({"message": "x" * 35}, sort_keys=True)  # 50 bytes, as the Python client sends it
assert len(BODY) == 50

SERVERS = {
    "floor (node:http)": ["node", str(BENCH / "node_echo.js"), "0"],
    "bundled js-host 1.0": [
        "node",
        str(ROOT / "js_host" / "node" / "bin" / "js-host.js"),
        str(BENCH / "host_echo.config.js"),
        "--json",
        "--port",
        "0",
    ],
    "npm js-host 0.11.7": [
        "node",
        str(ROOT / "tests" / "npm" / "node_modules" / "js-host" / "bin" / "js-host.js"),
        str(BENCH / "host_echo.config.js"),
        "--json",
        "--port",
        "0",
    ],
}
FLOOR, OURS, REFERENCE = SERVERS


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    print("bench: installing wrk (apt-get install -y wrk)", file=sys.stderr)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
    path = shutil.which("wrk")
    if not path:
        sys.exit("bench: wrk is not installed")
    return path


class Server:
    def __init__(self, name: str, cmd: list[str], workdir: Path) -> None:
        self.name = name
        self.output = workdir / (re.sub(r"\W+", "-", name) + ".out")
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "NODE_NO_WARNINGS": "1"},
                start_new_session=True,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            first = self.output.read_text(errors="replace").split("\n", 1)
            if len(first) == 2:
                status = json.loads(first[0])
                self.port = status["port"] if "port" in status else status["config"]["port"]
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        sys.exit(f"bench: {name} did not start:\n{self.output.read_text(errors='replace')}")

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the server process."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


def run_wrk(wrk: str, script: Path, port: int, seconds: float, connections: int) -> tuple[float, int]:
    result = subprocess.run(
        [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/function/echo",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    )
    match = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
    total = re.search(r"(\d+) requests in", result.stdout)
    if not match or not total:
        sys.exit(f"bench: unexpected wrk output:\n{result.stdout}\n{result.stderr}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    if bad:
        sys.exit(f"bench: {bad.group(1)} error responses from port {port}:\n{result.stdout}")
    return float(match.group(1)), int(total.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per server and round")
    parser.add_argument("--connections", type=int, default=8, help="kept-alive connections")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (the best one counts)")
    args = parser.parse_args()
    wrk = ensure_wrk()

    with tempfile.TemporaryDirectory(prefix="bench-host-") as tmp:
        workdir = Path(tmp)
        script = workdir / "post.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            f"wrk.body = {json.dumps(BODY)}\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
        best: dict[str, float] = {}
        cpu: dict[str, float] = {}
        servers: list[Server] = []
        try:
            for name, cmd in SERVERS.items():
                servers.append(Server(name, cmd, workdir))
            for server in servers:  # warm-up: JIT, connection setup
                run_wrk(wrk, script, server.port, 1, args.connections)
            for _ in range(args.rounds):
                for server in servers:
                    before = server.cpu_seconds()
                    rate, requests = run_wrk(wrk, script, server.port, args.duration, args.connections)
                    used = (server.cpu_seconds() - before) / requests * 1e6
                    best[server.name] = max(best.get(server.name, 0.0), rate)
                    cpu[server.name] = min(cpu.get(server.name, float("inf")), used)
        finally:
            for server in servers:
                server.stop()

    floor, reference = best[FLOOR], best[REFERENCE]
    print(
        f"\n50-byte JSON echo, wrk -t1 -c{args.connections}, {args.duration:g}s x {args.rounds} rounds "
        "(best), console output to a file"
    )
    print(
        "ms/request = 1000 / req/s (wall clock, the load generator shares the machine); "
        "CPU us/request = the server process's own CPU time per request\n"
    )
    print(
        f"{'server':<22} {'req/s':>9} {'ms/request':>11} {'vs floor':>9} {'CPU us/req':>11} "
        f"{'vs floor':>9} {'req/s vs 0.11.7':>16}"
    )
    for name in SERVERS:
        rate = best[name]
        print(
            f"{name:<22} {rate:>9.0f} {1000 / rate:>11.4f} {floor / rate:>8.2f}x {cpu[name]:>11.1f} "
            f"{cpu[name] / cpu[FLOOR]:>8.2f}x {rate / reference:>15.2f}x"
        )
    ours = best[OURS]

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

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


if __name__ == "__main__":
    main()
