#!/usr/bin/env python3
"""js-host against the alternatives, side by side, in one run on this machine.

    python3 bench/compare.py [--seconds 0.5] [--rounds 3] [--no-install]

Measured (a 50-byte and a 100 KB echo; 1, 2 and 8 threads; cold and warm start):

- the floor: a bare ``node:http`` echo (bench/client_floor_echo.js) called over
  a kept-alive raw socket with hand-written request bytes;
- this project: ``Function.call`` to the host directly, and through the caching
  proxy (gunicorn, file cache) on a hit and on a miss;
- nginx ``proxy_cache`` in front of the same host, hit and miss, called with the
  same ``Function.call`` (the bar for the proxy);
- the 2015 stack: PyPI js-host==0.2.0 + npm js-host@0.12.0 (bench/.venv-legacy and
  bench/legacy/node_modules, measured by bench/compare_legacy.py in that venv);
- PyExecJS (a Node process per call) and mini-racer (V8 in-process, no require).

Per-call time = wall time / calls answered by all threads (so with 8 threads it
is the inverse of throughput); the median over rounds, the subjects taking turns
within each round so that load from elsewhere weighs on all alike. Ratios are
against the floor at the same payload and thread count. Cold = from nothing to
the first answer (spawn the host / manager; create the context), warm = a new
Python process connecting to a running host (for PyExecJS and mini-racer: the
second call on the context).

Writes bench/results/compare.json (raw figures) and compare.png, and copies the
chart and the table to docs/bench.png and docs/bench.md. Installs what it needs
(pip: PyExecJS, mini-racer, matplotlib; the legacy venv and npm packages; apt:
nginx) unless --no-install; what cannot be installed or run is "n/a" with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
sys.path[:0] = [str(ROOT), str(BENCH)]

import client_calls as cc  # noqa: E402  (bench/client_calls.py: floor, clients, start-up)
import proxy_cache as pc  # noqa: E402  (bench/proxy_cache.py: nginx, gunicorn)

from js_host import verbosity  # noqa: E402
from js_host.conf import settings  # noqa: E402
from js_host.function import Function, serialize  # noqa: E402
from js_host.host import JSHost  # noqa: E402

RESULTS = BENCH / "results"
DOCS = ROOT / "docs"
ENV = {**os.environ, "NODE_NO_WARNINGS": "1"}

PAYLOADS = {"50 B": cc.SMALL, "100 KB": cc.LARGE}
THREADS = (1, 2, 8)
ECHO_JS = "function echo(data) { return JSON.stringify(data); }"

FLOOR = "floor: raw socket -> node:http echo"
DIRECT = "js-host: Function.call -> host"
PROXY_HIT = "js-host: Function.call -> proxy, hit"
PROXY_MISS = "js-host: Function.call -> proxy, miss"
NGINX_HIT = "nginx proxy_cache, hit"
NGINX_MISS = "nginx proxy_cache, miss"
LEGACY = "2015: js-host 0.2.0 + npm 0.12"
EXECJS = "PyExecJS (node per call)"
RACER = "mini-racer (in-process V8)"
ORDER = [FLOOR, DIRECT, PROXY_HIT, PROXY_MISS, NGINX_HIT, NGINX_MISS, LEGACY, EXECJS, RACER]

# A call factory: make(payload name) -> a function returning a per-thread call.
Maker = Callable[[str], Callable[[], Callable[[], object]]]


# -- installing -------------------------------------------------------------------------------


def pip_install(module: str, package: str, allow: bool) -> str | None:
    """Import ``module``, pip-installing ``package`` first if needed; None or the reason it failed."""
    try:
        __import__(module)
        return None
    except ImportError:
        pass
    if not allow:
        return f"{package} is not installed (--no-install)"
    print(f"installing {package} with pip ...", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", package],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        return f"pip install {package} failed: {done.stderr.strip()[-200:]}"
    try:
        __import__(module)
    except ImportError as err:
        return f"{package} installed but not importable: {err}"
    return None


def ensure_nginx(allow: bool) -> str | None:
    if pc._which("nginx"):
        return None
    if not allow:
        return "nginx is not installed (--no-install)"
    try:
        pc.ensure_tools()  # apt-get install nginx (and wrk), bounded in time
    except (subprocess.SubprocessError, OSError) as err:
        return f"apt-get install nginx failed: {err}"
    return None if pc._which("nginx") else "nginx is not installed"


# -- measuring --------------------------------------------------------------------------------


def per_call(make: Callable[[], Callable[[], object]], threads: int, seconds: float) -> float:
    """Seconds per call: wall time / calls answered by ``threads`` threads in ``seconds``."""
    answered, elapsed = cc.run_threads(make, threads, seconds)
    return elapsed / max(1, answered)


def median_of(runs: int, measure: Callable[[], float]) -> list[float]:
    return [measure() for _ in range(runs)]


def function_on(url: str, bin_path: Path) -> Function:
    return Function("echo", host=JSHost(str(cc.CONFIG), url_override=url, bin_path=str(bin_path)))


_unique = itertools.count()
_run = uuid.uuid4().hex[:8]


def function_maker(url: str, *, miss: bool = False) -> Maker:
    """Function.call against ``url``; with ``miss``, every call's data differs (a cache miss)."""
    function = function_on(url, cc.BINS["bundled"])

    def make(payload: str) -> Callable[[], Callable[[], object]]:
        data = PAYLOADS[payload]
        if miss:
            return lambda: lambda: function.call(**data, n=f"{_run}-{next(_unique)}")
        return lambda: lambda: function.call(**data)

    return make


