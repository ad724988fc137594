"""An answer reaches only the call that asked for it.

Interim (1xx) answers are skipped and the final answer read from the same
socket (RFC 9110, section 15.2); a 101 nobody asked for is an error; a socket
with bytes after its answer, or bytes arriving while it sits idle in the pool,
is closed, never read as another call's answer. Against real hosts whose
functions write 1xx through ``this.res``, and against a raw-socket server that
misbehaves on purpose.
"""

from __future__ import annotations

import logging
import select
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from js_host.exceptions import UnexpectedResponse
from js_host.function import Function
from js_host.transport import Pool
from tests.support.client import FIXTURES, bin_setting
from tests.support.processes import NodeProcess, free_port
from tests.support.scripted_server import CONTINUE, HINTS, PROCESSING, ScriptedServer, ok
from tests.support.sockets import idle_local_ports
from tests.support.threaded_server import closing_servers
from tests.support.threads import run_on_threads
from tests.support.waiting import wait_for

INTERIM_FUNCTIONS = ["early_hints", "processing", "continue", "two_hints"]


@pytest.fixture
def interim_host(
    impl: str, tmp_path: Path, start_host: Callable[..., NodeProcess], client_settings: Callable[..., None]
) -> NodeProcess:
    """A host of ``impl`` running tests/fixtures/client/interim.config.js; the
    settings point at it."""
    if impl == "pool":
        pytest.skip(
            "the functions write interim answers on this.res, which stays in the host process of a pool"
        )
    port = free_port()
    source = (FIXTURES / "interim.config.js").read_text()
    config = tmp_path / "host.config.js"
    config.write_text(source.replace("module.exports = {\n", f"module.exports = {{\n  port: {port},\n", 1))
    host = start_host(config, "--port", str(port), impl=impl)
    client_settings(SOURCE_ROOT=str(tmp_path), **bin_setting(impl))
    return host


