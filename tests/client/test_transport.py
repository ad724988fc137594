"""The kept-alive connection pool: fork safety, thread safety, sockets the
server has closed (retried only when the server cannot have processed the
request) and responses cut off before their end."""

from __future__ import annotations

import select
import socket
import struct
import threading
import time

import pytest

from js_host import connection
from js_host.exceptions import ConnectionError  # noqa: A004 - the spec's name
from js_host.function import Function
from js_host.transport import Pool
from tests.support.client import write_config
from tests.support.forked import run_in_fork
from tests.support.processes import NPM_BIN
from tests.support.sockets import idle_local_ports, read_request
from tests.support.threaded_server import ThreadedServer, closing_servers
from tests.support.threads import run_on_threads
from tests.support.waiting import wait_for


def test_sockets_are_kept_alive(configured) -> None:
    Function("pid").call()
    ports = idle_local_ports()
    for _ in range(20):
        Function("pid").call()
    assert idle_local_ports() == ports and len(ports) == 1


def test_fork_child_and_parent_each_use_their_own_socket(configured) -> None:
    parent_answer = Function("pid").call()
    parent_ports = idle_local_ports()

    def child() -> dict[str, object]:  # call, report its socket, exit without cleanup
        return {"answer": Function("pid").call(), "ports": sorted(idle_local_ports())}

    report = run_in_fork(child)
    assert report["answer"] == parent_answer  # the same host
    assert report["ports"] and not set(report["ports"]) & parent_ports
    # The parent's socket still works and is still the same one.
    assert Function("pid").call() == parent_answer
    assert idle_local_ports() == parent_ports


def test_eight_threads(configured) -> None:
    results: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            results[n] = [Function("echo").call(text=f"{n}-{i}") for i in range(40)]
        except BaseException as err:
            errors.append(err)

    run_on_threads(work, 8, timeout=60)
    assert not errors, errors
    for n in range(8):
        assert results[n] == [f"{n}-{i}" for i in range(40)]
    assert 1 <= len(idle_local_ports()) <= 8


def test_a_call_the_server_dropped_unanswered_is_not_sent_again(
    tmp_path, recording_server, client_settings
) -> None:
    # The server closes the kept-alive connection when the 2nd request on it
    # arrives, without answering. It may have run the function (a worker killed
    # mid-request): the call fails rather than run twice.
    server = recording_server(close_after=2)
    write_config(tmp_path, port=9)
    client_settings(SOURCE_ROOT=str(tmp_path), BIN_PATH=str(NPM_BIN), URL_OVERRIDE=server.url)
    # configure() sent GET /status on connection 1; its 2nd request is closed.
    with pytest.raises(ConnectionError) as info:
        Function("echo").call(a=1)
    assert f"{server.url}/function/echo?hash=" in str(info.value) and "not retried" in str(info.value)
    assert server.connections == 1
    # The next call goes on a fresh socket.
    assert Function("echo").call(a=2) == 'ok:{"a": 2}'
    assert server.connections == 2


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class RawServer(ThreadedServer):
    """Serves each accepted connection by a script, one step per step:

    - bytes: read a request, send these bytes;
    - DROP: read a request, close without answering;
    - CLOSE: close (FIN); RESET: close with an RST (SO_LINGER 0).

    A connection whose script ends is closed. ``requests`` holds (connection
    number, request line) for every request read.
    """

    def __init__(self, *scripts: list[bytes | str]) -> None:
        self.scripts = list(scripts)
        self.requests: list[tuple[int, str]] = []
        self.closed = [threading.Event() for _ in scripts]
        super().__init__()

    def handle(self, conn: socket.socket, number: int) -> None:
        script = self.scripts[number] if number < len(self.scripts) else []
        buf = b""
        for step in script:
            if step == RESET:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                break
            if step == CLOSE:
                break
            try:
                head, _, buf = read_request(conn, buf)
            except OSError:  # the client went away (or reset the connection)
                break
            self.requests.append((number, head.split(b"\r\n", 1)[0].decode()))
            if step == DROP:
                break
            conn.sendall(step)
        conn.close()
        if number < len(self.closed):
            self.closed[number].set()


DROP, CLOSE, RESET = "drop", "close", "reset"


