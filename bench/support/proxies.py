"""The caching proxies under measurement: js_host_proxy under gunicorn, nginx
``proxy_cache`` (the bar), the host behind them, and calls through them (or, in-process,
straight to the proxy's WSGI app)."""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import requests

from . import BENCH, BINS, import_this_checkout
from .install import which
from .processes import NodeServer, OwnedProcess, free_port, fresh_log

import_this_checkout()  # js_host_proxy, imported by the scripts that measure it in-process

HOST_CONFIG = BENCH / "proxy_upstream.config.js"
JSON = {"Content-Type": "application/json"}


def body_and_path(name: str, data: dict[str, Any]) -> tuple[bytes, str]:
    """The body and path of a cacheable call of ``name`` (the hash of the body in the query)."""
    body = json.dumps(data, sort_keys=True).encode()
    return body, f"/function/{name}?hash={hashlib.sha1(body).hexdigest()}"


def post_environ(path: str, body: bytes, **extra: str) -> Callable[[], dict[str, Any]]:
    """A new WSGI environ for each call of it: a POST of ``body`` (JSON) to ``path`` (with
    its query), and the ``extra`` keys, for calling the proxy's app in this process. The
    path is split once here, not in every timed call."""
    route, _, query = path.partition("?")

    def environ() -> dict[str, Any]:
        return {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": route,
            "QUERY_STRING": query,
            "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": "application/json",
            "wsgi.input": io.BytesIO(body),
            **extra,
        }

    return environ


def start_host(workdir: Path) -> tuple[str, NodeServer]:
    """The host behind the proxies (bench/proxy_upstream.config.js): the project's own
    when it exists, else js-host 0.11 from tests/npm. Returns (its name, the server)."""
    impl = "bundled" if BINS["bundled"].exists() else "npm-0.11"
    cmd = ["node", str(BINS[impl]), str(HOST_CONFIG), "--json", "--port", "0"]
    return impl, NodeServer(cmd, fresh_log(workdir, "host"))


