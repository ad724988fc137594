"""Helpers for the proxy tests and the system tests that run the proxy: the upstream
host's configs, the proxy's request paths, an upstream that counts its calls, the
proxy in-process (werkzeug's test client), and a server process started once it
listens. (Their fixtures are in tests/support/proxy_fixtures.py.)"""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import requests
from werkzeug.test import Client

from js_host_proxy.app import ProxyApp
from js_host_proxy.cache.base import CacheBackend
from js_host_proxy.cache.keys import cache_key, unversioned
from js_host_proxy.config import ProxyConfig
from tests.support.processes import NodeProcess, OwnedProcess

#: The upstream configs (and the proxy tests' other host configs).
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "proxy"
#: Implementations the upstream can be: our host when it exists, and js-host 0.11.
IMPLS = ["bundled", "npm-0.11"]
CONFIGS = {"bundled": FIXTURES / "upstream.config.js", "npm-0.11": FIXTURES / "upstream-0.11.config.js"}


def body_of(data: dict[str, Any]) -> bytes:
    """The client's canonical body: json.dumps(data, sort_keys=True)."""
    return json.dumps(data, sort_keys=True).encode()


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def call_path(name: str, data: dict[str, Any]) -> tuple[str, bytes]:
    body = body_of(data)
    return f"/function/{name}?hash={sha1(body)}", body


@dataclass
class Upstream:
    host: NodeProcess
    impl: str

    @property
    def url(self) -> str:
        return self.host.url

    def calls(self, name: str, data: dict[str, Any] | None = None) -> int:
        """How many calls of ``name`` (with exactly ``data``, when given) reached the host."""
        query = {"name": name, "data": data} if data is not None else {}
        answer = requests.post(f"{self.url}/function/calls", json=query, timeout=5).json()
        return answer if data is not None else answer.get(name, 0)

    @property
    def version(self) -> str:
        """The code version in the keys of a proxy in front of this upstream alone."""
        return self.host.status.get("codeVersion") or unversioned((self.url,))

    def key(self, name: str, data: dict[str, Any], namespace: str = "") -> str:
        """The key of a call of ``name`` with ``data`` through such a proxy."""
        return cache_key(namespace, self.version, name, sha1(body_of(data)))

    def stop(self) -> None:
        self.host.stop()


class Proxy:
    """A ProxyApp and werkzeug's test client over it."""

    def __init__(self, app: ProxyApp) -> None:
        self.app = app
        self.client = Client(app)

    def call(self, name: str, data: dict[str, Any], **kwargs: Any) -> Any:
        path, body = call_path(name, data)
        kwargs.setdefault("content_type", "application/json")
        return self.client.post(path, data=body, **kwargs)


@contextmanager
def in_process_proxies(upstream_url: str) -> Iterator[Callable[..., Proxy]]:
    """Within: ``make(backend=None, **config)`` makes the app in-process, in front of
    ``upstream_url`` with a memory cache unless told otherwise. Every app made is
    closed on the way out."""
    made: list[ProxyApp] = []

    def make(*, backend: CacheBackend | None = None, **overrides: Any) -> Proxy:
        overrides.setdefault("upstreams", (upstream_url,))
        overrides.setdefault("cache_url", "memory://")
        app = ProxyApp(replace(ProxyConfig(), **overrides), backend=backend)
        made.append(app)
        return Proxy(app)

    try:
        yield make
    finally:
        for app in made:
            app.close()


class Server(OwnedProcess):
    """A server process: started once its port accepts connections (and ``ready()``)."""

    def start(self, port: int, timeout: float = 15.0, ready: Callable[[], bool] | None = None) -> Server:
        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            except OSError:
                return False
            return ready is None or ready()

        self.spawn()
        self.wait_until(listening, timeout)
        return self