@pytest.fixture
def raw_server():
    with closing_servers(RawServer) as make:
        yield make


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n",
    ],
)
def test_a_cut_off_response_is_a_connection_error(raw_server, response) -> None:
    server = raw_server([response])
    with pytest.raises(ConnectionError) as info:
        Pool().request("127.0.0.1", server.port, "POST", "/function/f?hash=1", b"{}", timeout=10)
    assert f"{server.url}/function/f?hash=1" in str(info.value)


def test_a_body_without_length_or_chunking_ends_with_the_connection(raw_server) -> None:
    # RFC 9112, section 6.3, rule 8.
    server = raw_server([b"HTTP/1.1 200 OK\r\n\r\nhello"])
    response = Pool().request("127.0.0.1", server.port, "POST", "/function/f?hash=1", b"{}", timeout=10)
    assert (response.status, response.body, response.keep_alive) == (200, b"hello", False)


def test_a_get_the_server_dropped_on_a_reused_socket_is_retried(raw_server) -> None:
    server = raw_server([OK, DROP], [OK])
    pool_ = Pool()
    for _ in range(2):
        assert pool_.request("127.0.0.1", server.port, "GET", "/status", timeout=10).body == b"ok"
    assert server.requests == [
        (0, "GET /status HTTP/1.1"),
        (0, "GET /status HTTP/1.1"),
        (1, "GET /status HTTP/1.1"),
    ]


def test_a_post_the_server_dropped_on_a_reused_socket_is_not_retried(raw_server) -> None:
    server = raw_server([OK, DROP], [OK])
    pool_ = Pool()
    pool_.request("127.0.0.1", server.port, "GET", "/status", timeout=10)
    with pytest.raises(ConnectionError) as info:
        pool_.request("127.0.0.1", server.port, "POST", "/function/f?hash=1", b"{}", timeout=10)
    assert f"{server.url}/function/f?hash=1" in str(info.value) and "not retried" in str(info.value)
    assert server.requests == [(0, "GET /status HTTP/1.1"), (0, "POST /function/f?hash=1 HTTP/1.1")]


@pytest.mark.parametrize("close", [CLOSE, RESET])
def test_a_socket_the_server_closed_while_idle_is_not_used(raw_server, close) -> None:
    # Closed with a FIN or an RST: seen by the poll before reuse, a fresh socket is used.
    server = raw_server([OK, close], [OK])
    pool_ = Pool()
    pool_.request("127.0.0.1", server.port, "GET", "/status", timeout=10)
    assert server.closed[0].wait(10)
    (conn,) = pool_._idle[("127.0.0.1", server.port)]
    assert wait_for(lambda: select.select((conn.sock,), (), (), 0)[0])  # the FIN or RST has arrived
    response = pool_.request("127.0.0.1", server.port, "POST", "/function/f?hash=1", b"{}", timeout=10)
    assert response.body == b"ok"
    assert server.requests == [(0, "GET /status HTTP/1.1"), (1, "POST /function/f?hash=1 HTTP/1.1")]


def test_a_failed_send_on_a_reused_socket_is_retried(raw_server, monkeypatch) -> None:
    # The RST arrives just after the check before reuse: the send fails.
    monkeypatch.setattr(connection.Connection, "idle_and_open", lambda conn: True)
    server = raw_server([OK, RESET], [OK])
    pool_ = Pool()
    pool_.request("127.0.0.1", server.port, "GET", "/status", timeout=10)
    assert server.closed[0].wait(10)
    (conn,) = pool_._idle[("127.0.0.1", server.port)]
    assert wait_for(lambda: select.select((conn.sock,), (), (), 0)[0])
    response = pool_.request("127.0.0.1", server.port, "POST", "/function/f?hash=1", b"{}", timeout=10)
    assert response.body == b"ok"
    assert server.requests == [(0, "GET /status HTTP/1.1"), (1, "POST /function/f?hash=1 HTTP/1.1")]


def test_calls_after_nodes_keep_alive_timeout(configured) -> None:
    # Node closes idle kept-alive sockets after 5 s.
    Function("pid").call()
    time.sleep(5.5)
    assert Function("hello_world").call() == "Hello, World!"


def test_a_timed_out_socket_is_not_reused(configured) -> None:
    from js_host.exceptions import FunctionTimeout

    with pytest.raises(FunctionTimeout):
        Function("sleep", timeout=0.1).call(ms=500)
    time.sleep(0.6)  # the late answer must not be read as the next call's
    assert Function("echo").call(text="next") == "next"