def floor_maker(port: int) -> Maker:
    def make(payload: str) -> Callable[[], Callable[[], object]]:
        body = serialize(PAYLOADS[payload]).encode()
        return lambda: cc.raw_client(port, body)

    return make


def execjs_maker() -> Maker:
    import execjs

    context = execjs.compile(ECHO_JS)

    def make(payload: str) -> Callable[[], Callable[[], object]]:
        data = PAYLOADS[payload]
        return lambda: lambda: context.call("echo", data)

    return make


def racer_maker() -> Maker:
    from py_mini_racer import MiniRacer

    def make(payload: str) -> Callable[[], Callable[[], object]]:
        data = PAYLOADS[payload]

        def one() -> Callable[[], object]:
            context = MiniRacer()  # one V8 context per thread
            context.eval(ECHO_JS)
            return lambda: context.call("echo", data)

        return one

    return make


def cold_warm_execjs() -> tuple[float, float]:
    import execjs

    start = time.perf_counter()
    context = execjs.compile(ECHO_JS)
    context.call("echo", cc.SMALL)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    context.call("echo", cc.SMALL)
    return cold, time.perf_counter() - start


def cold_warm_racer() -> tuple[float, float]:
    from py_mini_racer import MiniRacer

    start = time.perf_counter()
    context = MiniRacer()
    context.eval(ECHO_JS)
    context.call("echo", cc.SMALL)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    context.call("echo", cc.SMALL)
    return cold, time.perf_counter() - start


def cold_spawn(cmd: list[str], logdir: Path, call: Callable[[cc.Server], object]) -> float:
    """Seconds from spawning ``cmd`` to the first answer of ``call``."""
    start = time.perf_counter()
    server = cc.Server(cmd, logdir)
    try:
        call(server)
        return time.perf_counter() - start
    finally:
        server.stop()


def warm_connect(tmp: Path, logdir: Path, runs: int) -> list[float]:
    """A new Python process: settings.configure() against a running host -> first answer."""
    workdir = tmp / "warm"
    workdir.mkdir()
    port = cc.free_port()
    (workdir / "host.config.js").write_text(
        cc.CONFIG.read_text().replace("module.exports = {", f"module.exports = {{\n  port: {port},")
    )
    server = cc.Server(["node", str(cc.BINS["bundled"]), str(workdir / "host.config.js"), "--json"], logdir)
    env = {**ENV, "JS_HOST_RUNTIME_DIR": str(tmp / "runtime")}
    code = cc.CONFIGURE_CODE.format(root=str(workdir), extra={})
    try:
        cc.run_python(code, env)  # the first one reads the config with node, then it is cached
        return [cc.run_python(code, env)["first_answer"] for _ in range(runs)]
    finally:
        server.stop()


