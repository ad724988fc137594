"""The WSGI app of the client metrics test under gunicorn: ``/call`` calls the host's
``echo`` (at ``JS_HOST_TEST_URL``) and answers with its worker's pid (``X-Worker-Pid``);
``/metrics`` serves prometheus_client's multiprocess collection of every worker's values
(``PROMETHEUS_MULTIPROC_DIR``), as the README shows. Importing it starts nothing."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from typing import Any, Callable

from js_host.function import Function
from js_host.host import JSHost
from tests.support.processes import BUNDLED_BIN

_host: JSHost | None = None


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    global _host
    headers = [("X-Worker-Pid", str(os.getpid()))]
    if environ["PATH_INFO"] == "/metrics":
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), *headers])
        return [generate_latest(registry)]
    if _host is None:
        url = os.environ["JS_HOST_TEST_URL"]
        _host = JSHost("host.config.js", url_override=url, bin_path=str(BUNDLED_BIN))
    output = Function("echo", host=_host).call(pid=os.getpid())
    sys.stderr.write("called echo\n")
    time.sleep(0.05)  # slow enough that concurrent requests reach both workers
    start_response("200 OK", [("Content-Type", "text/plain"), *headers])
    return [output.encode()]
