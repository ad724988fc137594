"""Development reload of any file the host loaded, with no ``watch=``. Under real gunicorn (2
gthread workers) in front of a managed host: an edit of a module the config requires reaches
every worker, the host is restarted once for it, and with a pooled host an edit under load fails
no request (one gunicorn and one host per kind of host, single process and pool of 2, for the
module). In-process: the requests ask the manager nothing until a file changes.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
from werkzeug.test import Client

from js_host import verbosity
from js_host.conf import settings
from js_host.function import Function
from js_host.host import get_default_host
from js_host.middleware import JSHostMiddleware
from tests.support.client import config_port
from tests.support.processes import BUNDLED_BIN, free_port
from tests.support.servers import Reply, Server, base_env, get, gunicorn, reap, replies_of_every_worker
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

APP = "tests.support.wsgi_app:application"

CONFIG = """\
'use strict';
// The functions answer with what a module the config requires says: no watch= names it.
const card = require('./components/card.js');
module.exports = {
  port: %(port)d,
  disconnectTimeout: 300,
  workers: %(workers)d,
  functions: {
    answer: function(data, cb) { cb(null, card.text); },
    pid: function(data, cb) { cb(null, String(process.pid)); }
  }
};
"""


@dataclass
class Stack:
    base: str
    component: Path
    runtime: Path
    server: Server
    versions: Iterator[int] = field(default_factory=lambda: itertools.count(2))

    def edit(self) -> str:
        """Give the component a new text (and a visible new mtime); returns the text."""
        text = f"card-v{next(self.versions)}"
        self.component.write_text(f"module.exports = {{text: {json.dumps(text)}}};\n")
        info = self.component.stat()
        os.utime(self.component, ns=(info.st_atime_ns, info.st_mtime_ns + 2_000_000_000))
        return text

    def restarts(self) -> int:
        """How many times the manager has started or reloaded the host (its log says)."""
        count = 0
        for log in self.runtime.glob("*.log"):
            count += len(re.findall(r"Manager: (?:started|reloaded) host", log.read_text(errors="replace")))
        return count


@pytest.fixture(scope="module", params=[0, 2], ids=["single", "pool"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("reload")
    runtime = root / "runtime"
    runtime.mkdir(mode=0o700)
    (root / "components").mkdir()
    component = root / "components" / "card.js"
    component.write_text('module.exports = {text: "card-v1"};\n')
    config = root / "host.config.js"
    config.write_text(CONFIG % {"port": free_port(), "workers": request.param})
    env = base_env(
        JS_HOST_TEST_MODE="development",
        JS_HOST_TEST_CONFIG=str(config),
        JS_HOST_BIN_PATH=str(BUNDLED_BIN),
        JS_HOST_RUNTIME_DIR=str(runtime),
    )
    app_port = free_port()
    server = gunicorn(APP, app_port, worker_class="gthread", env=env, log=root / "gunicorn.log")
    base = f"http://127.0.0.1:{app_port}"
    try:
        server.start(f"{base}/health")
        stack = Stack(base, component, runtime, server)
        wait_for(lambda: every_worker_answers(stack, "card-v1"), what="card-v1 from every worker")
        yield stack
    finally:
        server.stop()
    left = reap(str(config))
    assert not left, f"processes left after gunicorn stopped: {left}\n{server.log}"


def every_worker_answers(stack: Stack, text: str) -> list[Reply] | None:
    """The replies, when every reply to requests sent until both workers answered is ``text``."""
    replies = replies_of_every_worker(f"{stack.base}/slow", 2)
    pids = {reply.pid for reply in replies}
    if len(pids - {0}) < 2 or any(
        reply.status != 200 or not reply.body.endswith(f" {text}") for reply in replies
    ):
        return None
    return replies


def test_an_edit_of_a_required_file_reaches_every_worker_with_one_restart(stack: Stack) -> None:
    restarts = stack.restarts()
    text = stack.edit()
    wait_for(lambda: every_worker_answers(stack, text), what=f"{text} from both workers")
    # Both workers saw the edit; the machine-wide record let one of them restart the host.
    assert stack.restarts() == restarts + 1, stack.server.log

    text = stack.edit()  # and the next edit, watched in the new host's files
    wait_for(lambda: every_worker_answers(stack, text), what=f"{text} from both workers")


@pytest.mark.parametrize("stack", [2], ids=["pool"], indirect=True)
def test_an_edit_under_load_fails_no_request_with_a_pool(stack: Stack) -> None:
    old = get(f"{stack.base}/").body.split(" ", 1)[1]
    replies: list[Reply] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            replies.append(get(f"{stack.base}/"))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(replies) > 20, what="requests under way")
        text = stack.edit()

        def both_workers_answered_new() -> bool:
            return len({reply.pid for reply in replies[-40:] if reply.body.endswith(f" {text}")}) == 2

        wait_for(both_workers_answered_new, what=f"{text} from both workers under load")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    failed = [reply for reply in replies if reply.status != 200]
    assert not failed, (len(replies), failed[:3], stack.server.log)
    answers = {reply.body.split(" ", 1)[1] for reply in replies}
    assert answers <= {old, text}, answers


@pytest.fixture
def impl() -> str:
    """manager_env's host: the bundled one (js-host 0.11 reports no loaded files)."""
    return "bundled"


def test_requests_ask_the_manager_nothing_until_a_file_changes(
    manager_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = manager_env["config"]
    root = config.parent
    (root / "components").mkdir()
    component = root / "components" / "card.js"
    component.write_text('module.exports = {text: "card-v1"};\n')
    config.write_text(CONFIG % {"port": config_port(config), "workers": 0})
    settings.configure(VERBOSITY=verbosity.SILENT, **manager_env["settings"])
    answer = Function("answer")

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [answer.call().encode()]

    middleware = JSHostMiddleware(app)
    client = Client(middleware)
    assert client.get("/").get_data(as_text=True) == "card-v1"
    manager = get_default_host().manager
    assert manager is not None
    asked: list[str] = []
    status = manager.request_host_status

    def counted(config_file: str) -> dict[str, Any]:
        asked.append(config_file)
        return status(config_file)

    monkeypatch.setattr(manager, "request_host_status", counted)
    for _ in range(20):
        assert client.get("/").get_data(as_text=True) == "card-v1"
    assert asked == [], "a request asked the manager although nothing changed"
    assert not middleware.needs_prepare()
    # No watch=: the module the config required is watched, with the config.
    assert str(component) in middleware.reloader.files and str(config) in middleware.reloader.files

    component.write_text('module.exports = {text: "card-v2"};\n')
    info = component.stat()
    os.utime(component, ns=(info.st_atime_ns, info.st_mtime_ns + 2_000_000_000))
    # inotify: at once; polling (JS_HOST_WATCH_POLLING=1): within a pass. The cheap check (what an
    # async server asks on its event loop) says so first.
    wait_for(middleware.needs_prepare, what="the cheap check to see the edit")
    assert client.get("/").get_data(as_text=True) == "card-v2"
    assert asked, "the change was handled without asking the manager"
    asked.clear()
    assert client.get("/").get_data(as_text=True) == "card-v2"
    assert asked == []
