"""JSHostMiddleware in process (werkzeug's test client) against a real host:
the WSGI details (start_response, write(), generators, close()) and which
errors become its pages."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
from werkzeug.test import Client

from js_host.exceptions import ConnectionError as JSHostConnectionError
from js_host.exceptions import FunctionError
from js_host.function import Function
from js_host.host import JSHost
from js_host.middleware import ENVIRON_MIDDLEWARE, JSHostMiddleware, report_error
from tests.support.processes import ROOT, NodeProcess, free_port
from tests.support.recording_server import RecordingServer
from tests.support.waiting import wait_for
from tests.support.wsgi_app import HOST_BIN, write_test_config

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def running_host(tmp_path: Path) -> Iterator[JSHost]:
    port = free_port()
    config = write_test_config(tmp_path / "host.config.js", port=port)
    node = NodeProcess(HOST_BIN, config, "--port", str(port), logdir=tmp_path).start()
    try:
        yield JSHost(str(config), url_override=f"http://127.0.0.1:{port}", bin_path=str(HOST_BIN))
    finally:
        node.stop()


@pytest.fixture
def dead_host(tmp_path: Path) -> JSHost:
    port = free_port()  # nothing listens there
    config = write_test_config(tmp_path / "host.config.js", port=port)
    return JSHost(str(config), url_override=f"http://127.0.0.1:{port}", bin_path=str(HOST_BIN))


def answer_app(host: JSHost) -> Callable[..., Any]:
    answer = Function("answer", host=host)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        assert isinstance(environ[ENVIRON_MIDDLEWARE], JSHostMiddleware)
        start_response("201 Created", [("Content-Type", "text/plain"), ("X-App", "yes")])
        return [answer.call().encode()]

    return app


def test_responses_pass_through_unchanged(running_host: JSHost) -> None:
    client = Client(JSHostMiddleware(answer_app(running_host), host=running_host))
    response = client.get("/")
    assert response.status_code == 201
    assert response.headers["X-App"] == "yes"
    assert response.get_data(as_text=True) == "answer-v1"
    assert running_host.has_connected


def test_generator_and_write_apps_pass_through(running_host: JSHost) -> None:
    closed = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"a"
            yield b"b"

        def close(self) -> None:
            closed.append(True)

    def generator_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        # start_response is called only when the body is iterated.
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"lazy "
        yield b"body"

    def write_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Body:
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return Body()

    assert Client(JSHostMiddleware(generator_app, host=running_host)).get("/").get_data() == b"lazy body"
    response = Client(JSHostMiddleware(write_app, host=running_host)).get("/")
    assert response.get_data() == b"written ab"
    response.close()
    assert closed == [True]


def test_host_down_gives_503_and_pages_without_calls_still_work(dead_host: JSHost) -> None:
    client = Client(JSHostMiddleware(answer_app(dead_host), host=dead_host, retry_after=7))
    response = client.get("/")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    assert response.mimetype == "text/plain"

    def static(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"no JavaScript here"]

    assert Client(JSHostMiddleware(static, host=dead_host)).get("/").status_code == 200


def test_other_errors_propagate(running_host: JSHost, dead_host: JSHost) -> None:
    def failing(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        raise RuntimeError("the app's own bug")

    with pytest.raises(RuntimeError, match="own bug"):
        Client(JSHostMiddleware(failing, host=dead_host)).get("/")

    def js_error(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        raise FunctionError("Function 'x' failed: boom", js_message="boom")

    with pytest.raises(FunctionError):
        Client(JSHostMiddleware(js_error, host=running_host)).get("/")


def test_reported_errors_replace_the_apps_response(dead_host: JSHost, running_host: JSHost) -> None:
    closed = []

    class Body(list):
        def close(self) -> None:
            closed.append(True)

    def catching(environ: dict[str, Any], start_response: Callable[..., Any]) -> Body:
        # What a Flask/Django error handler does with a js_host error.
        try:
            Function("answer", host=environ[ENVIRON_MIDDLEWARE].host).call()
        except JSHostConnectionError as err:
            report_error(environ, err)
            start_response("500 Internal Server Error", [("Content-Type", "text/plain"), ("X-App", "1")])
            return Body([b"the app's own error page"])
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body([b"fine"])

    response = Client(JSHostMiddleware(catching, host=dead_host)).get("/")
    assert response.status_code == 503
    assert "X-App" not in response.headers
    assert closed == [True]
    assert Client(JSHostMiddleware(catching, host=running_host)).get("/").get_data() == b"fine"


def test_error_page_escapes_the_logfile(dead_host: JSHost, tmp_path: Path) -> None:
    logfile = tmp_path / "host.log"
    logfile.write_text("".join(f"line {i}\n" for i in range(100)) + "<script>alert('log')</script>\n")
    dead_host.logfile = str(logfile)
    middleware = JSHostMiddleware(answer_app(dead_host), host=dead_host, log_lines=5, connect_on_init=False)
    page = middleware._page(JSHostConnectionError("<b>not bold</b>")).decode()
    assert "&lt;b&gt;not bold&lt;/b&gt;" in page
    assert "&lt;script&gt;alert(&#x27;log&#x27;)&lt;/script&gt;" in page and "<script>" not in page
    assert "line 96" in page and "line 95" not in page
    assert str(logfile) in page


DJANGO_SCRIPT = """
import sys
import django
from django.conf import settings

