"""The pool benchmark's servers (bench/pool.py): the bundled host on
bench/pool/ssr.config.js, with or without workers, and hypernova 2.5 rendering the same
component; the props they render, POSTs to them that end the run when one fails, and a
connection that keeps a worker busy rendering.

Every server runs with ``NODE_ENV=production`` (React's production build), its console
output to a file. Stdlib only.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import BINS, NODE_ENV
from .install import POOL_NODE
from .processes import NodeServer, OwnedProcess, free_port, fresh_log

CONFIG = POOL_NODE / "ssr.config.js"
HYPERNOVA = POOL_NODE / "hypernova.js"
ENV = {**NODE_ENV, "NODE_ENV": "production"}


def props(rows: int) -> dict[str, object]:
    """The props of bench/pool/app.js: a listing of ``rows`` rows."""
    return {"rows": rows, "title": "Shop", "currency": "EUR"}


def start_host(logdir: Path, *workers: str) -> NodeServer:
    """The bundled host on the SSR config; ``workers``: e.g. ``"--workers", "2"`` for a pool."""
    cmd = ["node", str(BINS["bundled"]), str(CONFIG), "--json", "--port", "0", *workers]
    return NodeServer(cmd, fresh_log(logdir, "host"), env=ENV, timeout=30)


def start_hypernova(logdir: Path, workers: int) -> tuple[OwnedProcess, str]:
    """hypernova's coordinator and ``workers`` cluster workers; returns it and its URL once
    every worker answers (each has its own connection from the coordinator's round-robin)."""
    port = free_port()
    proc = OwnedProcess(["node", HYPERNOVA, str(port), str(workers)], fresh_log(logdir, "hypernova"), env=ENV)
    proc.wait_port(port, timeout=30)
    url = f"http://127.0.0.1:{port}"
    for _ in range(4 * workers):  # each new connection goes to the next worker
        check_hypernova(url, props(2))
    return proc, url


def batch(data: dict[str, object]) -> bytes:
    """One job per request, as the brief of the comparison says."""
    return json.dumps({"0": {"name": "App", "data": data}}).encode()


def check_hypernova(url: str, data: dict[str, object]) -> None:
    """hypernova answers 200 even when a job fails: check that this one rendered."""
    answer = json.loads(post(url, "/batch", batch(data)))
    html = (answer.get("results") or {}).get("0", {}).get("html") or ""
    if not answer.get("success") or "<main>" not in html:
        sys.exit(f"bench: hypernova did not render the component: {json.dumps(answer)[:500]}")


def post(url: str, path: str, body: bytes, timeout: float = 30) -> bytes:
    """POST ``body`` (JSON) to ``url`` + ``path``: the answer's body; any status but 200 ends the run."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        text = response.read()
        if response.status != 200:
            sys.exit(f"bench: {url}{path} answered {response.status}: {text[:300]!r}")
        return text
    finally:
        conn.close()


@contextmanager
def busy_rendering(url: str, ms: int, rows: int) -> Iterator[None]:
    """Another connection keeps one worker rendering: ``ms``-long synchronous renders back
    to back, until the block ends (its last render is waited for)."""
    stop = threading.Event()
    started = threading.Event()
    body = json.dumps({"ms": ms, "props": props(rows)}, sort_keys=True).encode()

    def loop() -> None:
        while not stop.is_set():
            started.set()
            post(url, "/function/slow_render", body, timeout=ms / 1000 + 30)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    started.wait()
    time.sleep(0.2)  # the request has reached a worker
    try:
        yield
    finally:
        stop.set()
        thread.join()