def start_nginx(workdir: Path, upstream: str) -> tuple[Any, str]:
    """nginx with proxy_cache in front of ``upstream``, unprivileged, from its own prefix
    on a free port (bench/proxy_cache.py's configuration). As root, the whole of nginx
    runs as nobody (setpriv), not only its workers. Returns (process, base URL)."""
    prefix = workdir / "nginx"
    prefix.mkdir()
    port, pass_port = cc.free_port(), cc.free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(
        pc.NGINX_CONF.format(
            prefix=prefix, port=port, pass_port=pass_port, user="", upstream=upstream.split("//", 1)[1]
        )
    )
    cmd = [pc._which("nginx") or "nginx", "-e", "stderr", "-p", str(prefix), "-c", str(conf)]
    if os.geteuid() == 0:
        for path in (prefix, conf):
            os.chown(path, 65534, 65534)
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    proc = pc.Proc(cmd, workdir / "nginx.out")
    proc.wait_port(port)  # bounded: gives up (and stops nginx) after 15 s
    return proc, f"http://127.0.0.1:{port}"


class Legacy:
    """The 2015 stack, driven by bench/compare_legacy.py in bench/.venv-legacy."""

    def __init__(self, tmp: Path) -> None:
        self.workdir = tmp / "legacy"
        self.workdir.mkdir()
        port = cc.free_port()
        self.config = self.workdir / "host.config.js"
        self.config.write_text(
            cc.CONFIG.read_text().replace("module.exports = {", f"module.exports = {{\n  port: {port},")
        )

    def run(self, **opts: Any) -> dict[str, Any]:
        options = {
            "workdir": str(self.workdir),
            "config": str(self.config),
            "bin": str(cc.LEGACY_BIN),
            "small": cc.SMALL,
            "large": cc.LARGE,
            **opts,
        }
        proc = subprocess.Popen(
            [str(cc.LEGACY_VENV / "bin" / "python"), str(BENCH / "compare_legacy.py"), json.dumps(options)],
            cwd=self.workdir,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out, err = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        lines = out.strip().splitlines()
        for line in lines:
            with contextlib.suppress(ValueError):
                pid = json.loads(line).get("pid")
                if pid:
                    self.host_pid = pid
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"the 2015 stack failed: {err.strip()[-400:]}")
        return json.loads(lines[-1])

    def stop(self) -> None:
        pid = getattr(self, "host_pid", None)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)


# -- report -----------------------------------------------------------------------------------


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds >= 0.1:
        return f"{seconds * 1e3:.0f} ms"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} us"


def cell(results: dict[str, Any], name: str, payload: str, threads: int) -> str:
    subject = results["subjects"].get(name, {})
    if "error" in subject:
        return "n/a"
    runs = subject.get("calls", {}).get(payload, {}).get(str(threads))
    if not runs:
        return "n/a"
    value = statistics.median(runs)
    paired = subject.get("ratios", {}).get(payload, {}).get(str(threads))
    if name == FLOOR:
        ratio = 1.0
    elif paired:  # the median of each measurement's ratio to the floor measured just before it
        ratio = statistics.median(paired)
    else:
        ratio = value / statistics.median(results["subjects"][FLOOR]["calls"][payload][str(threads)])
    return f"{fmt_time(value)} ({ratio:.1f}x)"


def start_cell(results: dict[str, Any], name: str, kind: str) -> str:
    runs = results["subjects"].get(name, {}).get(kind)
    return fmt_time(statistics.median(runs)) if runs else "-"


def table(results: dict[str, Any]) -> list[list[str]]:
    head = ["", *(f"{p} x{t}" for p in PAYLOADS for t in THREADS), "cold", "warm"]
    rows = [head]
    for name in ORDER:
        if name not in results["subjects"]:
            continue
        rows.append(
            [
                name,
                *(cell(results, name, p, t) for p in PAYLOADS for t in THREADS),
                start_cell(results, name, "cold"),
                start_cell(results, name, "warm"),
            ]
        )
    return rows


def print_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        for row in rows
    ]
    return "\n".join(lines)


