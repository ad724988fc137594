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
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from js_host import verbosity  # noqa: E402
from js_host.function import Function, serialize  # noqa: E402
from js_host.host import JSHost  # noqa: E402

BENCH = ROOT / "bench"
CONFIG = BENCH / "client_echo.config.js"
BINS = {
    "bundled": ROOT / "js_host" / "node" / "bin" / "js-host.js",
    "npm-0.11": ROOT / "tests" / "npm" / "node_modules" / "js-host" / "bin" / "js-host.js",
}
ENV = {**os.environ, "NODE_NO_WARNINGS": "1"}
SMALL = {"text": "x" * 38}  # 50 bytes of canonical JSON
LARGE = {"text": "x" * (100 * 1024 - 12)}  # 100 KB
assert len(serialize(SMALL)) == 50 and len(serialize(LARGE)) == 100 * 1024


# Processes -----------------------------------------------------------------


class Server:
    """A node process that prints its port (or its status JSON) on its first line."""

    def __init__(self, cmd: list[str], logdir: Path) -> None:
        self.log = logdir / f"{len(list(logdir.iterdir()))}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=ENV,
                start_new_session=True,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            first = self.log.read_text().split("\n", 1)
            if len(first) == 2:
                line = first[0]
                self.port = int(line) if line.isdigit() else int(json.loads(line)["config"]["port"])
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{cmd} did not start: {self.log.read_text()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Clients ---------------------------------------------------------------------


def raw_client(port: int, body: bytes) -> Callable[[], bytes]:
    """The floor's client: hand-written request bytes on one kept-alive socket."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    request = (
        f"POST /function/echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    length = re.compile(rb"content-length: *(\d+)", re.I)

    def call() -> bytes:
        sock.sendall(request)
        data = sock.recv(262144)
        while b"\r\n\r\n" not in data:
            data += sock.recv(262144)
        head, _, rest = data.partition(b"\r\n\r\n")
        size = int(length.search(head).group(1))
        while len(rest) < size:
            rest += sock.recv(262144)
        return rest

    return call


def http_client(port: int, body: bytes) -> Callable[[], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Content-Type": "application/json"}

    def call() -> bytes:
        conn.request("POST", "/function/echo", body, headers)
        return conn.getresponse().read()

    return call


def requests_client(port: int, body: bytes) -> Callable[[], bytes] | None:
    try:
        import requests
    except ImportError:
        return None
    session = requests.Session()
    url = f"http://127.0.0.1:{port}/function/echo"
    headers = {"Content-Type": "application/json"}
    return lambda: session.post(url, data=body, headers=headers).content


def function_client(url: str, data: dict, bin_path: Path) -> Callable[[], str]:
    host = JSHost(str(CONFIG), url_override=url, bin_path=str(bin_path))
    function = Function("echo", host=host)
    return lambda: function.call(**data)


# Measuring -------------------------------------------------------------------


def per_call(call: Callable[[], object], n: int, rounds: int) -> float:
    """Median over rounds of the mean seconds per call."""
    return compare(call, call, n, rounds)[1]


def _timed(call: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) / n


def compare(
    base: Callable[[], object], call: Callable[[], object], n: int, rounds: int
) -> tuple[float, float, float]:
    """Seconds per call of ``base`` and ``call`` and their ratio, medians over rounds.

    The two alternate round by round, so that load from other processes on the
    machine weighs on both alike; the ratio is the median of the rounds' ratios.
    """
    for _ in range(max(50, n // 10)):
        base()
        call()
    base_times, times = [], []
    for _ in range(rounds):
        base_times.append(_timed(base, n))
        times.append(_timed(call, n))
    ratios = [t / b for t, b in zip(times, base_times)]
    return statistics.median(base_times), statistics.median(times), statistics.median(ratios)


def run_threads(make: Callable[[], Callable[[], object]], threads: int, seconds: float) -> tuple[int, float]:
    """Calls answered by ``threads`` threads in ``seconds`` (each with its own ``make()``,
    called once first to connect and warm up), and the wall time they took."""
    calls = [make() for _ in range(threads)]
    for call in calls:
        call()
    counts = [0] * threads
    stop = threading.Event()
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            while not stop.is_set():
                calls[i]()
                counts[i] += 1
        except BaseException as err:  # raised below: a failing subject is not a figure
            errors.append(err)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    if errors:
        raise errors[0]
    return sum(counts), time.perf_counter() - start


def throughput(make: Callable[[], Callable[[], object]], threads: int, seconds: float, rounds: int) -> float:
    """Median over rounds of the calls per second of ``threads`` threads."""
    results = []
    for _ in range(rounds):
        answered, elapsed = run_threads(make, threads, seconds)
        results.append(answered / elapsed)
    return statistics.median(results)


def run_python(code: str, env: dict[str, str]) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


CONFIGURE_CODE = """
    import json, time
    from js_host.conf import settings
    t0 = time.perf_counter()
    settings.configure(SOURCE_ROOT={root!r}, VERBOSITY=0, **{extra!r})
    t1 = time.perf_counter()
    from js_host.function import Function
    Function("echo").call(text="x")
    t2 = time.perf_counter()
    settings.configure(SOURCE_ROOT={root!r}, VERBOSITY=0, **{extra!r})
    t3 = time.perf_counter()
    print(json.dumps({{"configure": t1 - t0, "first_answer": t2 - t0, "reconfigure": t3 - t2}}))
"""


def configure_times(impl: str, tmp: Path, logdir: Path) -> dict[str, float]:
    """settings.configure() in a new process against a running host: without and with the status cache."""
    workdir = tmp / f"configure-{impl}"
    workdir.mkdir()
    port = free_port()
    (workdir / "host.config.js").write_text(
        CONFIG.read_text().replace("module.exports = {", f"module.exports = {{\n  port: {port},")
    )
    server = Server(["node", str(BINS[impl]), str(workdir / "host.config.js"), "--json"], logdir)
    try:
        env = {**ENV, "JS_HOST_RUNTIME_DIR": str(workdir / "runtime")}
        code = CONFIGURE_CODE.format(root=str(workdir), extra={"BIN_PATH": str(BINS[impl])})
        cold = run_python(code, env)  # reads the config with node
        warm = run_python(code, env)  # the status cached in the runtime dir
    finally:
        server.stop()
    return {"uncached": cold["configure"], "cached": warm["configure"], "in-process": warm["reconfigure"]}


def cold_start(impl: str, tmp: Path) -> float:
    """Seconds from settings.configure(USE_MANAGER=True) to the first answer, nothing running before."""
    workdir = tmp / f"cold-{impl}"
    workdir.mkdir()
    port = free_port()
    (workdir / "host.config.js").write_text(
        CONFIG.read_text().replace(
            "module.exports = {", f"module.exports = {{\n  port: {port}, disconnectTimeout: 200,"
        )
    )
    env = {**ENV, "JS_HOST_RUNTIME_DIR": str(workdir / "runtime")}
    code = CONFIGURE_CODE.format(root=str(workdir), extra={"BIN_PATH": str(BINS[impl]), "USE_MANAGER": True})
    try:
        return run_python(code, env)["first_answer"]
    finally:
        stop_code = f"""
            import json
            from js_host.conf import settings
            from js_host.manager import JSHostManager
            settings.configure(SOURCE_ROOT={str(workdir)!r}, VERBOSITY=0, BIN_PATH={str(BINS[impl])!r},
                               CONNECT_ONCE_CONFIGURED=False)
            m = JSHostManager()
            if m.is_running():
                m.stop()
            print("{{}}")
        """
        run_python(stop_code, env)


# Legacy: the 2015 stack --------------------------------------------------------

LEGACY_VENV = BENCH / ".venv-legacy"
LEGACY_NODE = BENCH / "legacy"
LEGACY_BIN = LEGACY_NODE / "node_modules" / "js-host" / "bin" / "js-host.js"


def ensure_legacy(allow: bool) -> str | None:
    """The 2015 stack in bench/.venv-legacy and bench/legacy; None or the reason it is missing."""
    python = LEGACY_VENV / "bin" / "python"
    try:
        # (import js_host.conf only: the 2015 js_host.host connects to a host on import)
        if (
            not python.exists()
            or subprocess.run(
                [str(python), "-c", "import js_host.conf"], capture_output=True, timeout=60
            ).returncode
        ):
            if not allow:
                return "bench/.venv-legacy is missing (--no-install)"
            print("installing js-host==0.2.0 into bench/.venv-legacy ...", flush=True)
            subprocess.run([sys.executable, "-m", "venv", str(LEGACY_VENV)], check=True, timeout=120)
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "js-host==0.2.0"],
                check=True,
                capture_output=True,
                timeout=300,
            )
        if not LEGACY_BIN.exists():
            if not allow:
                return "bench/legacy/node_modules is missing (--no-install)"
            print("installing npm js-host@0.12.0 into bench/legacy ...", flush=True)
            LEGACY_NODE.mkdir(exist_ok=True)
            subprocess.run(
                [
                    "npm",
                    "install",
                    "--prefix",
                    str(LEGACY_NODE),
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    "js-host@0.12.0",
                ],
                check=True,
                capture_output=True,
                env=ENV,
                timeout=300,
            )
    except (subprocess.SubprocessError, OSError) as err:
        return f"cannot install the 2015 stack: {err}"
    return None


def legacy_per_call(n: int, rounds: int, tmp: Path, logdir: Path) -> float | None:
    """Per-call seconds of js-host==0.2.0 + npm js-host@0.12.0 (installed on first use)."""
    python = LEGACY_VENV / "bin" / "python"
    missing = ensure_legacy(allow=True)
    if missing:
        raise RuntimeError(missing)
    bin_path = LEGACY_BIN
    workdir = tmp / "legacy"
    workdir.mkdir()
    port = free_port()
    (workdir / "host.config.js").write_text(
        CONFIG.read_text().replace("module.exports = {", f"module.exports = {{\n  port: {port},")
    )
    server = Server(["node", str(bin_path), str(workdir / "host.config.js"), "--json"], logdir)
    code = f"""
        import json, time, statistics
        from js_host.conf import settings
        settings.configure(SOURCE_ROOT={str(workdir)!r}, PATH_TO_BIN={str(bin_path)!r}, VERBOSITY=0)
        from js_host.function import Function
        f = Function("echo")
        for _ in range(100):
            f.call(**{SMALL!r})
        times = []
        for _ in range({rounds}):
            t = time.perf_counter()
            for _ in range({n}):
                f.call(**{SMALL!r})
            times.append((time.perf_counter() - t) / {n})
        print(json.dumps(statistics.median(times)))
    """
    try:
        result = subprocess.run(
            [str(python), "-c", textwrap.dedent(code)],
            cwd=workdir,
            env=ENV,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            print(f"legacy stack failed: {result.stderr.strip()[-500:]}", file=sys.stderr)
            return None
        return json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        server.stop()


# Main --------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=3000, help="calls per round for 50-byte bodies")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per threaded round")
    parser.add_argument("--legacy", action="store_true", help="also measure the 2015 stack (installs it)")
    args = parser.parse_args()

    from js_host.conf import settings

    # Stopped with SIGTERM (e.g. by timeout): still stop the servers in `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    settings.VERBOSITY = verbosity.SILENT
    tmp = Path(tempfile.mkdtemp(prefix="js-host-bench-"))
    logdir = tmp / "logs"
    logdir.mkdir()
    os.environ["JS_HOST_RUNTIME_DIR"] = str(tmp / "runtime")
    impls = [impl for impl, path in BINS.items() if path.exists()]
    servers: list[Server] = []
    rows: list[tuple[str, str, str]] = []

    def row(label: str, value: str, ratio: str = "") -> None:
        rows.append((label, value, ratio))
        print(f"  {label:<58} {value:>14} {ratio}", flush=True)

    try:
        floor = Server(["node", str(BENCH / "client_floor_echo.js")], logdir)
        servers.append(floor)
        hosts = {}
        for impl in impls:
            try:
                hosts[impl] = Server(["node", str(BINS[impl]), str(CONFIG), "--json", "--port", "0"], logdir)
                servers.append(hosts[impl])
            except RuntimeError as err:
                print(f"skipping {impl}: {err}", file=sys.stderr)

        n, rounds = args.calls, args.rounds
        print(f"per call, 50-byte echo ({n} calls x {rounds} rounds, alternating with the floor; median):")
        small = serialize(SMALL).encode()
        floor_small = raw_client(floor.port, small)

        def versus(label: str, call: Callable[[], object] | None, calls: int = n, base=floor_small) -> None:
            if call is None:
                return
            _, t, ratio = compare(base, call, calls, rounds)
            row(label, f"{t * 1e6:8.1f} us", f"{ratio:.2f} x")

        row(
            "floor: raw socket -> node:http echo",
            f"{per_call(floor_small, n, rounds) * 1e6:8.1f} us",
            "1.00 x",
        )
        versus(
            "Function.call -> node:http echo (target <= 2 x)",
            function_client(floor.url, SMALL, BINS["npm-0.11"]),
        )
        versus("http.client -> node:http echo", http_client(floor.port, small))
        versus("requests.Session -> node:http echo", requests_client(floor.port, small), n // 5)
        for impl, server in hosts.items():
            versus(f"raw socket -> {impl} host", raw_client(server.port, small))
            versus(f"Function.call -> {impl} host", function_client(server.url, SMALL, BINS[impl]))
        if args.legacy:
            # It opens a new connection per call (requests.post): fewer calls are enough.
            t = legacy_per_call(max(100, n // 10), rounds, tmp, logdir)
            if t is not None:
                base = per_call(floor_small, n, rounds)
                row(
                    "2015 stack: js-host 0.2.0 -> npm js-host 0.12.0",
                    f"{t * 1e6:8.1f} us",
                    f"{t / base:.2f} x",
                )

        n_large = max(100, n // 10)
        print(f"per call, 100 KB echo ({n_large} calls x {rounds} rounds, alternating with the floor):")
        large = serialize(LARGE).encode()
        floor_large = raw_client(floor.port, large)
        row(
            "floor: raw socket -> node:http echo",
            f"{per_call(floor_large, n_large, rounds) * 1e6:8.1f} us",
            "1.00 x",
        )
        versus(
            "Function.call -> node:http echo (target <= 1.3 x)",
            function_client(floor.url, LARGE, BINS["npm-0.11"]),
            n_large,
            floor_large,
        )
        versus("http.client -> node:http echo", http_client(floor.port, large), n_large, floor_large)

        print(f"throughput, 50-byte echo ({args.seconds} s x {rounds} rounds, alternating):")
        for threads in (2, 8):
            floor_runs, runs = [], []
            shared = function_client(floor.url, SMALL, BINS["npm-0.11"])
            for _ in range(rounds):
                floor_runs.append(throughput(lambda: raw_client(floor.port, small), threads, args.seconds, 1))
                runs.append(throughput(lambda shared=shared: shared, threads, args.seconds, 1))
            ratio = statistics.median(r / f for r, f in zip(runs, floor_runs))
            row(
                f"floor: {threads} threads, raw sockets", f"{statistics.median(floor_runs):8.0f} /s", "1.00 x"
            )
            row(
                f"Function.call: {threads} threads (target >= 0.8 x)",
                f"{statistics.median(runs):8.0f} /s",
                f"{ratio:.2f} x",
            )

        print("start-up (in new Python processes):")
        for impl in impls:
            try:
                times = configure_times(impl, tmp, logdir)
            except Exception as err:
                print(f"  configure with {impl} failed: {err}", file=sys.stderr)
                continue
            row(
                f"configure() -> running {impl} host, config read by node",
                f"{times['uncached'] * 1e3:8.1f} ms",
            )
            row(
                f"configure() -> running {impl} host, cached (target <= 50 ms)",
                f"{times['cached'] * 1e3:8.1f} ms",
            )
            row(f"configure() again in the same process ({impl})", f"{times['in-process'] * 1e3:8.1f} ms")
        for impl in impls:
            try:
                t = cold_start(impl, tmp)
            except Exception as err:
                print(f"  cold start with {impl} failed: {err}", file=sys.stderr)
                continue
            row(f"cold start, USE_MANAGER=True, {impl} (target <= 600 ms)", f"{t * 1e3:8.1f} ms")
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