def raw_call(port: int, name: str, body: bytes) -> bytes:
    """Everything the host sends for one call (the connection closed after it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /function/%s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (name.encode(), len(body), body)
        )
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_the_host_really_sends_interim_answers(interim_host) -> None:
    port = int(interim_host.url.rsplit(":", 1)[1])
    early = raw_call(port, "early_hints", b'{"text": "x"}').lower()
    assert early.startswith(b"http/1.1 103 early hints\r\n")
    assert b"link: </style.css>; rel=preload; as=style" in early and early.endswith(b"early_hints:x")
    assert raw_call(port, "processing", b'{"text": "x"}').startswith(b"HTTP/1.1 102 Processing\r\n")
    assert raw_call(port, "continue", b'{"text": "x"}').startswith(b"HTTP/1.1 100 Continue\r\n")
    assert raw_call(port, "two_hints", b'{"text": "x"}').count(b"HTTP/1.1 103 Early Hints\r\n") == 2


def test_each_call_gets_its_own_answer_through_interim_answers(interim_host) -> None:
    results: dict[int, list[tuple[str, str]]] = {}
    errors: list[BaseException] = []

    def work(n: int) -> None:
        names = [*INTERIM_FUNCTIONS, "echo"]
        got = []
        try:
            for i in range(40):
                name = names[(n + i) % len(names)]
                text = f"{n}-{i}"
                expected = text if name == "echo" else f"{name}:{text}"
                got.append((Function(name).call(text=text, later=i % 2 == 1), expected))
        except BaseException as err:
            errors.append(err)
        results[n] = got

    run_on_threads(work, 8, timeout=120)
    assert not errors, errors
    for n in range(8):
        assert len(results[n]) == 40
        assert [answer for answer, _ in results[n]] == [expected for _, expected in results[n]]


def test_a_socket_stays_in_use_after_interim_answers(interim_host) -> None:
    # Skipping a 1xx leaves the socket clean: it is reused, not replaced.
    assert Function("echo").call(text="first") == "first"
    ports = idle_local_ports()
    for i, name in enumerate(INTERIM_FUNCTIONS * 3):
        assert Function(name).call(text=str(i)) == f"{name}:{i}"
    assert idle_local_ports() == ports and len(ports) == 1


# The raw-socket server ------------------------------------------------------


@pytest.fixture
def scripted_server() -> Iterator[Callable[..., ScriptedServer]]:
    with closing_servers(ScriptedServer) as make:
        yield make


def call(pool_: Pool, server: ScriptedServer, body: bytes) -> bytes:
    response = pool_.request("127.0.0.1", server.port, "POST", "/function/f?hash=1", body, timeout=10)
    assert response.status == 200
    return response.body


@pytest.mark.parametrize(
    "answer",
    [
        lambda body: HINTS + ok(body),
        lambda body: PROCESSING + ok(body),
        lambda body: CONTINUE + ok(body),
        lambda body: CONTINUE + PROCESSING + HINTS + HINTS + ok(body),
        # An interim status with no name of its own, with a header: skipped all the same.
        lambda body: b"HTTP/1.1 199 Whatever\r\nX-Progress: 50%\r\n\r\n" + ok(body),
        # Each piece in a write of its own, one cut inside a status line.
        lambda body: [HINTS, PROCESSING[:12], PROCESSING[12:], ok(body)],
    ],
    ids=["103", "102", "100", "several", "199", "apart"],
)
def test_interim_answers_are_skipped(scripted_server, answer) -> None:
    server = scripted_server([answer] * 3)
    pool_ = Pool()
    assert [call(pool_, server, b"call-%d" % i) for i in range(3)] == [b"call-0", b"call-1", b"call-2"]
    assert server.connections == 1  # the socket stays clean, so it is reused


def test_an_interim_answer_with_content_is_refused(scripted_server) -> None:
    # Its "content" would be the start of the final answer (RFC 9110, section 8.6).
    server = scripted_server(
        [lambda body: b"HTTP/1.1 103 Early Hints\r\nContent-Length: 4\r\n\r\n" + ok(body)]
    )
    pool_ = Pool()
    with pytest.raises(UnexpectedResponse) as info:
        call(pool_, server, b"first")
    assert f"{server.url}/function/f?hash=1" in str(info.value) and "103" in str(info.value)
    assert call(pool_, server, b"second") == b"second"
    assert server.connections == 2 and server.requests == [(0, b"first"), (1, b"second")]


@pytest.mark.parametrize(
    "after",
    [ok(b"unsolicited"), b"garbage", b"HTTP/1.1 200 OK\r\nContent-Le"],
    ids=["second-answer", "garbage", "partial-answer"],
)
def test_bytes_after_an_answer_close_its_socket(scripted_server, caplog, after) -> None:
    server = scripted_server([lambda body: ok(body) + after])
    pool_ = Pool()
    with caplog.at_level(logging.WARNING, logger="js_host.transport"):
        assert call(pool_, server, b"first") == b"first"  # the answer was complete: returned
    assert "sent more than the answer" in caplog.text and server.url in caplog.text
    assert not pool_._idle.get(("127.0.0.1", server.port))
    for i in range(3):
        assert call(pool_, server, b"next-%d" % i) == b"next-%d" % i
    assert server.connections == 2  # the first socket was never used again
    assert [number for number, _ in server.requests] == [0, 1, 1, 1]


def test_bytes_sent_to_an_idle_socket_close_it(scripted_server, caplog) -> None:
    server = scripted_server([lambda body: ok(body), ("push", ok(b"poison"))])
    pool_ = Pool()
    assert call(pool_, server, b"first") == b"first"
    assert server.pushed.wait(10)
    (conn,) = pool_._idle[("127.0.0.1", server.port)]
    assert wait_for(lambda: select.select((conn.sock,), (), (), 0)[0])  # the bytes have arrived
    with caplog.at_level(logging.WARNING, logger="js_host.transport"):
        assert call(pool_, server, b"second") == b"second"
    assert "idle kept-alive connection" in caplog.text and server.url in caplog.text
    assert server.connections == 2 and server.requests == [(0, b"first"), (1, b"second")]


def test_an_unrequested_101_is_an_error(scripted_server) -> None:
    switch = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    server = scripted_server([lambda body: switch + ok(body)])
    pool_ = Pool()
    with pytest.raises(UnexpectedResponse) as info:
        call(pool_, server, b"first")
    message = str(info.value)
    assert f"{server.url}/function/f?hash=1" in message and "101 Switching Protocols" in message
    assert not pool_._idle.get(("127.0.0.1", server.port))  # closed, never pooled
    assert call(pool_, server, b"second") == b"second"
    assert server.connections == 2 and server.requests == [(0, b"first"), (1, b"second")]
