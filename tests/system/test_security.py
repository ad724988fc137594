"""Security properties, checked against real processes: the manager's challenge-response
and Host check, the host's Host check, the proxy's refusal of manager endpoints and
of forged cache keys, and loopback-only listening sockets."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable

import pytest

from js_host import manager_auth
from js_host.conf import settings
from js_host.function import Function
from js_host.manager import JSHostManager
from js_host.runtime import manager_secret
from tests.support.client import FUNCTIONS_JS, host_of
from tests.support.proc import descendants, is_loopback, listening
from tests.support.processes import NodeProcess
from tests.support.proxy import Proxy, Server, Upstream, body_of, call_path
from tests.support.raw_http import raw_exchange, request
from tests.support.recording_server import RecordingServer

FOREIGN_HOSTS = [
    "evil.example",
    "evil.example:9009",
    "127.0.0.1.evil.example",
    "localhost.evil.example",
    "[::2]",
]
LOCAL_HOSTS = ["localhost", "127.0.0.1", "127.0.0.5:1234", "[::1]:9", "LOCALHOST"]


@pytest.fixture
def impl() -> str:
    """The secret and the Host check are the project's own manager's (npm 0.11 has neither)."""
    return "bundled"


@pytest.fixture
def manager(manager_env: dict) -> tuple[str, JSHostManager]:
    """Our manager, started in the test's private runtime dir; (base URL, client)."""
    settings.configure(VERBOSITY=0, CONNECT_ONCE_CONFIGURED=False, **manager_env["settings"])
    client = JSHostManager(str(manager_env["config"])).start()
    return client.get_url(), client


def signed(base: str, method: str, path: str, body: bytes = b"") -> dict[str, str]:
    """The Authorization header of one request, after a challenge whose proof is checked."""
    client_nonce = secrets.token_hex(32)
    answer = request(base, method, path, headers={manager_auth.CHALLENGE_HEADER: client_nonce})
    nonce = manager_auth.check_challenge(answer, manager_secret(), client_nonce)
    mac = manager_auth.request_mac(manager_secret(), nonce, method, path, body)
    return {"Authorization": f'{manager_auth.SCHEME} nonce="{nonce}", mac="{mac}"'}


# -- the manager ------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_manager_refuses_requests_not_signed_with_its_secret(
    manager: tuple[str, JSHostManager], manager_env: dict
) -> None:
    base, client = manager
    secret_file = str(manager_env["runtime"] / "manager.secret")
    config = json.dumps({"config": str(manager_env["config"])}).encode()
    other = "0" * 64
    unknown_nonce = secrets.token_hex(32)
    for method, path, body in (("GET", "/status", b""), ("POST", "/host/start", config)):
        right_mac = manager_auth.request_mac(manager_secret(), unknown_nonce, method, path, body)
        for headers in (
            {},
            # The secret as a bearer token (the scheme before this one), bare, as Basic.
            {"Authorization": f"Bearer {manager_secret()}"},
            {"Authorization": manager_secret()},
            {"Authorization": "Basic " + manager_secret()},
            # A nonce the manager never gave, even with the right MAC for it.
            {"Authorization": f'JSHost-HMAC nonce="{unknown_nonce}", mac="{right_mac}"'},
        ):
            answer = request(base, method, path, body, headers=headers)
            assert answer.status == 401, (headers, answer)
            assert secret_file in answer.text
            assert "authentication-info" not in answer.headers
        # A fresh nonce, signed with another secret.
        client_nonce = secrets.token_hex(32)
        challenge = request(base, method, path, headers={manager_auth.CHALLENGE_HEADER: client_nonce})
        nonce = manager_auth.check_challenge(challenge, manager_secret(), client_nonce)
        forged = manager_auth.request_mac(other, nonce, method, path, body)
        answer = request(
            base,
            method,
            path,
            body,
            headers={"Authorization": f'JSHost-HMAC nonce="{nonce}", mac="{forged}"'},
        )
        assert answer.status == 401 and secret_file in answer.text
    # Nothing was started by the refused requests.
    assert client.request_host_status(str(manager_env["config"]))["started"] is False
    assert request(base, "GET", "/status", headers=signed(base, "GET", "/status")).status == 200


