"""Fixtures for the proxy and the tests that run it: a real upstream host that
counts its calls, the proxy in-process or under real gunicorn, and a real
redis-server. Everything started here is stopped here.

A plugin: tests/conftest.py registers it.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.support.processes import BUNDLED_BIN, NodeProcess, free_port
from tests.support.proxy import CONFIGS, Proxy, Server, Upstream, in_process_proxies


@pytest.fixture
def start_upstream(start_host: Callable[..., NodeProcess]) -> Callable[..., Upstream]:
    def start(impl: str | None = None, config: Path | None = None) -> Upstream:
        """``config``: another host config than the upstream config of ``impl``."""
        impl = impl or ("bundled" if BUNDLED_BIN.exists() else "npm-0.11")
        if impl == "bundled" and not BUNDLED_BIN.exists():
            pytest.skip("the project's host (js_host/node/bin/js-host.js) does not exist yet")
        return Upstream(start_host(config or CONFIGS[impl], impl=impl), impl)

    return start


@pytest.fixture
def upstream(start_upstream: Callable[..., Upstream]) -> Upstream:
    return start_upstream()


@pytest.fixture
def make_proxy(upstream: Upstream) -> Iterator[Callable[..., Proxy]]:
    """``make_proxy(backend=None, **config)``: the app in-process, in front of ``upstream``
    with a memory cache unless told otherwise."""
    with in_process_proxies(upstream.url) as make:
        yield make


@pytest.fixture
def start_gunicorn(tmp_path: Path) -> Iterator[Callable[..., tuple[str, Server]]]:
    """``start_gunicorn(**JS_HOST_PROXY_settings)``: ``gunicorn`` in the project root (so
    gunicorn.conf.py) with 2 workers on a free port; returns (base URL, server)."""
    started: list[Server] = []

    def start(
        *, cmd: list[str] | None = None, port: int | None = None, gunicorn_args: str = "", **settings: Any
    ) -> tuple[str, Server]:
        """``cmd`` instead of ``python -m gunicorn``; ``port``: where ``cmd`` listens;
        ``gunicorn_args``: more gunicorn options (GUNICORN_CMD_ARGS)."""
        listen = port or free_port()
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("JS_HOST_PROXY_")}
        env.update(
            JS_HOST_PROXY_BIND=f"127.0.0.1:{listen if cmd is None else port}",
            JS_HOST_PROXY_WORKERS="2",
            JS_HOST_PROXY_THREADS="8",
            JS_HOST_PROXY_CACHE=f"file://{tmp_path}/cache",
            JS_HOST_PROXY_LOG_LEVEL="debug",
        )
        env.update({f"JS_HOST_PROXY_{k.upper()}": str(v) for k, v in settings.items()})
        env["GUNICORN_CMD_ARGS"] = gunicorn_args
        log = tmp_path / f"gunicorn-{listen}.log"
        server = Server(cmd or [sys.executable, "-m", "gunicorn"], log=log, env=env)
        started.append(server)
        # Both workers booted, so that concurrent requests can reach both.
        workers = int(env["JS_HOST_PROXY_WORKERS"])
        server.start(listen, ready=lambda: server.log.count("Booting worker") >= workers)
        return f"http://127.0.0.1:{listen}", server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def start_redis(tmp_path: Path) -> Iterator[Callable[..., tuple[str, Server]]]:
    """``start_redis(*options)``: a real redis-server on a free port, nothing saved to
    disk, with more ``redis-server`` options (e.g. ``--maxmemory 1mb``); (URL, server)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (scripts/install.sh installs it)")
    started: list[Server] = []

    def start(*options: str) -> tuple[str, Server]:
        port = free_port()
        folder = tmp_path / f"redis-{port}"
        folder.mkdir()
        cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        cmd += ["--dir", str(folder), "--daemonize", "no", *options]
        server = Server(cmd, log=folder / "redis.log")
        started.append(server)
        server.start(port)
        return f"redis://127.0.0.1:{port}/0", server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def redis_server(start_redis: Callable[..., tuple[str, Server]]) -> tuple[str, Server]:
    """A real redis-server on a free port, nothing saved to disk; (URL, server)."""
    return start_redis()
