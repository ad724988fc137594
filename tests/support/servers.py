"""Real gunicorn servers for the middleware, example and run-script tests.

Also the small WSGI app those tests serve: ``gunicorn tests.middleware_fixtures:application``
builds it from the environment (``JS_HOST_TEST_*``), so the same module is the
fixture code and the app under test. Importing it starts nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from tests.support.processes import BUNDLED_BIN, IMPLEMENTATIONS, NPM_BIN, ROOT, OwnedProcess

#: The host the tests run: the bundled one once it exists, else js-host 0.11 from npm
#: (JS_HOST_TEST_IMPL=npm-0.11 or bundled chooses).
HOST_BIN = IMPLEMENTATIONS.get(
    os.environ.get("JS_HOST_TEST_IMPL", ""), BUNDLED_BIN if BUNDLED_BIN.exists() else NPM_BIN
)

TEST_CONFIG = """\
'use strict';
// Written by tests/middleware_fixtures.py.
module.exports = {
  port: %(port)d,
  disconnectTimeout: 300,
  functions: {
    answer: function(data, cb) { cb(null, %(answer)s); },
    pid: function(data, cb) { cb(null, String(process.pid)); },
    crash: function(data, cb) {
      setTimeout(function() { throw new Error('boom from the crash function'); }, 10);
    }
  }
};
"""


def write_test_config(path: Path, *, port: int, answer: str = "answer-v1") -> Path:
    path.write_text(TEST_CONFIG % {"port": port, "answer": json.dumps(answer)})
    return path


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


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns a truthy value (exceptions count as not yet)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except Exception as err:  # not ready yet
            last = err
        else:
            if result:
                return result
            last = result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


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


# Processes


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


# The app under test (built in the gunicorn process from JS_HOST_TEST_* variables)


def _build_application() -> Any:
    from js_host import verbosity
    from js_host.conf import settings
    from js_host.function import Function
    from js_host.middleware import JSHostMiddleware

    mode = os.environ["JS_HOST_TEST_MODE"]  # "production" or "development"
    options: dict[str, Any] = {
        "SOURCE_ROOT": os.path.dirname(os.environ["JS_HOST_TEST_CONFIG"]),
        "CONFIG_FILE": os.environ["JS_HOST_TEST_CONFIG"],
        "CONNECT_ONCE_CONFIGURED": False,
        "VERBOSITY": verbosity.VERBOSE,
        "USE_MANAGER": mode == "development",
    }
    if os.environ.get("JS_HOST_BIN_PATH"):
        options["BIN_PATH"] = os.environ["JS_HOST_BIN_PATH"]
    if mode == "production":
        options["URL_OVERRIDE"] = os.environ["JS_HOST_TEST_URL"]
    settings.configure(**options)

    answer = Function("answer")
    host_pid = Function("pid")
    crash = Function("crash", timeout=5)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/health":
            body = "ok"
        elif path == "/boom":
            raise RuntimeError("an error of the app itself")
        elif path == "/pid":
            body = host_pid.call()
        elif path == "/crash":
            body = crash.call()
        else:
            if path == "/slow":
                time.sleep(0.3)
            body = answer.call()
        payload = f"{os.getpid()} {body}".encode()
        start_response(
            "200 OK",
            [
                ("Content-Type", "text/plain"),
                ("Content-Length", str(len(payload))),
                ("X-Worker-Pid", str(os.getpid())),
            ],
        )
        return [payload]

    watch = [path for path in os.environ.get("JS_HOST_TEST_WATCH", "").split(os.pathsep) if path]
    return JSHostMiddleware(app, watch=watch, watch_interval=0)


_application: Any = None


def __getattr__(name: str) -> Any:
    global _application
    if name == "application":
        if _application is None:
            _application = _build_application()
        return _application
    raise AttributeError(name)
