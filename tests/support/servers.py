"""Helpers for the middleware, example, run-script and Docker tests: real gunicorn
(or other) servers started once a URL answers, plain GETs that report any status,
and the processes a test left behind. The app they serve is tests/support/wsgi_app.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.support.processes import ROOT, OwnedProcess
from tests.support.waiting import wait_for

# HTTP


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: str) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def pid(self) -> int:
        return int(self.headers.get("x-worker-pid", "0"))

    def __repr__(self) -> str:
        return f"<Reply {self.status} {self.body[:300]!r}>"


def get(url: str, timeout: float = 30.0) -> Reply:
    """GET ``url``; any status is returned, connection errors raise."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as res:
            headers = {k.lower(): v for k, v in res.headers.items()}
            return Reply(res.status, headers, res.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as err:
        headers = {k.lower(): v for k, v in err.headers.items()}
        return Reply(err.code, headers, err.read().decode("utf-8", "replace"))


def hit_all_workers(url: str, workers: int, *, attempts: int = 8) -> dict[int, Reply]:
    """Replies by worker pid: concurrent slow requests, so that every worker takes one."""
    replies: dict[int, Reply] = {}
    with ThreadPoolExecutor(max_workers=workers * 2) as pool:
        for _ in range(attempts):
            for reply in pool.map(lambda _: get(url), range(workers * 2)):
                replies.setdefault(reply.pid, reply)
            if len(replies) >= workers:
                break
    return replies


def replies_of_every_worker(url: str, workers: int, *, attempts: int = 8) -> list[Reply]:
    """Every reply to concurrent slow requests, sent until each worker has answered one (a page
    of the middleware names no worker: it counts for none)."""
    replies: list[Reply] = []
    with ThreadPoolExecutor(max_workers=workers * 2) as pool:
        for _ in range(attempts):
            replies += pool.map(lambda _: get(url), range(workers * 2))
            if len({reply.pid for reply in replies} - {0}) >= workers:
                break
    return replies


# Processes


def assert_down_page(base: str) -> None:
    """With the host down, the app at ``base`` (tests/support/wsgi_app.py or asgi_app.py)
    answers a page that calls a function with the 503 page, and the others as usual."""
    down = get(f"{base}/")
    assert down.status == 503, down
    assert down.headers["retry-after"].isdigit()
    assert down.headers["content-type"].startswith("text/plain")
    assert "JavaScript host is not reachable" in down.body
    # Pages that call no function still work.
    assert get(f"{base}/health").status == 200
    # Errors of the app itself are not turned into the 503 page.
    boom = get(f"{base}/boom")
    assert boom.status == 500 and "JavaScript host" not in boom.body


def wait_for_every_worker_to_recover(base: str, workers: int) -> None:
    """Wait until each of the ``workers`` worker processes answers ``/slow`` from the host
    again (each tries again retry_after after its last failed connect at the latest)."""

    def every_worker_answers() -> bool:
        replies = hit_all_workers(f"{base}/slow", workers)
        return len(replies) == workers and all(
            reply.status == 200 and reply.body.endswith("answer-v1") for reply in replies.values()
        )

    wait_for(every_worker_answers, what="recovery of every worker after the host is back")


def pids_with(text: str) -> set[int]:
    """PIDs of running processes whose command line contains ``text``."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if text in args:
            pids.add(int(entry.name))
    return pids


def reap(text: str, timeout: float = 10.0) -> set[int]:
    """Wait until no process mentions ``text``; kill the ones left (the test started them) and return them."""
    deadline = time.monotonic() + timeout
    left = pids_with(text)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = pids_with(text)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


class Server(OwnedProcess):
    """A command (gunicorn, run.sh): started once ``ready_url`` answers 200."""

    def __init__(self, cmd: list[str], *, env: dict[str, str], log: Path, cwd: Path = ROOT) -> None:
        super().__init__(cmd, log=log, env=env, cwd=cwd)

    def start(self, ready_url: str | None = None, timeout: float = 30.0) -> Server:
        def answers() -> bool:
            try:
                return get(ready_url, timeout=2).status == 200
            except OSError:
                return False

        self.spawn()
        if ready_url:
            self.wait_until(answers, timeout, interval=0.1)
        return self

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        super().stop(signum, timeout)


def gunicorn(
    app: str,
    port: int,
    *,
    workers: int = 2,
    worker_class: str = "sync",
    preload: bool = False,
    env: dict[str, str],
    log: Path,
    extra: tuple[str, ...] = (),
) -> Server:
    # An empty config file: gunicorn would otherwise read ./gunicorn.conf.py (the proxy's).
    config = log.parent / "gunicorn-empty.conf.py"
    config.write_text("")
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        str(config),
        app,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--worker-class",
        worker_class,
        "--graceful-timeout",
        "5",
        "--timeout",
        "60",
        *extra,
    ]
    if worker_class == "gthread":
        cmd += ["--threads", "4"]
    if preload:
        cmd.append("--preload")
    return Server(cmd, env=env, log=log)


def base_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "NODE_NO_WARNINGS": "1", "PYTHONUNBUFFERED": "1"}
    env.update(extra)
    return env
