"""JSHostASGIMiddleware under real uvicorn (2 workers) in front of real js-host processes:
the 503 while the host is down and the recovery, the development restart on edit and the
crash page, the example's Starlette app under gunicorn's uvicorn workers, a Django ASGI
project; no process left behind. In process: lifespan passed through, responses held."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from js_host.asgi import JSHostASGIMiddleware
from js_host.exceptions import ConnectionError as JSHostConnectionError
from js_host.host import JSHost
from tests.support.processes import BUNDLED_BIN, ROOT, NodeProcess, free_port
from tests.support.servers import (
    Server,
    assert_down_page,
    base_env,
    get,
    gunicorn,
    hit_all_workers,
    reap,
    wait_for_every_worker_to_recover,
)
from tests.support.waiting import wait_for
from tests.support.wsgi_app import HOST_BIN, write_test_config

pytestmark = pytest.mark.timeout(120)

APP = "tests.support.asgi_app:app"


def start_host(config: Path, port: int, tmp_path: Path, bin_path: Path = HOST_BIN) -> NodeProcess:
    return NodeProcess(bin_path, config, "--port", str(port), logdir=tmp_path).start()


def uvicorn(app: str, port: int, *, env: dict[str, str], log: Path, workers: int = 2) -> Server:
    cmd = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    return Server([*cmd, "--workers", str(workers), "--timeout-graceful-shutdown", "5"], env=env, log=log)


def test_production_every_worker_answers_then_503_then_recovers(tmp_path: Path) -> None:
    host_port, app_port = free_port(), free_port()
    config = write_test_config(tmp_path / "host.config.js", port=host_port)
    host = start_host(config, host_port, tmp_path)
    env = base_env(
        JS_HOST_TEST_MODE="production",
        JS_HOST_TEST_CONFIG=str(config),
        JS_HOST_TEST_URL=f"http://127.0.0.1:{host_port}",
        JS_HOST_BIN_PATH=str(HOST_BIN),
    )
    server = uvicorn(APP, app_port, env=env, log=tmp_path / "uvicorn.log")
    base = f"http://127.0.0.1:{app_port}"
    try:
        server.start(f"{base}/health")
        replies = hit_all_workers(f"{base}/slow", 2)
        assert len(replies) == 2, (replies, server.log)
        assert all(reply.body == f"{pid} answer-v1" for pid, reply in replies.items()), replies
        # Each worker connected at its lifespan startup (the app itself has no lifespan).
        assert server.log.count("Connected to") == 2, server.log

        host.stop()
        assert_down_page(base)
        host = start_host(config, host_port, tmp_path)
        wait_for_every_worker_to_recover(base, 2)
    finally:
        server.stop()
        host.stop()
    assert not reap(f"--port {app_port}"), "uvicorn processes left behind"


def test_development_restart_on_edit_and_crash_page(tmp_path: Path, runtime_dir: Path) -> None:
    manager_port, app_port = free_port(), free_port()
    config = write_test_config(tmp_path / "host.config.js", port=manager_port, workers=0)
    watched = tmp_path / "component.js"
    watched.write_text("// v1\n")
    env = base_env(
        JS_HOST_TEST_MODE="development",
        JS_HOST_TEST_CONFIG=str(config),
        JS_HOST_BIN_PATH=str(HOST_BIN),
        JS_HOST_RUNTIME_DIR=str(runtime_dir),
        JS_HOST_TEST_WATCH=str(watched),
    )
    server = uvicorn(APP, app_port, env=env, log=tmp_path / "uvicorn.log")
    base = f"http://127.0.0.1:{app_port}"
    try:
        server.start(f"{base}/health")
        replies = hit_all_workers(f"{base}/slow", 2)
        assert len(replies) == 2 and all(r.body.endswith(" answer-v1") for r in replies.values()), replies

        # An edit of the config file restarts the host before the next request, in every worker.
        write_test_config(config, port=manager_port, answer="answer-v2", workers=0)
        bump_mtime(config)
        replies = hit_all_workers(f"{base}/slow", 2)
        assert len(replies) == 2 and all(r.body.endswith(" answer-v2") for r in replies.values()), replies

        # So does a file given in watch=[...].
        before = get(f"{base}/pid").body.split()[1]
        watched.write_text("// v2\n")
        bump_mtime(watched)
        after = {reply.body.split()[1] for reply in hit_all_workers(f"{base}/pid", 2).values()}
        assert after and before not in after, (before, after)

        # A crash during a call: the development page naming the logfile; the next request works.
        crashed = get(f"{base}/crash")
        assert crashed.status == 500 and crashed.headers["content-type"].startswith("text/html"), crashed
        assert "Logfile:" in crashed.body and "boom from the crash function" in crashed.body, crashed.body
        if HOST_BIN == BUNDLED_BIN:
            assert "The host process ended: exit code 1." in crashed.body, crashed.body
        wait_for(lambda: get(f"{base}/").body.endswith(" answer-v2") or None, what="the host started again")
    finally:
        server.stop()
    left = reap(str(config))
    assert not left, f"processes left after uvicorn stopped: {left}\n{server.log}"


needs_example_packages = pytest.mark.skipif(
    not (ROOT / "example" / "node_modules" / "react-dom").exists(),
    reason="example/node_modules is missing: run `make install`",
)


@needs_example_packages
def test_the_example_under_gunicorns_uvicorn_workers(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn_worker")
    host_port, app_port = free_port(), free_port()
    config = ROOT / "example" / "host.config.js"
    host = start_host(config, host_port, tmp_path, BUNDLED_BIN)
    env = base_env(JS_HOST_URL_OVERRIDE=f"http://127.0.0.1:{host_port}")
    server = gunicorn(
        "example.asgi_app:app",
        app_port,
        worker_class="uvicorn_worker.UvicornWorker",
        env=env,
        log=tmp_path / "gunicorn.log",
    )
    base = f"http://127.0.0.1:{app_port}"
    try:
        server.start(f"{base}/health")
        for _ in range(4):
            page = get(f"{base}/?title=From+Starlette")
            assert page.status == 200, (page, server.log)
            assert '<h2>From Starlette</h2><p class="byline">by <strong>js-host</strong>' in page.body
            assert "<h2>Markdown, rendered by <em>markdown-it</em></h2>" in page.body
        assert "<strong>" in get(f"{base}/counter").body
        host.stop()
        down = get(f"{base}/")
        assert down.status == 503 and down.headers["retry-after"].isdigit(), down
    finally:
        server.stop()
        host.stop()


DJANGO_SETTINGS = """\
import os
SECRET_KEY = "test"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "asgisite.urls"
INSTALLED_APPS = ["js_host"]
MIDDLEWARE = ["js_host.django.ReportErrorsMiddleware"]
JS_HOST = {"SOURCE_ROOT": os.environ["JS_HOST_TEST_ROOT"], "URL_OVERRIDE": os.environ["JS_HOST_URL"]}
"""

DJANGO_URLS = """\
from django.http import HttpResponse
from django.urls import path

