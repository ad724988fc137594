"""The development reloader's cost per request, with a host that loaded 2,000 files.

A config in a temp dir requires 2,000 small modules (20 folders of 100); the
manager runs it (private runtime dir, a pool of one worker: the manager's
default). A WSGI app makes one ``Function.call`` per request. In the same run,
called in turns round by round (medians):

- floor: the app alone (a request without the reloader);
- development: the app in ``JSHostMiddleware`` with ``USE_MANAGER`` (what
  ``runserver`` and a development gunicorn run): before each request the
  reloader's cheap check (what the watcher of the 2,000 files found, and a
  signal-0 ``kill`` of the host's pid), with inotify and with the polling
  thread (``JS_HOST_WATCH_POLLING=1``) stat'ing the 2,000 files every 0.5 s;
- full check: the reloader's full check before every request (a manager request,
  and stats of every loaded file: what the check cost before the watcher).

The cost per request is measured apart, where it is not lost in the call's
noise: the middleware around an app that calls nothing, minus that app alone.
Target: <= 0.05 ms per request.

Usage: python3 bench/reloader.py [--files 2000] [--calls 2000] [--rounds 5] [--no-docs]
(about 30 s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from support import BINS, import_this_checkout, options
from support.docs import run_started, section_head, write_own_section
from support.processes import free_port
from support.runs import alternate
from support.tables import fmt_time, format_table

import_this_checkout()

from js_host import verbosity  # noqa: E402
from js_host.conf import settings  # noqa: E402
from js_host.function import Function  # noqa: E402
from js_host.host import get_default_host  # noqa: E402
from js_host.middleware import JSHostMiddleware  # noqa: E402

FOLDERS = 20
TARGET_MS = 0.05
Environ = dict[str, Any]
App = Callable[[Environ, Callable[..., Any]], list[bytes]]


def write_project(root: Path, files: int, port: int) -> Path:
    """A config requiring ``files`` modules, spread over FOLDERS folders."""
    lines = []
    for i in range(files):
        folder = root / "components" / f"part{i % FOLDERS:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"m{i:04d}.js").write_text(f"module.exports = {{n: {i}}};\n")
        lines.append(f"  require('./components/part{i % FOLDERS:02d}/m{i:04d}.js').n,")
    config = root / "host.config.js"
    config.write_text(
        "'use strict';\n"
        f"const numbers = [\n{chr(10).join(lines)}\n];\n"
        "module.exports = {\n"
        f"  port: {port},\n"
        "  functions: {answer: function(data, cb) { cb(null, String(numbers.length)); }},\n"
        "};\n"
    )
    return config


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., Any]:
    return lambda data: None


def request(app: Callable[..., Any]) -> Callable[[], object]:
    environ: Environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "wsgi.url_scheme": "http"}

    def one() -> object:
        body = app(dict(environ), start_response)
        if hasattr(body, "close"):
            body.close()
        return body

    return one


def answering_app(answer: Function, expected: str) -> App:
    """The app under measurement: one ``Function.call`` per request, its answer checked."""

    def calling_app(environ: Environ, respond: Callable[..., Any]) -> list[bytes]:
        output = answer.call()
        if output != expected:
            raise RuntimeError(f"the host answered {output!r}, not {expected!r}")
        respond("200 OK", [("Content-Type", "text/plain")])
        return [output.encode()]

    return calling_app


def empty_app(environ: Environ, respond: Callable[..., Any]) -> list[bytes]:
    """An app that calls nothing: around it, the middleware's own cost shows."""
    respond("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def measure(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Every figure of the run, with the manager and its host started by the middleware
    (in ``root``) and stopped at the end."""
    config = write_project(root, args.files, free_port())
    settings.configure(
        SOURCE_ROOT=str(root),
        CONFIG_FILE=str(config),
        USE_MANAGER=True,
        BIN_PATH=str(BINS["bundled"]),
        CONNECT_ONCE_CONFIGURED=False,
        VERBOSITY=verbosity.SILENT,
    )
    calling_app = answering_app(Function("answer"), str(args.files))
    host = get_default_host()
    try:
        middleware = JSHostMiddleware(calling_app)  # starts the manager and the host
        figures = in_development(args, middleware, calling_app)
        reloader = middleware.reloader

        def full_check() -> object:
            reloader.check(host, connected=True)
            return calling_app({}, start_response)

        figures["full"] = alternate(request(calling_app), full_check, max(100, args.calls // 10), args.rounds)

        bare = JSHostMiddleware(empty_app, connect_on_init=False)
        figures["cost"] = cost(request(empty_app), request(bare), args)
        figures.update(polling(args, middleware, bare, calling_app))
    finally:
        manager = host.manager
        host.disconnect()
        host.stop()
        if manager is not None:
            manager.stop()
    return figures


def in_development(
    args: argparse.Namespace, middleware: JSHostMiddleware, calling_app: App
) -> dict[str, Any]:
    """The files the reloader watches, how, and a request in development against the app alone."""
    reloader = middleware.reloader
    request(middleware)()
    watched = len(reloader.files)
    if watched < args.files or reloader.changed():
        raise RuntimeError(f"the reloader watches {watched} files, changed={reloader.changed()}")
    return {
        "watched": watched,
        "mode": reloader.files.mode,
        "development": alternate(request(calling_app), request(middleware), args.calls, args.rounds),
    }


def polling(
    args: argparse.Namespace, middleware: JSHostMiddleware, bare: JSHostMiddleware, calling_app: App
) -> dict[str, Any]:
    """The same request and cost with the polling thread watching (JS_HOST_WATCH_POLLING=1)."""
    os.environ["JS_HOST_WATCH_POLLING"] = "1"
    try:
        middleware.reloader.forget()
        request(middleware)()  # a full check, then the polling thread watches
        bare.reloader.forget()
        request(bare)()
        if middleware.reloader.files.mode != "polling" or bare.reloader.files.mode != "polling":
            raise RuntimeError("JS_HOST_WATCH_POLLING=1 did not start the polling thread")
        time.sleep(1.0)  # a few passes of the thread over the files
        return {
            "polling": alternate(request(calling_app), request(middleware), args.calls, args.rounds),
            "polling_cost": cost(request(empty_app), request(bare), args),
        }
    finally:
        del os.environ["JS_HOST_WATCH_POLLING"]


def cost(base: Callable[[], object], call: Callable[[], object], args: argparse.Namespace) -> float:
    """Seconds the middleware adds to a request: the median of the rounds' differences."""
    n = args.calls * 10
    diffs = []
    for _ in range(args.rounds):
        base_time, time_with, _ratio = alternate(base, call, n, 1)
        diffs.append(time_with - base_time)
    return statistics.median(diffs)


def report(args: argparse.Namespace, figures: dict[str, Any]) -> str:
    def row(name: str, measured: tuple[float, float, float]) -> list[str]:
        floor, seconds, ratio = measured
        difference = f"{(seconds - floor) * 1e3:+.3f} ms"
        return [name, fmt_time(seconds), fmt_time(floor), f"{ratio:.3f}x", difference]

    rows = [
        ["request with one Function.call", "per request", "floor", "vs floor", "difference"],
        row(f"development, {figures['mode']} watcher", figures["development"]),
        row("development, polling watcher", figures["polling"]),
        row("full check before every request", figures["full"]),
    ]
    met = figures["cost"] * 1e3 <= TARGET_MS and figures["polling_cost"] * 1e3 <= TARGET_MS
    lines = [
        f"{figures['watched']} files watched (the host's loaded files and its config), "
        f"{args.calls} requests x {args.rounds} rounds, in turns with the floor (the app alone, "
        "no reloader); medians",
        "",
        format_table(rows),
        "",
        "the reloader's cost per request (middleware around an app that calls nothing, minus the app)",
        format_table(
            [
                [f"{figures['mode']} watcher", f"{figures['cost'] * 1e3:.4f} ms"],
                ["polling watcher", f"{figures['polling_cost'] * 1e3:.4f} ms"],
                [f"target <= {TARGET_MS} ms per request", "met" if met else "NOT met"],
            ]
        ),
    ]
    text = "\n".join(lines)
    print("\n" + text)
    return text


def markdown(text: str, started: str, load: float) -> str:
    return (
        section_head("The development reloader", "reloader.py", started, load)
        + "A managed host whose config requires 2,000 small modules; a WSGI app making one "
        "`Function.call` per request, alone (the floor) and inside `JSHostMiddleware` in "
        "development, with each way of watching; the full check is what every request paid "
        "before the watcher (a manager request and a stat of every loaded file).\n\n"
        f"```text\n{text}\n```\n\n"
        "Reading it: before a request the reloader reads what the watcher found and checks "
        "that the host process is alive (one system call each); the files are stat'ed only by "
        "the polling thread (every 0.5 s) or when inotify names one of them. On a shared "
        "machine the rows with a call differ from their floor by the call's own noise (tens of "
        "microseconds either way); the cost lines, measured around an app that calls nothing, "
        "are the reloader's own.\n"
    )


def main() -> None:
    parser = options.parser(__doc__)
    parser.add_argument("--files", type=int, default=2000, help="modules the config requires")
    parser.add_argument("--calls", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (medians)")
    options.add_no_docs(parser)
    args = parser.parse_args()
    started, load = run_started(show_load=True)
    with tempfile.TemporaryDirectory(prefix="bench-reloader-") as tmp:
        root = Path(tmp) / "project"
        runtime = Path(tmp) / "runtime"
        root.mkdir()
        runtime.mkdir(mode=0o700)
        os.environ["JS_HOST_RUNTIME_DIR"] = str(runtime)
        try:
            figures = measure(args, root)
        except RuntimeError as err:
            sys.exit(f"bench: {err}")
    text = report(args, figures)
    if not args.no_docs:
        write_own_section("reloader", markdown(text, started, load))


if __name__ == "__main__":
    main()