@pytest.mark.timeout(60)
@pytest.mark.parametrize("foreign", FOREIGN_HOSTS)
def test_manager_refuses_a_foreign_host_header(
    manager: tuple[str, JSHostManager], manager_env: dict, foreign: str
) -> None:
    base, client = manager
    answer = request(base, "GET", "/status", headers={**signed(base, "GET", "/status"), "Host": foreign})
    assert answer.status == 403 and "Host" in answer.text
    config = json.dumps({"config": str(manager_env["config"])}).encode()
    headers = {**signed(base, "POST", "/host/start", config), "Host": foreign}
    answer = request(base, "POST", "/host/start", config, headers=headers)
    assert answer.status == 403
    assert client.request_host_status(str(manager_env["config"]))["started"] is False


@pytest.mark.timeout(60)
def test_manager_accepts_loopback_host_headers(manager: tuple[str, JSHostManager]) -> None:
    base, _ = manager
    for name in LOCAL_HOSTS:
        headers = {**signed(base, "GET", "/status"), "Host": name}
        assert request(base, "GET", "/status", headers=headers).status == 200, name


# -- the host ---------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_host_refuses_a_foreign_host_header_and_accepts_loopback_ones(
    start_host: Callable[..., NodeProcess],
) -> None:
    host = start_host(FUNCTIONS_JS)
    path, body = call_path("echo", {"text": "hi"})
    for name in FOREIGN_HOSTS:
        for method, target, data in (("GET", "/status", None), ("POST", path, body)):
            answer = request(host.url, method, target, data, headers={"Host": name})
            assert answer.status == 403, (name, target, answer)
            assert "Host" in answer.text
    for name in LOCAL_HOSTS:
        assert request(host.url, "POST", path, body, headers={"Host": name}).body == b"hi", name
    # HTTP/1.0 without a Host header is allowed.
    raw = raw_exchange(host.url, b"GET /status HTTP/1.0\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200") or raw.startswith(b"HTTP/1.0 200"), raw[:200]


# -- the proxy --------------------------------------------------------------------------------

MANAGER_PATHS = [
    "/manager/stop",
    "/host/start",
    "/host/restart",
    "/manager",
    "/host/../manager/stop",
    "/function/../manager/stop",
    "/function/../host/start",
    "/%6danager/stop",
    "/%2Fmanager/stop",
    "//manager/stop",
    "/function/%2E%2E/manager/stop",
    "/function/..%2Fmanager%2Fstop",
    "/./manager/stop",
]


def assert_only_function_and_status_forwarded(recorder: RecordingServer) -> None:
    """The proxy forwards POST /function/<one segment> and GET /status, nothing else: a name
    such as ``../manager/stop`` reaches the host percent-encoded, as one path segment."""
    for record in recorder.requests:
        path = record["target"].split("?", 1)[0]
        if path == "/status":
            assert record["method"] == "GET"
            continue
        assert path.startswith("/function/"), record["target"]
        assert "/" not in path[len("/function/") :], record["target"]
        assert record["method"] == "POST"


@pytest.mark.timeout(60)
def test_proxy_never_forwards_manager_endpoints(
    make_proxy: Callable[..., Proxy], recording_server: Callable[..., RecordingServer]
) -> None:
    recorder = recording_server(["echo"])
    proxy = make_proxy(upstreams=(recorder.url,))
    body = json.dumps({"config": "/etc/passwd"}).encode()
    for path in MANAGER_PATHS:
        for method in ("POST", "GET"):
            reply = proxy.client.open(path, method=method, data=body, content_type="application/json")
            if not path.startswith("/function/"):
                assert reply.status_code in (400, 403, 404, 405), (method, path, reply.status_code)
    assert_only_function_and_status_forwarded(recorder)


@pytest.mark.timeout(60)
def test_gunicorn_proxy_never_forwards_manager_endpoints(
    start_gunicorn: Callable[..., tuple[str, Server]], recording_server: Callable[..., RecordingServer]
) -> None:
    recorder = recording_server(["echo"])
    base, _ = start_gunicorn(upstream=recorder.url)
    body = json.dumps({"config": "/etc/passwd"}).encode()
    for path in MANAGER_PATHS:
        answer = request(base, "POST", path, body)
        if not path.startswith("/function/"):
            assert answer.status in (400, 403, 404, 405), (path, answer)
    assert_only_function_and_status_forwarded(recorder)


