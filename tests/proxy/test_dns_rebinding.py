"""The proxy's Host check (DNS rebinding): a request that reached it on a loopback address
must name a loopback host (``localhost``, ``127.x.x.x``, ``[::1]``, any port) or one of
``JS_HOST_PROXY_ALLOWED_HOSTS``, as the Node host and manager require; else a 403 that names
the setting, and nothing reaches the host or the cache.

In-process, the accepted socket the check looks at (``gunicorn.socket``) is a real connection
accepted on each kind of address; under gunicorn, real clients: ``requests``, raw HTTP/1.0
without a Host, and the js_host client with ``URL_OVERRIDE`` on ``127.0.0.1`` and ``localhost``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from js_host.function import Function
from js_host.host import JSHost
from tests.support.processes import free_port
from tests.support.proxy import Proxy, Upstream, body_of, call_path, in_process_proxies, sha1
from tests.support.raw_http import raw_exchange
from tests.support.recording_server import RecordingServer

pytestmark = pytest.mark.timeout(90)

FOREIGN_HOSTS = [
    "evil.example",
    "evil.example:9010",
    "127.0.0.1.evil.example",
    "localhost.evil.example",
    "[::2]",
]
LOCAL_HOSTS = ["localhost", "127.0.0.1", "127.0.0.5:1234", "[::1]:9", "LOCALHOST", "localhost:9010"]
SETTING = "JS_HOST_PROXY_ALLOWED_HOSTS"
BATCH = json.dumps({"jobs": [{"function": "echo", "hash": sha1(body_of({})), "body": "{}"}]}).encode()


def non_loopback_address() -> str:
    """An address of this machine that is not loopback (the route to a documentation address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            pytest.skip("no route off loopback here")
        address = probe.getsockname()[0]
    if address.startswith("127."):
        pytest.skip("no address off loopback here")
    return address


@pytest.fixture
def accepted(tmp_path: Path) -> Iterator[Callable[[str], socket.socket]]:
    """``accepted(kind)``: a connection accepted on a listener of that kind, as gunicorn hands it
    to the app: "127.0.0.1", "::1", "mapped" (an IPv6 listener reached on 127.0.0.1),
    "unix", "network" (this machine's address off loopback)."""
    with ExitStack() as stack:

        def accept(kind: str) -> socket.socket:
            if kind == "unix":
                listener = stack.enter_context(socket.socket(socket.AF_UNIX))
                listener.bind(str(tmp_path / "proxy.sock"))
            elif kind in ("::1", "mapped"):
                listener = stack.enter_context(socket.socket(socket.AF_INET6))
                if kind == "mapped":
                    listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                listener.bind(("::ffff:127.0.0.1" if kind == "mapped" else "::1", 0))
            else:
                listener = stack.enter_context(socket.socket(socket.AF_INET))
                listener.bind((non_loopback_address() if kind == "network" else kind, 0))
            listener.listen()
            peer = socket.socket(socket.AF_INET if kind == "mapped" else listener.family)
            stack.enter_context(peer)
            if kind == "unix":
                peer.connect(listener.getsockname())
            else:
                port = listener.getsockname()[1]
                peer.connect(("127.0.0.1" if kind == "mapped" else listener.getsockname()[0], port))
            return stack.enter_context(listener.accept()[0])

        yield accept


@pytest.fixture
def recording() -> Iterator[RecordingServer]:
    server = RecordingServer(["echo"])
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def recorded_proxy(recording: RecordingServer) -> Iterator[Callable[..., Proxy]]:
    with in_process_proxies(recording.url) as make:
        yield make


def every_endpoint(proxy: Proxy, environ: dict[str, Any]) -> dict[str, Any]:
    """The answer of each endpoint to a request with ``environ``, by a short name."""
    path, body = call_path("echo", {})
    post = {"content_type": "application/json", "environ_overrides": environ}
    return {
        "call": proxy.client.post(path, data=body, **post),
        "uncached call": proxy.client.post("/function/echo", data=body, **post),
        "status": proxy.client.get("/status", environ_overrides=environ),
        "batch": proxy.client.post("/batch", data=BATCH, **post),
        "health": proxy.client.get("/health", environ_overrides=environ),
        "ready": proxy.client.get("/ready", environ_overrides=environ),
        "metrics": proxy.client.get("/metrics", environ_overrides=environ),
    }


@pytest.mark.parametrize("kind", ["127.0.0.1", "::1", "mapped"])
def test_a_foreign_host_on_loopback_is_refused_and_reaches_nothing(
    kind: str,
    accepted: Callable[[str], socket.socket],
    recorded_proxy: Callable[..., Proxy],
    recording: RecordingServer,
) -> None:
    sock = accepted(kind)
    proxy = recorded_proxy(allowed_hosts=("app.example",))
    for host in FOREIGN_HOSTS:
        for name, answer in every_endpoint(proxy, {"gunicorn.socket": sock, "HTTP_HOST": host}).items():
            text = answer.get_data(as_text=True)
            assert answer.status_code == 403, (host, name, text)
            assert text.count("\n") == 1 and SETTING in text and repr(host) in text, text
            assert "X-Request-Id" in answer.headers
    assert recording.requests == []  # nothing forwarded, not even /status for a code version
    # Nothing stored either: the first call addressed right is a miss.
    allowed = {"gunicorn.socket": sock, "HTTP_HOST": "127.0.0.1:9010"}
    first = proxy.call("echo", {}, environ_overrides=allowed)
    assert (first.status_code, first.headers["X-Cache"]) == (200, "MISS")


@pytest.mark.parametrize("kind", ["127.0.0.1", "::1", "mapped"])
def test_loopback_names_and_the_allowed_hosts_pass(
    kind: str, accepted: Callable[[str], socket.socket], make_proxy: Callable[..., Proxy], upstream: Upstream
) -> None:
    sock = accepted(kind)
    proxy = make_proxy(allowed_hosts=("app.example", "[fd00::7]"))
    for host in [*LOCAL_HOSTS, "app.example", "APP.example:8000", "[fd00::7]:80"]:
        answers = every_endpoint(proxy, {"gunicorn.socket": sock, "HTTP_HOST": host})
        assert {name: a.status_code for name, a in answers.items()} == {
            "call": 200,
            "uncached call": 200,
            "status": 200,
            "batch": 200,
            "health": 200,
            "ready": 200,
            "metrics": 200,
        }, host
    refused = make_proxy().call(
        "echo", {}, environ_overrides={"gunicorn.socket": sock, "HTTP_HOST": "app.example"}
    )
    assert refused.status_code == 403


@pytest.mark.parametrize("kind", ["unix", "network", None])
def test_no_check_off_loopback(
    kind: str | None, accepted: Callable[[str], socket.socket], make_proxy: Callable[..., Proxy]
) -> None:
    """A unix socket, an address off loopback, no socket known (the app in another server)."""
    environ: dict[str, Any] = {"HTTP_HOST": "evil.example"}
    if kind is not None:
        environ["gunicorn.socket"] = accepted(kind)
    answers = every_endpoint(make_proxy(), environ)
    assert answers["call"].status_code == 200
    assert answers["status"].status_code == 200
    assert answers["batch"].status_code == 200
    assert answers["health"].status_code == 200


def test_under_gunicorn(start_gunicorn: Callable[..., Any], upstream: Upstream) -> None:
    base, server = start_gunicorn(upstream=upstream.url, allowed_hosts="app.example, Other.example")
    path, body = call_path("echo", {"rebinding": 1})
    evil = {"Host": "evil.example"}
    refused = {
        "call": requests.post(base + path, data=body, headers=evil, timeout=10),
        "status": requests.get(base + "/status", headers=evil, timeout=10),
        "batch": requests.post(base + "/batch", data=BATCH, headers=evil, timeout=10),
        "health": requests.get(base + "/health", headers=evil, timeout=10),
    }
    for name, answer in refused.items():
        assert answer.status_code == 403, (name, answer.text)
        assert SETTING in answer.text and answer.text.count("\n") == 1
    assert upstream.calls("echo") == 0
    for host in ["localhost:1", "127.0.0.1", "[::1]", "app.example", "other.example:80"]:
        answer = requests.post(base + path, data=body, headers={"Host": host}, timeout=10)
        assert answer.status_code == 200, (host, answer.text)
    assert upstream.calls("echo") == 1  # the first one allowed was a miss: nothing was stored
    # HTTP/1.0 without a Host field passes, as at the host.
    status_line = raw_exchange(base, b"GET /health HTTP/1.0\r\n\r\n").split(b"\r\n", 1)[0]
    assert status_line.endswith(b" 200 OK"), status_line
    # The js_host client, on either loopback name.
    port = base.rsplit(":", 1)[1]
    for url in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
        assert json.loads(Function("echo", host=JSHost(url_override=url)).call(via=url)) == {
            "echo": {"via": url}
        }
    assert "Traceback" not in server.log


def test_under_gunicorn_on_every_address(start_gunicorn: Callable[..., Any], upstream: Upstream) -> None:
    """Bound to 0.0.0.0: checked on the connections that reached it on 127.0.0.1, not on the others."""
    address = non_loopback_address()
    port = free_port()
    start_gunicorn(upstream=upstream.url, bind=f"0.0.0.0:{port}", port=port)
    evil = {"Host": "evil.example"}
    assert requests.get(f"http://127.0.0.1:{port}/status", headers=evil, timeout=10).status_code == 403
    assert requests.get(f"http://{address}:{port}/status", headers=evil, timeout=10).status_code == 200