def start_proxy(
    workdir: Path, upstream: str, *, app: str | None = None, **settings: str
) -> tuple[OwnedProcess, str]:
    """gunicorn in the project root (gunicorn.conf.py), 2 workers, in front of ``upstream``;
    ``settings`` are JS_HOST_PROXY_* (lower case, without the prefix); ``app`` (a module
    in bench/) instead of the proxy. Returns (process, base URL) once both workers boot."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JS_HOST_PROXY_")}
    env.update(
        JS_HOST_PROXY_UPSTREAM=upstream,
        JS_HOST_PROXY_BIND=f"127.0.0.1:{port}",
        JS_HOST_PROXY_WORKERS="2",
        JS_HOST_PROXY_LOG_LEVEL="warning",
    )
    env.update({f"JS_HOST_PROXY_{k.upper()}": v for k, v in settings.items()})
    cmd = [sys.executable, "-m", "gunicorn"]
    if app is not None:
        env["PYTHONPATH"] = str(BENCH)
        cmd.append(app)
    proc = OwnedProcess(cmd, workdir / f"gunicorn-{port}.log", env=env).wait_port(port)
    # The "Booting worker" lines are logged at info level only; else the port is enough.
    deadline = time.monotonic() + 10
    while proc.log.read_text(errors="replace").count("Booting worker") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}"


NGINX_CONF = """
daemon off;
worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
{user}
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp-body;
    proxy_temp_path {prefix}/tmp-proxy;
    fastcgi_temp_path {prefix}/tmp-fastcgi;
    uwsgi_temp_path {prefix}/tmp-uwsgi;
    scgi_temp_path {prefix}/tmp-scgi;
    proxy_cache_path {prefix}/cache levels=1:2 keys_zone=jshost:10m max_size=100m
                     inactive=10m use_temp_path=off;
    upstream js_host {{ server {upstream}; keepalive 32; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://js_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host {upstream};
            proxy_cache jshost;
            proxy_cache_methods POST;
            proxy_cache_key $request_uri;
            proxy_cache_valid 200 10m;
            proxy_cache_lock on;
            add_header X-Cache $upstream_cache_status;
        }}
    }}
    server {{
        listen 127.0.0.1:{pass_port};
        location / {{
            proxy_pass http://js_host;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host {upstream};
        }}
    }}
}}
"""


def start_nginx(
    workdir: Path, upstream: str, *, all_as_nobody: bool = False
) -> tuple[OwnedProcess, str, str]:
    """nginx from its own prefix in ``workdir`` on free ports, unprivileged: ``proxy_cache``
    (POST, key ``$request_uri``, ``proxy_cache_lock on``) in front of ``upstream``, and a
    plain pass-through. As root its workers run as nobody; with ``all_as_nobody`` the
    whole of nginx does (setpriv). Returns (process, cache URL, pass-through URL)."""
    prefix = workdir / "nginx"
    prefix.mkdir()
    port, pass_port = free_port(), free_port()
    root = os.geteuid() == 0
    user = "user nobody nogroup;" if root and not all_as_nobody else ""
    conf = prefix / "nginx.conf"
    address = upstream.split("//", 1)[1]
    conf.write_text(
        NGINX_CONF.format(prefix=prefix, port=port, pass_port=pass_port, user=user, upstream=address)
    )
    cmd = [which("nginx") or "nginx", "-e", "stderr", "-p", str(prefix), "-c", str(conf)]
    if root:  # nobody must write the cache and temp folders
        for path in (prefix, conf):
            os.chown(path, 65534, 65534)
        if all_as_nobody:
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    proc = OwnedProcess(cmd, workdir / "nginx.out")
    proc.wait_port(port)  # bounded: gives up (and stops nginx) after 15 s
    proc.wait_port(pass_port)
    return proc, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{pass_port}"


def warm(url: str, body: bytes, path: str) -> str:
    """Call until answered from the cache ("HIT"; the memory cache is per worker, and a
    new connection may reach either worker), at most 10 times; the last X-Cache."""
    state = "?"
    for _ in range(10):
        r = requests.post(url + path, data=body, headers=JSON, timeout=10)
        r.raise_for_status()
        state = r.headers.get("X-Cache", "?")
        if state == "HIT":
            break
    return state


#: label -> (base URL, function name, make_data(i)): one kind of call for paired_ms.
Calls = dict[str, tuple[str, str, Callable[[int], dict[str, Any]]]]


def paired_ms(calls: Calls, count: int, block: int = 1) -> dict[str, float]:
    """Median milliseconds of each kind of call, one call at a time, each kind on its own
    kept-alive connection (http.client: as little client time as possible in the numbers).

    The kinds take turns, ``block`` calls each, so that load from elsewhere on the machine
    weighs on each alike (blocks: so that a fast call does not always follow a 20 ms wait).
    """
    connections = {}
    for label, (base, _, _) in calls.items():
        host, port = base.split("//", 1)[1].rsplit(":", 1)
        connections[label] = http.client.HTTPConnection(host, int(port), timeout=30)
    times: dict[str, list[float]] = {label: [] for label in calls}
    try:
        for first in range(0, count, block):
            for label, (_, name, make_data) in calls.items():
                for i in range(first, min(first + block, count)):
                    times[label].append(_one_call_ms(connections[label], label, name, make_data(i)))
    finally:
        for conn in connections.values():
            conn.close()
    return {label: statistics.median(values) for label, values in times.items()}


def _one_call_ms(conn: http.client.HTTPConnection, label: str, name: str, data: dict[str, Any]) -> float:
    body, path = body_and_path(name, data)
    start = time.perf_counter()
    conn.request("POST", path, body=body, headers=JSON)
    response = conn.getresponse()
    response.read()
    elapsed = (time.perf_counter() - start) * 1000
    if response.status != 200:
        raise RuntimeError(f"{label}: {response.status} for {path}")
    return elapsed