from js_host.function import Function

answer = Function("answer")


async def view(request):
    return HttpResponse(await answer.call_async(), content_type="text/plain")

urlpatterns = [path("", view)]
"""

DJANGO_ASGI = """\
import os
from django.core.asgi import get_asgi_application
from js_host.asgi import JSHostASGIMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "asgisite.settings")
application = JSHostASGIMiddleware(get_asgi_application())
"""


def test_a_django_asgi_project(tmp_path: Path) -> None:
    pytest.importorskip("django")
    host_port, app_port = free_port(), free_port()
    site = tmp_path / "asgisite"
    site.mkdir()
    files = {"__init__": "", "settings": DJANGO_SETTINGS, "urls": DJANGO_URLS, "asgi": DJANGO_ASGI}
    for name, text in files.items():
        (site / f"{name}.py").write_text(text)
    config = write_test_config(tmp_path / "host.config.js", port=host_port)
    env = base_env(
        PYTHONPATH=f"{tmp_path}:{ROOT}",
        JS_HOST_TEST_ROOT=str(tmp_path),
        JS_HOST_URL=f"http://127.0.0.1:{host_port}",
    )
    server = uvicorn("asgisite.asgi:application", app_port, env=env, log=tmp_path / "uvicorn.log", workers=1)
    base = f"http://127.0.0.1:{app_port}/"
    host = None
    try:
        server.start()
        # Django answers no lifespan: the middleware does (connecting, which fails: host down).
        down = wait_for(lambda: get(base), what=f"uvicorn to answer\n{server.log}")
        assert down.status == 503, (down, server.log)  # Django's own 500 replaced
        assert down.headers["retry-after"].isdigit()
        assert "Application startup complete" in server.log, server.log
        host = start_host(config, host_port, tmp_path)
        assert wait_for(lambda: get(base).status == 200 or None, what="recovery after the host is back")
        assert get(base).body == "answer-v1"
    finally:
        server.stop()
        if host is not None:
            host.stop()


# In process --------------------------------------------------------------------------


class Lifespan:
    """Drives an ASGI app's lifespan (startup, then shutdown) and records what it sends."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def run(self, app: Any) -> None:
        for kind in ("lifespan.startup", "lifespan.shutdown"):
            self.queue.put_nowait({"type": kind})

        async def send(message: dict[str, Any]) -> None:
            self.sent.append(message["type"])

        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, self.queue.get, send)


