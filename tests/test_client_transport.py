"""The kept-alive connection pool: fork safety, thread safety and the retry on
a socket the server has closed."""

from __future__ import annotations

import json
import os
import threading
import time

from js_host.function import Function
from js_host.transport import pool
from tests.client_helpers import write_config
from tests.support.processes import NPM_BIN


def idle_local_ports() -> set[int]:
    """Local ports of the idle sockets to the default host."""
    from js_host.host import host

    target = host.get_target()
    return {conn.sock.getsockname()[1] for conn in pool._idle.get((target.address, target.port), [])}


def test_sockets_are_kept_alive(configured) -> None:
    Function("pid").call()
    ports = idle_local_ports()
    for _ in range(20):
        Function("pid").call()
    assert idle_local_ports() == ports and len(ports) == 1


def test_fork_child_and_parent_each_use_their_own_socket(configured) -> None:
    parent_answer = Function("pid").call()
    parent_ports = idle_local_ports()
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:  # the child: call, report its socket, exit without cleanup
        try:
            answer = Function("pid").call()
            report = {"answer": answer, "ports": sorted(idle_local_ports())}
        except BaseException as err:
            report = {"error": repr(err)}
        os.write(write_fd, json.dumps(report).encode())
        os._exit(0)
    os.close(write_fd)
    _, status = os.waitpid(child, 0)
    with os.fdopen(read_fd) as fh:
        report = json.loads(fh.read())
    assert status == 0 and "error" not in report, report
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

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    for n in range(8):
        assert results[n] == [f"{n}-{i}" for i in range(40)]
    assert 1 <= len(idle_local_ports()) <= 8


def test_a_socket_closed_by_the_server_is_retried_once(tmp_path, recording_server, client_settings) -> None:
    # The server closes the kept-alive connection when the 2nd request on it
    # arrives, without answering: the request goes again on a fresh socket.
    server = recording_server(close_after=2)
    write_config(tmp_path, port=9)
    client_settings(SOURCE_ROOT=str(tmp_path), BIN_PATH=str(NPM_BIN), URL_OVERRIDE=server.url)
    # configure() sent GET /status on connection 1; its 2nd request is closed.
    assert Function("echo").call(a=1) == 'ok:{"a": 1}'
    assert server.connections == 2
    assert len(server.function_requests()) == 1


def test_calls_after_nodes_keep_alive_timeout(configured) -> None:
    # Node closes idle kept-alive sockets after 5 s.
    Function("pid").call()
    time.sleep(5.5)
    assert Function("hello_world").call() == "Hello, World!"


def test_a_timed_out_socket_is_not_reused(configured) -> None:
    import pytest

    from js_host.exceptions import FunctionTimeout

    with pytest.raises(FunctionTimeout):
        Function("sleep", timeout=0.1).call(ms=500)
    time.sleep(0.6)  # the late answer must not be read as the next call's
    assert Function("echo").call(text="next") == "next"
