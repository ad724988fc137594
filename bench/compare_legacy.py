"""Measure the 2015 stack (PyPI js-host==0.2.0 + npm js-host@0.12.0) for bench/compare.py.

    bench/.venv-legacy/bin/python bench/compare_legacy.py '<options as JSON>'

Runs inside bench/.venv-legacy, whose ``js_host`` is the 2015 client (the same
import name as this project's, hence its own venv; so this script imports only the
stdlib parts of bench/support). Reads one JSON object of options from argv[1] and
prints one JSON object of results on its last line:

- ``cold``: seconds from spawning the host (``node js-host.js <config>``) to the
  first answer of ``Function('echo').call()``;
- ``calls``: {"<payload> <threads>": [seconds per call of each round]}.

The caller also measures ``warm``: this script with ``{"warm": true}`` against
the host it leaves running, i.e. a new Python process connecting to a running host.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from support import NODE_ENV
from support.processes import OwnedProcess
from support.runs import seconds_to, threaded_per_call


def configure(opts: dict[str, Any]) -> None:
    from js_host.conf import settings

    settings.configure(
        SOURCE_ROOT=opts["workdir"],
        CONFIG_FILE=opts["config"],
        PATH_TO_BIN=opts["bin"],
        VERBOSITY=0,
        CONNECT_ONCE_CONFIGURED=False,
    )


def first_answer(host: OwnedProcess) -> Any:
    """``Function("echo")`` once the host answers (the 2015 js_host.host connects on
    import, and raises when nothing listens yet)."""

    def answered() -> Any:
        try:
            from js_host.function import Function

            echo = Function("echo")
            echo.call(text="x")
        except Exception:
            return None
        return echo

    return host.wait_until(answered, timeout=20, interval=0.005)


def rounds(function: Any, data: dict[str, Any], threads: int, seconds: float, count: int) -> list[float]:
    """Seconds per call (wall time / calls of all threads) of each round."""
    for _ in range(20):
        function.call(**data)
    return [threaded_per_call(lambda: lambda: function.call(**data), threads, seconds) for _ in range(count)]


def measure(opts: dict[str, Any]) -> dict[str, Any]:
    """Spawn the host (left running for the warm runs; its pid is printed first, for the
    caller to stop it), then the cold start and the calls."""
    workdir = Path(opts["workdir"])
    start = time.perf_counter()
    cmd = ["node", opts["bin"], opts["config"]]
    host = OwnedProcess(cmd, workdir / "legacy-host.log", env=NODE_ENV, cwd=workdir)
    print(json.dumps({"pid": host.pid}), flush=True)
    echo = first_answer(host)
    result: dict[str, Any] = {"cold": time.perf_counter() - start, "calls": {}}
    for size, data in (("50 B", opts["small"]), ("100 KB", opts["large"])):
        for threads in opts["threads"]:
            figures = rounds(echo, data, threads, opts["seconds"], opts["rounds"])
            result["calls"][f"{size} {threads}"] = figures
    return result


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if sys.argv[1:] in (["-h"], ["--help"]) else 2)
    opts = json.loads(sys.argv[1])
    configure(opts)
    if opts.get("warm"):

        def call() -> None:
            from js_host.function import Function  # js_host.host connects on import

            Function("echo").call(text="x")

        print(json.dumps({"warm": seconds_to(call)}))
        return
    print(json.dumps(measure(opts)))


if __name__ == "__main__":
    main()
