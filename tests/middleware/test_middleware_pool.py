"""JSHostMiddleware in front of a host with a pool of workers: in development a call
whose worker died gets the error page with the cause (escaped), and the next request
is served; in production the error is the app's to handle (a FunctionError)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
from werkzeug.test import Client

from js_host import verbosity
from js_host.conf import settings
from js_host.exceptions import FunctionError, WorkerDied
from js_host.function import Function
from js_host.host import JSHost
from js_host.middleware import JSHostMiddleware
from tests.support.client import FIXTURES, config_port
from tests.support.processes import BUNDLED_BIN, POOL_WORKERS, NodeProcess

pytestmark = pytest.mark.timeout(120)

POOL_CONFIG = FIXTURES / "pool.config.js"
HTML_MESSAGE = "<b>not bold</b>"


@pytest.fixture
def impl() -> str:
    """manager_env's hosts: pools (the config says ``workers``)."""
    return "pool"


def write_pool_config(path: Path, **props: object) -> Path:
    extra = "".join(f"  {key}: {json.dumps(value)},\n" for key, value in props.items())
    path.write_text(
        POOL_CONFIG.read_text().replace("module.exports = {\n", "module.exports = {\n" + extra, 1)
    )
    return path


def calling_app(host: JSHost | None = None) -> Callable[..., list[bytes]]:
    """An app calling the function its path names, with a message full of HTML."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        function = Function(environ["PATH_INFO"].strip("/"), host=host, timeout=60)
        output = function.call(message=HTML_MESSAGE)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [output.encode()]

    return app


def test_development_page_shows_the_cause_of_a_dead_worker(manager_env: dict[str, Any]) -> None:
    config = manager_env["config"]
    write_pool_config(config, port=config_port(config), disconnectTimeout=300, workers=POOL_WORKERS)
    settings.configure(VERBOSITY=verbosity.SILENT, **manager_env["settings"])
    client = Client(JSHostMiddleware(calling_app()))

    page = client.get("/throw_later")
    assert page.status_code == 500 and page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    assert "The worker running the call died" in text
    assert 'id="cause"' in text and "uncaught exception" in text
    assert "&lt;b&gt;not bold&lt;/b&gt;" in text and HTML_MESSAGE not in text
    assert "WorkerDied" in text

    answer = client.get("/echo")  # the worker was replaced: the next request is served
    assert answer.status_code == 200
    assert json.loads(answer.get_data(as_text=True)) == {"message": HTML_MESSAGE}


def test_production_leaves_a_dead_workers_error_to_the_app(
    tmp_path: Path, start_host: Callable[..., NodeProcess]
) -> None:
    config = write_pool_config(tmp_path / "pool.config.js", workers=POOL_WORKERS)
    process = start_host(config)
    host = JSHost(str(config), url_override=process.url, bin_path=str(BUNDLED_BIN))
    client = Client(JSHostMiddleware(calling_app(host), host=host))
    with pytest.raises(WorkerDied) as info:
        client.get("/exit")
    assert isinstance(info.value, FunctionError) and "exited" in info.value.cause
    assert client.get("/echo").status_code == 200