@pytest.mark.timeout(60)
def test_a_hash_of_another_body_is_refused_and_nothing_is_stored(
    upstream: Upstream, make_proxy: Callable[..., Proxy]
) -> None:
    proxy = make_proxy()
    honest = body_of({"k": "honest"})
    forged = body_of({"k": "forged"})
    path = f"/function/echo?hash={hashlib.sha1(honest).hexdigest()}"
    for variant in (path, path.upper().replace("/FUNCTION/ECHO?HASH=", "/function/echo?hash=")):
        reply = proxy.client.post(variant, data=forged, content_type="application/json")
        assert reply.status_code == 400 and "sha1" in reply.get_data(as_text=True)
    assert upstream.calls("echo", {"k": "forged"}) == 0
    # The honest body's key holds nothing: its first call is a miss with its own answer.
    reply = proxy.client.post(path, data=honest, content_type="application/json")
    assert reply.status_code == 200 and reply.headers["X-Cache"] == "MISS"
    assert json.loads(reply.get_data()) == {"echo": {"k": "honest"}}
    # A hash given twice, or beside other parameters, cannot smuggle a second key.
    digest = hashlib.sha1(honest).hexdigest()
    for query in (f"hash={digest}&hash={hashlib.sha1(forged).hexdigest()}", f"x=1&hash={digest}"):
        reply = proxy.client.post(f"/function/echo?{query}", data=forged, content_type="application/json")
        if reply.status_code == 200:
            assert json.loads(reply.get_data()) == {"echo": {"k": "forged"}}
    reply = proxy.client.post(path, data=honest, content_type="application/json")
    assert json.loads(reply.get_data()) == {"echo": {"k": "honest"}}


@pytest.mark.timeout(60)
def test_the_same_hash_for_different_function_names_does_not_collide(
    upstream: Upstream, make_proxy: Callable[..., Proxy]
) -> None:
    proxy = make_proxy()
    data = {"k": "shared"}
    first = proxy.call("echo", data)
    assert first.status_code == 200 and first.headers["X-Cache"] == "MISS"
    for name in ("long", "counter", "echo/", "echo%2F", "ECHO"):
        path, body = call_path(name, data)
        reply = proxy.client.post(path, data=body, content_type="application/json")
        assert reply.headers.get("X-Cache") != "HIT", name
    counter = proxy.call("counter", data)
    assert counter.get_data(as_text=True) != first.get_data(as_text=True)
    assert upstream.calls("long", data) == 1


# -- listening sockets ------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_nothing_listens_on_a_non_loopback_address(
    start_host: Callable[..., NodeProcess],
    upstream: Upstream,
    start_gunicorn: Callable[..., tuple[str, Server]],
    manager_env: dict,
) -> None:
    pids: set[int] = set()
    for impl in ("bundled", "npm-0.11"):
        host = start_host(FUNCTIONS_JS, impl=impl)
        assert host.process is not None
        pids.add(host.process.pid)
    _, proxy = start_gunicorn(upstream=upstream.url)
    assert proxy.process is not None
    pids |= {proxy.process.pid, *descendants(proxy.process.pid)}
    # The manager and the host it spawns (both detached from this process).
    settings.configure(VERBOSITY=0, **manager_env["settings"])
    host_pid = host_of(int(Function("pid").call()))  # a managed host runs a pool: its workers too
    from tests.support.proc import pid_listening_on

    manager_port = int(JSHostManager(str(manager_env["config"])).get_url().rsplit(":", 1)[1])
    manager_pid = pid_listening_on(manager_port)
    assert manager_pid is not None
    pids |= {host_pid, manager_pid, *descendants(host_pid)}
    sockets = listening(pids)
    assert {pid for pid, _, _ in sockets} >= {host_pid, manager_pid}
    exposed = [s for s in sockets if not is_loopback(s[1])]
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_listening_reads_proc_net_tcp() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.7", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        found = [s for s in listening({os.getpid()}) if s[2] == port]
    assert found == [(os.getpid(), "127.0.0.7", port)]
    assert not is_loopback("0.0.0.0") and is_loopback("127.0.0.9") and is_loopback("::ffff:127.0.0.1")
