"""The small WSGI app the middleware and run-script tests serve under gunicorn, and
the host config it calls.

``gunicorn tests.support.wsgi_app:application`` builds the app from the environment
(``JS_HOST_TEST_*``); importing this module starts nothing.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from tests.support.processes import BUNDLED_BIN, IMPLEMENTATIONS, NPM_BIN

#: The host the tests run: the bundled one once it exists, else js-host 0.11 from npm
#: (JS_HOST_TEST_IMPL=npm-0.11 or bundled chooses).
HOST_BIN = IMPLEMENTATIONS.get(
    os.environ.get("JS_HOST_TEST_IMPL", ""), BUNDLED_BIN if BUNDLED_BIN.exists() else NPM_BIN
)

TEST_CONFIG = """\
'use strict';
// Written by tests/support/wsgi_app.py.
module.exports = {
  port: %(port)d,
  disconnectTimeout: 300,%(workers)s
  functions: {
    answer: function(data, cb) { cb(null, %(answer)s); },
    pid: function(data, cb) { cb(null, String(process.pid)); },
    crash: function(data, cb) {
      setTimeout(function() { throw new Error('boom from the crash function'); }, 10);
    }
  }
};
"""


def write_test_config(
    path: Path, *, port: int, answer: str = "answer-v1", workers: int | None = None
) -> Path:
    """``workers``: the config's pool size (None: the manager's default, a pool of one)."""
    pool = "" if workers is None else f"\n  workers: {workers},"
    path.write_text(TEST_CONFIG % {"port": port, "answer": json.dumps(answer), "workers": pool})
    return path


# The app under test (built in the gunicorn process from JS_HOST_TEST_* variables)


def configure_from_environment() -> None:
    """js_host's settings from the JS_HOST_TEST_* variables (also tests/support/asgi_app.py's)."""
    from js_host import verbosity
    from js_host.conf import settings

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


def watched_files() -> list[str]:
    """JS_HOST_TEST_WATCH: the files given to the middleware's ``watch``."""
    return [path for path in os.environ.get("JS_HOST_TEST_WATCH", "").split(os.pathsep) if path]


def _build_application() -> Any:
    from js_host.function import Function
    from js_host.middleware import JSHostMiddleware

    configure_from_environment()
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

    return JSHostMiddleware(app, watch=watched_files(), watch_interval=0)


_application: Any = None


def __getattr__(name: str) -> Any:
    global _application
    if name == "application":
        if _application is None:
            _application = _build_application()
        return _application
    raise AttributeError(name)
