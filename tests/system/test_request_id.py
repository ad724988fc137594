"""One call followed across the three logs by its X-Request-Id: the client's DEBUG record,
the proxy's JSON lines (gunicorn, ``JS_HOST_PROXY_LOG_FORMAT=json``) and the host's
(``--log-format json``), where it is followed by the proxy's "." and 16 hex digits (one id
per upstream request); a hit is in the first two only (the host never saw it)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from js_host.function import Function
from js_host.host import JSHost
from tests.support.client import FUNCTIONS_JS
from tests.support.processes import BUNDLED_BIN, NodeProcess
from tests.support.servers import Server
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def json_host(tmp_path: Path) -> Iterator[NodeProcess]:
    process = NodeProcess(
        BUNDLED_BIN, FUNCTIONS_JS, "--port", "0", "--log-format", "json", logdir=tmp_path
    ).start()
    yield process
    process.stop()


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            lines.append(value)
    return lines


def with_id(lines: list[dict[str, Any]], request_id: str, *, upstream: bool = False) -> list[dict[str, Any]]:
    """The lines with ``request_id``; ``upstream``: as the proxy sends it to a host."""
    if not upstream:
        return [line for line in lines if line.get("request_id") == request_id]
    sent = re.compile(re.escape(request_id) + r"\.[0-9a-f]{16}")
    return [line for line in lines if sent.fullmatch(str(line.get("request_id")))]


def test_one_call_is_found_in_the_client_proxy_and_host_logs(
    json_host: NodeProcess,
    start_gunicorn: Callable[..., tuple[str, Server]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy_url, proxy = start_gunicorn(upstream=json_host.url, log_format="json", access_log="-")
    client = JSHost(str(FUNCTIONS_JS), url_override=proxy_url, bin_path=str(BUNDLED_BIN))
    caplog.set_level(logging.DEBUG, logger="js_host")
    assert Function("echo", host=client).call(text="followed") == "followed"
    assert Function("echo", host=client).call(text="followed") == "followed"  # a hit
    miss, hit = [r for r in caplog.records if r.name == "js_host.function" and hasattr(r, "request_id")]
    assert (miss.cache, hit.cache) == ("MISS", "HIT")

    def call_lines(
        log: Callable[[], str], request_id: str, upstream: bool = False, **fields: Any
    ) -> list[dict[str, Any]]:
        """The JSON lines of ``log`` with ``request_id`` (``upstream``: as sent to a host) and ``fields``."""
        found = with_id(json_lines(log()), request_id, upstream=upstream)
        return [line for line in found if fields.items() <= line.items()]

    def host_log() -> str:
        return json_host.log

    def proxy_log() -> str:
        return proxy.log

    assert wait_for(lambda: call_lines(host_log, miss.request_id, True, function="echo", status=200))
    assert not call_lines(host_log, hit.request_id, True)
    # gunicorn's access lines (JS_HOST_PROXY_ACCESS_LOG), written once the answer is sent.
    assert wait_for(lambda: call_lines(proxy_log, miss.request_id, function="echo", status=200, cache="MISS"))
    assert wait_for(lambda: call_lines(proxy_log, hit.request_id, function="echo", status=200, cache="HIT"))