settings.configure(
    DEBUG=False, SECRET_KEY="test", ALLOWED_HOSTS=["*"], ROOT_URLCONF="__main__",
    MIDDLEWARE=["js_host.django.ReportErrorsMiddleware"],
)
django.setup()
from django.core.wsgi import get_wsgi_application
from django.http import HttpResponse
from django.urls import path
from werkzeug.test import Client

from js_host.function import Function
from js_host.host import JSHost
from js_host.middleware import JSHostMiddleware

config, url, bin_path = sys.argv[1:]
host = JSHost(config, url_override=url, bin_path=bin_path)


def view(request):
    return HttpResponse(Function("answer", host=host).call())


urlpatterns = [path("", view)]
response = Client(JSHostMiddleware(get_wsgi_application(), host=host)).get("/")
print(response.status_code, response.headers.get("Retry-After"), response.get_data(as_text=True)[:60])
"""


@pytest.mark.parametrize("up", [True, False], ids=["host-up", "host-down"])
def test_django_report_errors_middleware(up: bool, request: pytest.FixtureRequest) -> None:
    pytest.importorskip("django")
    host: JSHost = request.getfixturevalue("running_host" if up else "dead_host")
    result = subprocess.run(
        [sys.executable, "-c", DJANGO_SCRIPT, host.config_file, host.get_url(), str(HOST_BIN)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    if up:
        assert result.stdout.startswith("200 None answer-v1"), result.stdout
    else:
        assert result.stdout.startswith("503 5 503 Service Unavailable"), (result.stdout, result.stderr)


def static_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"no JavaScript here"]


def routed_app(host: JSHost) -> Callable[..., Any]:
    """/static calls no function; any other path calls one."""
    calling = answer_app(host)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ["PATH_INFO"] == "/static":
            return static_app(environ, start_response)
        return calling(environ, start_response)

    return app


def status_requests(server: RecordingServer) -> int:
    return sum(1 for request in server.requests if request["target"] == "/status")


def test_a_hanging_host_is_tried_once_per_probe_interval(tmp_path: Path, recording_server) -> None:
    server = recording_server(["answer"], hang=True)
    config = write_test_config(tmp_path / "host.config.js", port=server.port)
    host = JSHost(str(config), url_override=server.url, bin_path=str(HOST_BIN))
    middleware = JSHostMiddleware(
        routed_app(host), host=host, retry_after=3600, probe_interval=3600, status_timeout=0.2
    )
    assert wait_for(lambda: status_requests(server) == 1, 5)  # connect_on_init
    client = Client(middleware)
    for _ in range(3):
        assert client.get("/static").status_code == 200
    # Function calls fail at once with the 503 page, without asking the host again.
    response = client.get("/")
    assert response.status_code == 503 and response.headers["Retry-After"] == "3600"
    assert client.get("/static").status_code == 200
    assert status_requests(server) == 1
    assert server.function_requests() == []


def test_after_retry_after_the_host_is_tried_again(tmp_path: Path, recording_server) -> None:
    server = recording_server(["answer"], hang=True)
    config = write_test_config(tmp_path / "host.config.js", port=server.port)
    host = JSHost(str(config), url_override=server.url, bin_path=str(HOST_BIN))
    client = Client(JSHostMiddleware(routed_app(host), host=host, retry_after=1, status_timeout=0.2))
    assert client.get("/").status_code == 503
    server.hang = False
    assert wait_for(lambda: client.get("/").status_code == 201, 10)
    assert status_requests(server) >= 2


def test_a_host_back_is_used_long_before_retry_after(tmp_path: Path, recording_server) -> None:
    # Retry-After says an hour; the worker still tries again every probe_interval.
    server = recording_server(["answer"], hang=True)
    config = write_test_config(tmp_path / "host.config.js", port=server.port)
    host = JSHost(str(config), url_override=server.url, bin_path=str(HOST_BIN))
    middleware = JSHostMiddleware(
        routed_app(host), host=host, retry_after=3600, probe_interval=0.2, status_timeout=0.2
    )
    client = Client(middleware)
    down = client.get("/")
    assert down.status_code == 503 and down.headers["Retry-After"] == "3600"
    server.hang = False
    assert wait_for(lambda: client.get("/").status_code == 201, what="the host used again")


def test_the_readmes_flask_recipe_answers_503_then_recovers(tmp_path: Path) -> None:
    flask = pytest.importorskip("flask")
    from js_host.exceptions import ProcessError

    port = free_port()
    config = write_test_config(tmp_path / "host.config.js", port=port)
    host = JSHost(str(config), url_override=f"http://127.0.0.1:{port}", bin_path=str(HOST_BIN))
    answer = Function("answer", host=host)
    app = flask.Flask(__name__)
    app.add_url_rule("/", "index", lambda: answer.call())

    @app.errorhandler(JSHostConnectionError)
    @app.errorhandler(ProcessError)
    def js_host_unavailable(exc: Exception) -> tuple[str, int]:
        report_error(flask.request.environ, exc)
        return "JavaScript host unavailable", 503

    client = Client(JSHostMiddleware(app, host=host, probe_interval=0.2))
    down = client.get("/")
    assert down.status_code == 503, down.get_data(as_text=True)
    assert down.headers["Retry-After"] == "5"
    assert "JavaScript host is not reachable" in down.get_data(as_text=True)
    node = NodeProcess(HOST_BIN, config, "--port", str(port), logdir=tmp_path).start()
    try:
        assert wait_for(lambda: client.get("/").status_code == 200, what="recovery after the host is back")
        assert client.get("/").get_data(as_text=True) == "answer-v1"
    finally:
        node.stop()


def test_other_threads_skip_a_reconnect_in_progress(tmp_path: Path, recording_server) -> None:
    server = recording_server(["answer"], hang=True)
    config = write_test_config(tmp_path / "host.config.js", port=server.port)
    host = JSHost(str(config), url_override=server.url, bin_path=str(HOST_BIN))
    middleware = JSHostMiddleware(static_app, host=host, status_timeout=0.2, connect_on_init=False)
    holding, release = threading.Event(), threading.Event()

    def reconnecting() -> None:  # stands for a thread busy connecting
        with middleware._lock:
            holding.set()
            release.wait(30)

    thread = threading.Thread(target=reconnecting)
    thread.start()
    try:
        assert holding.wait(10)
        assert Client(middleware).get("/static").status_code == 200
        assert status_requests(server) == 0
    finally:
        release.set()
        thread.join(10)


def test_a_config_error_while_building_the_host_gives_the_page(tmp_path: Path, client_settings) -> None:
    config = write_test_config(tmp_path / "host.config.js", port=free_port())
    client_settings(
        SOURCE_ROOT=str(tmp_path), USE_MANAGER=True, CONNECT_ONCE_CONFIGURED=False, BIN_PATH=str(HOST_BIN)
    )
    config.unlink()  # the default host cannot be built now
    middleware = JSHostMiddleware(static_app)
    response = Client(middleware).get("/")
    assert response.status_code == 500 and response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "ConfigError" in page and str(config) in page
    from js_host.host import get_default_host_if_built

    assert get_default_host_if_built() is None  # nothing was built, nothing started


def test_production_config_error_still_serves_pages_without_calls(tmp_path: Path, client_settings) -> None:
    config = write_test_config(tmp_path / "host.config.js", port=free_port())
    client_settings(SOURCE_ROOT=str(tmp_path), CONNECT_ONCE_CONFIGURED=False, BIN_PATH=str(HOST_BIN))
    config.unlink()
    assert Client(JSHostMiddleware(static_app)).get("/").status_code == 200


def test_an_unknown_option_names_the_middleware_and_its_options() -> None:
    from js_host.asgi import JSHostASGIMiddleware

    with pytest.raises(
        TypeError,
        match=r"^JSHostMiddleware\(\) got an unexpected keyword argument 'retry'; "
        r"its options are connect_on_init, host, watch, ",
    ):
        JSHostMiddleware(lambda environ, start_response: [], connect_on_init=False, retry=5)
    with pytest.raises(
        TypeError,
        match=r"^JSHostASGIMiddleware\(\) got an unexpected keyword argument 'connect_on_init'; "
        r"its options are host, ",
    ):
        JSHostASGIMiddleware(lambda scope, receive, send: None, connect_on_init=False)