async def http_get(app: Any, path: str = "/") -> tuple[int, dict[str, str], bytes]:
    messages: list[dict[str, Any]] = []

    requests = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if requests:
            return requests.pop()
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "headers": [], "query_string": b""}
    await app(scope, receive, send)
    start = messages[0]
    headers = {name.decode(): value.decode() for name, value in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in messages[1:])


def dead_host(tmp_path: Path) -> JSHost:
    port = free_port()
    config = write_test_config(tmp_path / "host.config.js", port=port)
    return JSHost(str(config), url_override=f"http://127.0.0.1:{port}", bin_path=str(HOST_BIN))


def test_lifespan_passes_through_to_a_starlette_app(tmp_path: Path) -> None:
    from starlette.applications import Starlette

    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        events.append("app startup")
        yield
        events.append("app shutdown")

    middleware = JSHostASGIMiddleware(Starlette(lifespan=lifespan), host=dead_host(tmp_path))
    own_shutdown = middleware.shutdown

    async def shutdown() -> None:
        events.append("js-host shutdown")
        await own_shutdown()

    middleware.shutdown = shutdown  # type: ignore[method-assign]
    driver = Lifespan()
    asyncio.run(driver.run(middleware))
    # js-host's shutdown comes after the app's own handlers, which may still call functions.
    assert events == ["app startup", "app shutdown", "js-host shutdown"]
    assert driver.sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_a_starlette_500_for_a_host_unavailable_becomes_the_503(tmp_path: Path) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from js_host.function import Function
    from js_host.middleware import report_error

    host = dead_host(tmp_path)

    async def calls(request: Any) -> Any:
        return PlainTextResponse(await Function("answer", host=host).call_async())

    async def handled(request: Any) -> Any:
        try:
            await Function("answer", host=host).call_async()
        except JSHostConnectionError as err:
            report_error(request.scope, err)  # an app that answers for the error itself
        return PlainTextResponse("the app's own page", status_code=500)

    async def streamed(request: Any) -> Any:
        from starlette.responses import StreamingResponse

        async def body() -> Any:
            yield b"part 1;"
            yield b"part 2"

        return StreamingResponse(body())

    app = Starlette(routes=[Route("/", calls), Route("/handled", handled), Route("/streamed", streamed)])
    middleware = JSHostASGIMiddleware(app, host=host)

    async def main() -> None:
        for path in ("/", "/handled"):
            status, headers, body = await http_get(middleware, path)
            assert status == 503 and headers["retry-after"] == "5", (path, status, body)
            assert b"JavaScript host is not reachable" in body
        status, _, body = await http_get(middleware, "/streamed")
        assert (status, body) == (200, b"part 1;part 2")  # streamed through

    asyncio.run(main())


def bump_mtime(path: Path) -> None:
    """Make the edit visible whatever the filesystem's mtime resolution."""
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 2_000_000_000))