def versus(results: dict[str, Any], name: str, other: str) -> str | None:
    """``other``'s per-call time over ``name``'s, for each payload and thread count."""
    subjects = results["subjects"]
    if not subjects.get(name, {}).get("calls") or not subjects.get(other, {}).get("calls"):
        return None
    parts = []
    for payload in PAYLOADS:
        for threads in THREADS:
            mine = subjects[name]["calls"].get(payload, {}).get(str(threads))
            theirs = subjects[other]["calls"].get(payload, {}).get(str(threads))
            if mine and theirs:
                ratio = statistics.median(theirs) / statistics.median(mine)
                parts.append(f"{payload} x{threads}: {ratio:.1f}x")
    return ", ".join(parts)


def summary(results: dict[str, Any]) -> list[str]:
    lines = []
    for name, other, what in (
        (DIRECT, LEGACY, "Function.call -> host is faster than the 2015 stack by"),
        (DIRECT, EXECJS, "Function.call -> host is faster than PyExecJS by"),
        (NGINX_HIT, PROXY_HIT, "an nginx proxy_cache hit is faster than a js-host proxy hit by"),
    ):
        figures = versus(results, name, other)
        if figures:
            lines.append(f"- {what}: {figures}")
    return lines


def markdown(results: dict[str, Any], rows: list[list[str]]) -> str:
    out = [
        "# Benchmark: js-host against the alternatives",
        "",
        f"Measured by `python3 bench/compare.py` on {results['machine']['date']} "
        f"({results['machine']['cpus']} CPUs, Python {results['machine']['python']}, "
        f"Node {results['machine']['node']}, "
        f"load average {results['machine'].get('load', 0):.1f} at the start). "
        "Per-call time (wall time / calls of all threads, "
        f"median of {results['rounds']} rounds of {results['seconds']} s) and, in brackets, "
        "the ratio to the floor (a bare `node:http` echo over a raw kept-alive socket) at the same "
        "payload and thread count. Cold: from nothing to the first answer; warm: a new Python "
        "process connecting to a running host (PyExecJS, mini-racer: the second call).",
        "",
        "| " + " | ".join(["subject", *rows[0][1:]]) + " |",
        "|" + "---|" * len(rows[0]),
    ]
    out += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    out += ["", *summary(results)]
    notes = [f"- {name}: {s['error']}" for name, s in results["subjects"].items() if "error" in s]
    notes += [f"- {name}: {s['note']}" for name, s in results["subjects"].items() if s.get("note")]
    if notes:
        out += ["", *notes]
    out += ["", "![per-call time, log scale](bench.png)", ""]
    return "\n".join(out)


