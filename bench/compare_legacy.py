"""Measure the 2015 stack (PyPI js-host==0.2.0 + npm js-host@0.12.0) for bench/compare.py.

Runs inside bench/.venv-legacy, whose ``js_host`` is the 2015 client (the same
import name as this project's, hence its own venv). Reads one JSON object of
options from argv[1] and prints one JSON object of results on its last line:

- ``cold``: seconds from spawning the host (``node js-host.js <config>``) to the
  first answer of ``Function('echo').call()``;
- ``calls``: {"<payload> <threads>": [seconds per call of each round]}.

The caller also measures ``warm``: this script with ``{"warm": true}`` against
the host it leaves running, i.e. a new Python process connecting to a running host.
"""

import json
import os
import subprocess
import sys
import threading
import time


def main():
    opts = json.loads(sys.argv[1])
    from js_host.conf import settings

    settings.configure(
        SOURCE_ROOT=opts["workdir"],
        CONFIG_FILE=opts["config"],
        PATH_TO_BIN=opts["bin"],
        VERBOSITY=0,
        CONNECT_ONCE_CONFIGURED=False,
    )
    result = {}
    if opts.get("warm"):
        start = time.perf_counter()
        from js_host.function import Function  # js_host.host connects on import

        Function("echo").call(text="x")
        print(json.dumps({"warm": time.perf_counter() - start}))
        return

    env = dict(os.environ, NODE_NO_WARNINGS="1")
    with open(os.path.join(opts["workdir"], "legacy-host.log"), "ab") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(
            ["node", opts["bin"], opts["config"]],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    print(json.dumps({"pid": proc.pid}), flush=True)
    deadline = time.monotonic() + 20
    while True:
        try:
            # js_host.host connects on import (and raises when nothing listens yet).
            from js_host.function import Function

            echo = Function("echo")
            echo.call(text="x")
            break
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.005)
    result["cold"] = time.perf_counter() - start

    calls = {}
    for size, data in (("50 B", opts["small"]), ("100 KB", opts["large"])):
        for threads in opts["threads"]:
            calls[f"{size} {threads}"] = rounds(echo, data, threads, opts["seconds"], opts["rounds"])
    result["calls"] = calls
    print(json.dumps(result))


def rounds(function, data, threads, seconds, count):
    """Seconds per call (wall time / calls of all threads) of each round."""
    for _ in range(20):
        function.call(**data)
    times = []
    for _ in range(count):
        counts = [0] * threads
        stop = threading.Event()

        def work(i, stop=stop, counts=counts):
            while not stop.is_set():
                function.call(**data)
                counts[i] += 1

        workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        start = time.perf_counter()
        for worker in workers:
            worker.start()
        time.sleep(seconds)
        stop.set()
        for worker in workers:
            worker.join()
        times.append((time.perf_counter() - start) / max(1, sum(counts)))
    return times


if __name__ == "__main__":
    main()