def tick(us: float) -> str:
    if us >= 1e6:
        return f"{us / 1e6:g} s"
    if us >= 1e3:
        return f"{us / 1e3:g} ms"
    return f"{us:g} µs"


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    names = [n for n in ORDER if results["subjects"].get(n, {}).get("calls")]
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.55 * len(names) + 2.2), sharey=True)
    colors = {1: "#1f77b4", 2: "#ff7f0e", 8: "#2ca02c"}
    height = 0.26
    for ax, payload in zip(axes, PAYLOADS):
        for k, threads in enumerate(THREADS):
            ys, xs = [], []
            for i, name in enumerate(names):
                runs = results["subjects"][name]["calls"].get(payload, {}).get(str(threads))
                if runs:
                    ys.append(i + (k - 1) * height)
                    xs.append(statistics.median(runs) * 1e6)
            ax.barh(
                ys, xs, height=height, color=colors[threads], label=f"{threads} thread{'s' * (threads > 1)}"
            )
            for y, x in zip(ys, xs):
                ax.text(x * 1.08, y, fmt_time(x / 1e6), va="center", fontsize=7)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda us, _: tick(us)))
        ax.set_title(f"{payload} echo: time per call (log scale; lower is better)", fontsize=10)
        ax.grid(axis="x", which="major", alpha=0.3)
        ax.set_xlim(right=ax.get_xlim()[1] * 4)
    axes[0].set_yticks(range(len(names)))
    axes[0].set_yticklabels(names, fontsize=9)
    axes[0].invert_yaxis()
    axes[1].legend(loc="lower right", fontsize=8)
    fig.suptitle(
        "js-host vs the alternatives (per-call time = wall time / calls of all threads, median)", fontsize=11
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- the run ----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=0.4, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (the median counts)")
    parser.add_argument("--no-install", action="store_true", help="do not install missing tools")
    args = parser.parse_args()
    allow = not args.no_install
    started_at = time.monotonic()
    settings.VERBOSITY = verbosity.SILENT

    missing = {
        EXECJS: pip_install("execjs", "PyExecJS", allow),
        RACER: pip_install("py_mini_racer", "mini-racer", allow),
        LEGACY: cc.ensure_legacy(allow),
        NGINX_HIT: ensure_nginx(allow),
    }
    missing[NGINX_MISS] = missing[NGINX_HIT]
    chart_missing = pip_install("matplotlib", "matplotlib", allow)

    tmp = Path(tempfile.mkdtemp(prefix="js-host-compare-"))
    os.chmod(tmp, 0o755)  # nginx workers (nobody) must reach their prefix
    logdir = tmp / "logs"
    logdir.mkdir()
    os.environ["JS_HOST_RUNTIME_DIR"] = str(tmp / "runtime")
    results: dict[str, Any] = {
        "machine": {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip(),
            "platform": platform.platform(),
            # Other work on the machine weighs on every figure: the load when the run started.
            "load": os.getloadavg()[0],
        },
        "seconds": args.seconds,
        "rounds": args.rounds,
        "subjects": {name: {"error": reason} for name, reason in missing.items() if reason},
    }
    stoppable: list[Any] = []
    legacy: Legacy | None = None
    try:
        floor = cc.Server(["node", str(BENCH / "client_floor_echo.js")], logdir)
        stoppable.append(floor)
        host = cc.Server(["node", str(cc.BINS["bundled"]), str(cc.CONFIG), "--json", "--port", "0"], logdir)
        stoppable.append(host)
        # log_level=info: start_proxy waits for the workers' "Booting worker" lines.
        proxy, proxy_url = pc.start_proxy(tmp, host.url, cache=f"file://{tmp}/proxy-cache", log_level="info")
        stoppable.append(proxy)
        makers: dict[str, Maker] = {
            FLOOR: floor_maker(floor.port),
            DIRECT: function_maker(host.url),
            PROXY_HIT: function_maker(proxy_url),
            PROXY_MISS: function_maker(proxy_url, miss=True),
        }
        if not missing[NGINX_HIT]:
            try:
                nginx, nginx_url = start_nginx(tmp, host.url)
                stoppable.append(nginx)
                makers[NGINX_HIT] = function_maker(nginx_url)
                makers[NGINX_MISS] = function_maker(nginx_url, miss=True)
            except Exception as err:
                for name in (NGINX_HIT, NGINX_MISS):
                    results["subjects"][name] = {"error": f"nginx did not start: {err}"[:300]}
        if not missing[EXECJS]:
            makers[EXECJS] = execjs_maker()
        if not missing[RACER]:
            makers[RACER] = racer_maker()

        print(
            f"per call: {args.rounds} rounds x {args.seconds} s, each subject right after the floor",
            flush=True,
        )
        calls: dict[str, dict[str, dict[str, list[float]]]] = {name: {} for name in makers}
        ratios: dict[str, dict[str, dict[str, list[float]]]] = {name: {} for name in makers}
        for r in range(args.rounds):
            for payload in PAYLOADS:
                for threads in THREADS:
                    for name, make in makers.items():
                        if name == FLOOR or "error" in results["subjects"].get(name, {}):
                            continue
                        try:
                            base = per_call(makers[FLOOR](payload), threads, args.seconds)
                            value = per_call(make(payload), threads, args.seconds)
                        except Exception as err:
                            results["subjects"][name] = {"error": f"{type(err).__name__}: {err}"[:300]}
                            print(f"  {name}: failed: {err}", file=sys.stderr)
                            continue
                        calls[FLOOR].setdefault(payload, {}).setdefault(str(threads), []).append(base)
                        calls[name].setdefault(payload, {}).setdefault(str(threads), []).append(value)
                        ratios[name].setdefault(payload, {}).setdefault(str(threads), []).append(value / base)
            print(f"  round {r + 1} done ({time.monotonic() - started_at:.0f} s)", flush=True)
        for name, figures in calls.items():
            results["subjects"].setdefault(name, {})
            if "error" not in results["subjects"][name]:
                results["subjects"][name]["calls"] = figures
                results["subjects"][name]["ratios"] = ratios[name]

        print("the 2015 stack ...", flush=True)
        if not missing[LEGACY]:
            try:
                legacy = Legacy(tmp)
                measured = legacy.run(threads=list(THREADS), seconds=args.seconds, rounds=args.rounds)
                warm = [legacy.run(warm=True)["warm"] for _ in range(args.rounds)]
                figures = {}
                for key, runs in measured["calls"].items():
                    payload, threads = key.rsplit(" ", 1)
                    figures.setdefault(payload, {})[threads] = runs
                results["subjects"][LEGACY] = {"calls": figures, "cold": [measured["cold"]], "warm": warm}
            except Exception as err:
                results["subjects"][LEGACY] = {"error": str(err)[:300]}
                print(f"  the 2015 stack failed: {err}", file=sys.stderr)
            finally:
                if legacy:
                    legacy.stop()

        print("start-up ...", flush=True)
        subjects = results["subjects"]
        subjects[FLOOR]["cold"] = median_of(
            args.rounds,
            lambda: cold_spawn(
                ["node", str(BENCH / "client_floor_echo.js")],
                logdir,
                lambda s: cc.raw_client(s.port, b"{}")(),
            ),
        )
        subjects[DIRECT]["cold"] = median_of(
            args.rounds,
            lambda: cold_spawn(
                ["node", str(cc.BINS["bundled"]), str(cc.CONFIG), "--json", "--port", "0"],
                logdir,
                lambda s: function_on(s.url, cc.BINS["bundled"]).call(text="x"),
            ),
        )
        subjects[DIRECT]["warm"] = warm_connect(tmp, logdir, args.rounds)
        manager = []
        for i in range(args.rounds):
            folder = tmp / f"manager-{i}"
            folder.mkdir()
            try:
                manager.append(cc.cold_start("bundled", folder))
            except Exception as err:
                print(f"  cold start with the manager failed: {err}", file=sys.stderr)
        if manager:
            subjects[DIRECT]["note"] = (
                f"cold = spawn the host and call it; with USE_MANAGER=True (spawn the manager, "
                f"which spawns the host) it is {fmt_time(statistics.median(manager))}"
            )
            subjects[DIRECT]["cold_manager"] = manager
        for name, measure in ((EXECJS, cold_warm_execjs), (RACER, cold_warm_racer)):
            if "error" not in subjects.get(name, {"error": 1}):
                pairs = [measure() for _ in range(args.rounds)]
                subjects[name]["cold"] = [c for c, _ in pairs]
                subjects[name]["warm"] = [w for _, w in pairs]
    finally:
        for proc in reversed(stoppable):
            proc.stop()
        if legacy:
            legacy.stop()

    rows = table(results)
    text = print_table(rows)
    print()
    print(text)
    for line in summary(results):
        print(line)
    for name, subject in results["subjects"].items():
        if "error" in subject:
            print(f"  n/a {name}: {subject['error']}")
        if subject.get("note"):
            print(f"  {name}: {subject['note']}")
    RESULTS.mkdir(exist_ok=True)
    DOCS.mkdir(exist_ok=True)
    results["table"] = rows
    (RESULTS / "compare.json").write_text(json.dumps(results, indent=1))
    (DOCS / "bench.md").write_text(markdown(results, rows))
    if chart_missing:
        print(f"no chart: {chart_missing}")
    else:
        chart(results, RESULTS / "compare.png")
        shutil.copy(RESULTS / "compare.png", DOCS / "bench.png")
    shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"\nwrote {RESULTS / 'compare.json'}, {RESULTS / 'compare.png'}, docs/bench.md, docs/bench.png "
        f"in {time.monotonic() - started_at:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
