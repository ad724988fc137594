"""``await Function(...).call_async(...)``: the blocking client's behaviour on an asyncio loop.

Against one real host of each kind (``HOST_KINDS``, shared by the module): many
concurrent tasks with timeouts mixed in, each answer matched to its input; the
errors, fallbacks and local cache of ``Function.call``; the host's target found in a
thread, once. Against raw-socket servers: the transport's guarantees (interim
answers skipped, stray bytes close a connection, a connection that timed out or
was cancelled never reused) and the loop's pool closed when the loop ends.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import re
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from js_host import aio_transport
from js_host.exceptions import (
    ConfigError,
    ConnectionError,  # noqa: A004 - the spec's name
    FunctionError,
    FunctionTimeout,
    UnexpectedResponse,
)
from js_host.function import Function, call_many_async
from js_host.host import JSHost
from tests.support.client import bin_setting, write_config
from tests.support.forked import run_in_fork
from tests.support.processes import BUNDLED_BIN, HOST_KINDS, NodeProcess, free_port, kind_args
from tests.support.recording_server import RecordingServer
from tests.support.scripted_server import HINTS, PROCESSING, ScriptedServer, ok
from tests.support.threaded_server import closing_servers
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module", params=sorted(HOST_KINDS))
def kind_process(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, NodeProcess, Path]]:
    """(kind, process, config) of a running host of each kind, for the whole module."""
    kind = request.param
    if kind != "npm-0.11" and not BUNDLED_BIN.exists():
        pytest.skip(f"the bundled host {BUNDLED_BIN} does not exist yet")
    tmp = tmp_path_factory.mktemp(f"async-{kind}")
    port = free_port()
    config = write_config(tmp, port=port)
    node = NodeProcess(HOST_KINDS[kind], config, "--port", str(port), *kind_args(kind), logdir=tmp).start()
    try:
        yield kind, node, config
    finally:
        node.stop()


@pytest.fixture(scope="module")
def kind_host(kind_process: tuple[str, NodeProcess, Path]) -> JSHost:
    """A JSHost for the module's host of each kind, which finds it through its config file
    (``node --config``: what call_async must do off the loop)."""
    kind, _, config = kind_process
    bin_path = bin_setting(kind).get("BIN_PATH")
    return JSHost(str(config), **({"bin_path": bin_path} if bin_path else {}))


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_many_tasks_with_timeouts_mixed_in_each_get_their_own_answer(kind_host: JSHost) -> None:
    echo = Function("echo", host=kind_host)
    # Abandoned by their callers before the host answers: a late answer on a socket that was
    # put back in the pool would be read as another call's.
    late = Function("sleep", host=kind_host, timeout=0.1)

    async def main() -> tuple[list[Any], int]:
        jobs = []
        for i in range(150):  # within a pool's maxQueue (200): more get its 503
            if i % 30 == 7:
                jobs.append(late.call_async(ms=400, i=i))
            else:
                jobs.append(echo.call_async(i=i, text_of=f"call {i}", pad="x" * (i % 7) * 500))
        results = await asyncio.gather(*jobs, return_exceptions=True)
        return results, aio_transport.get_pool().idle_count()

    results, idle = run(main())
    for i, result in enumerate(results):
        if i % 30 == 7:
            assert isinstance(result, FunctionTimeout), (i, result)
            assert "'sleep' did not answer within 0.1 s" in str(result)
        else:
            assert not isinstance(result, BaseException), (i, result)
            assert json.loads(result) == {"i": i, "text_of": f"call {i}", "pad": "x" * (i % 7) * 500}
    assert 0 < idle <= aio_transport.MAX_IDLE

    # Later calls, on the sockets kept, still get their own answers (never a late "slept").
    async def again() -> list[str]:
        return await asyncio.gather(*(echo.call_async(n=n) for n in range(40)))

    assert [json.loads(out)["n"] for out in run(again())] == list(range(40))


def test_errors_are_the_blocking_clients(kind_host: JSHost) -> None:
    async def main() -> None:
        with pytest.raises(FunctionError) as info:
            await Function("double", host=kind_host).call_async()
        assert info.value.js_message == "No number was provided"
        with pytest.raises(ConfigError) as config_info:
            await Function("no_such_function", host=kind_host).call_async()
        assert "has no function 'no_such_function'" in str(config_info.value)
        with pytest.raises(TypeError) as type_info:
            await Function("echo", host=kind_host).call_async(value=object())
        assert "argument 'value' cannot be encoded as JSON" in str(type_info.value)
        assert await Function("double", host=kind_host).call_async(number=21) == "42"
        assert await Function("hello_world", host=kind_host).call_async(name="A") == "Hello, A!"

    run(main())
    # The same answers as the blocking call, on its own pool.
    assert Function("hello_world", host=kind_host).call(name="A") == "Hello, A!"


def test_fallbacks_when_the_host_is_down_or_slow(tmp_path: Path, kind_host: JSHost, caplog) -> None:
    down = JSHost(
        str(write_config(tmp_path, port=free_port())), url_override=f"http://127.0.0.1:{free_port()}"
    )
    seen: list[Exception] = []

    def client_side(err: Exception) -> str:
        seen.append(err)
        return "<div id=root></div>"

    async def main() -> None:
        with pytest.raises(ConnectionError):
            await Function("hello_world", host=down).call_async()
        assert await Function("hello_world", host=down, fallback="").call_async() == ""
        assert (
            await Function("hello_world", host=down, fallback=client_side).call_async()
            == "<div id=root></div>"
        )
        slow = Function("sleep", host=kind_host, timeout=0.1, fallback=lambda err: type(err).__name__)
        assert await slow.call_async(ms=400) == "FunctionTimeout"
        # Never for a JavaScript error.
        with pytest.raises(FunctionError):
            await Function("double", host=kind_host, fallback="x").call_async()

    with caplog.at_level(logging.WARNING, logger="js_host.function"):
        run(main())
    assert [type(err) for err in seen] == [ConnectionError]
    assert caplog.text.count("returning its fallback") == 3, caplog.text


def test_the_target_is_found_once_in_a_thread(tmp_path: Path, kind_host: JSHost, monkeypatch) -> None:
    host = JSHost(kind_host.config_file, bin_path=kind_host.bin_path)
    threads: list[threading.Thread] = []
    real = host.get_target

    def get_target() -> Any:
        if not host.has_connected:
            threads.append(threading.current_thread())
        return real()

    monkeypatch.setattr(host, "get_target", get_target)

    async def main() -> list[str]:
        return await asyncio.gather(*(Function("echo", host=host).call_async(i=i) for i in range(20)))

    assert [json.loads(out)["i"] for out in run(main())] == list(range(20))
    assert len(threads) == 1 and threads[0] is not threading.main_thread(), threads


def test_a_call_never_blocks_the_loop_while_another_thread_restarts(kind_host: JSHost) -> None:
    """While a thread holds the connection's lock with the target dropped (what restart() does),
    a call waits for it in a thread of its own: the loop runs on."""
    host = JSHost(kind_host.config_file, bin_path=kind_host.bin_path).connect()
    held, release = threading.Event(), threading.Event()

    def restart() -> None:
        with host._connection.lock:
            host._drop_target()
            held.set()
            release.wait(10)

    async def main() -> str:
        thread = threading.Thread(target=restart)
        thread.start()
        await asyncio.to_thread(held.wait)
        task = asyncio.ensure_future(Function("echo", host=host).call_async(i=1))
        for _ in range(3):
            await asyncio.sleep(0.01)  # the loop goes on while the call waits
        assert not task.done()
        release.set()
        output = await task
        thread.join()
        return output

    assert json.loads(run(main())) == {"i": 1}


def test_the_hash_and_the_local_cache(recording_server, client_settings) -> None:
    server: RecordingServer = recording_server(["hello_world"])
    client_settings(LOCAL_CACHE_SIZE=100_000, URL_OVERRIDE=server.url)
    host = JSHost()
    hello = Function("hello_world", host=host)

    async def main() -> list[str]:
        return [await hello.call_async(foo="bar"), await hello.call_async(foo="bar"), hello.call(foo="bar")]

    assert run(main()) == ['ok:{"foo": "bar"}'] * 3
    (request,) = server.function_requests()  # the second and third answered from the local cache
    # The spec's test vector.
    assert request["target"] == "/function/hello_world?hash=bc4919c6adf7168088eaea06e27a5b23f0f9f9da"
    assert request["headers"]["content-type"] == "application/json"


def test_a_proxys_502_and_504_are_the_blocking_clients_errors(recording_server) -> None:
    for code, error in ((502, ConnectionError), (504, FunctionTimeout)):
        server: RecordingServer = recording_server(["echo"], status_code=code)
        host = JSHost(url_override=server.url)
        with pytest.raises(error) as info:
            run(Function("echo", host=host).call_async())
        assert f"answered {code}" in str(info.value)


# call_many_async ----------------------------------------------------------------------


def batches_seen(process: NodeProcess) -> int:
    """POST /batch lines in the host's log, once the line of one more call is there (so are
    the lines of every earlier request)."""
    before = process.log.count("POST /function/hello_world")
    Function("hello_world", host=JSHost(url_override=process.url)).call()
    wait_for(lambda: process.log.count("POST /function/hello_world") > before)
    return len(re.findall(r"POST /batch\b", process.log))


def test_call_many_async_in_order_each_calls_outcome(kind_process, kind_host: JSHost) -> None:
    kind, process, _ = kind_process
    echo = Function("echo", host=kind_host)
    fallback = Function("sleep", host=kind_host, timeout=0.2, fallback="later")
    calls = [
        (echo, {"text": "first"}),
        (Function("double", host=kind_host), {}),  # a JavaScript error
        (Function("no_such_function", host=kind_host), {}),
        (fallback, {"ms": 1}),
        *((echo, {"i": i}) for i in range(20)),
    ]
    before, singles = batches_seen(process), process.log.count("POST /function/echo")
    results = run(call_many_async(calls))
    assert results[0] == "first"
    assert isinstance(results[1], FunctionError) and results[1].js_message == "No number was provided"
    assert isinstance(results[2], ConfigError)
    assert results[3] == "slept"
    assert [json.loads(out)["i"] for out in results[4:]] == list(range(20))
    # One request for the batch; npm js-host 0.11 answers it 404: concurrent single calls instead.
    assert batches_seen(process) == before + 1
    assert process.log.count("POST /function/echo") - singles == (21 if kind == "npm-0.11" else 0)


def test_call_many_async_fallbacks_and_a_host_down(tmp_path: Path, kind_host: JSHost) -> None:
    down = JSHost(url_override=f"http://127.0.0.1:{free_port()}")
    calls = [
        (Function("echo", host=down), {}),
        (Function("echo", host=down, fallback="<p>later</p>"), {}),
        (Function("hello_world", host=kind_host), {"name": "up"}),
    ]
    results = run(call_many_async(calls))
    assert isinstance(results[0], ConnectionError) and results[1:] == ["<p>later</p>", "Hello, up!"]
    with pytest.raises(TypeError):
        run(call_many_async([(Function("echo", host=kind_host), "not a dict")]))


# The transport, against raw-socket servers ------------------------------------------


@pytest.fixture
def scripted_server() -> Iterator[Callable[..., ScriptedServer]]:
    with closing_servers(ScriptedServer) as make:
        yield make


async def call(server: ScriptedServer, body: bytes, timeout: float = 10) -> bytes:
    pool = aio_transport.get_pool()
    response = await pool.request(
        "127.0.0.1", server.port, "POST", "/function/f?hash=1", body, timeout=timeout
    )
    assert response.status == 200
    return response.body


def test_interim_answers_are_skipped(scripted_server) -> None:
    server = scripted_server(
        [lambda body: HINTS + ok(body), lambda body: [PROCESSING[:9], PROCESSING[9:], ok(body)]]
    )

    async def main() -> list[bytes]:
        return [await call(server, b"one"), await call(server, b"two")]

    assert run(main()) == [b"one", b"two"]
    assert server.connections == 1  # the connection stayed clean, so it was reused


def test_stray_bytes_close_the_connection(scripted_server, caplog) -> None:
    server = scripted_server(
        [lambda body: ok(body) + b"garbage"], [lambda body: ok(body), ("push", ok(b"poison"))]
    )

    async def main() -> list[bytes]:
        first = await call(server, b"first")  # complete: returned, its connection closed
        second = await call(server, b"second")
        assert server.pushed.wait(10)
        third = await call(server, b"third")  # the pushed bytes close the idle connection
        return [first, second, third]

    with caplog.at_level(logging.WARNING, logger="js_host.transport"):
        assert run(main()) == [b"first", b"second", b"third"]
    assert "sent more than the answer" in caplog.text and "idle kept-alive connection" in caplog.text
    assert f"{server.url}/function/f?hash=1" in caplog.text
    assert server.connections == 3
    assert server.requests == [(0, b"first"), (1, b"second"), (2, b"third")]

    # The same bytes, arriving while the loop runs: the connection is closed as they come.
    pushing = scripted_server([lambda body: ok(body), ("push", ok(b"poison"))])

    async def loop_running() -> list[bytes]:
        first = await call(pushing, b"first")
        (conn,) = aio_transport.get_pool()._idle[("127.0.0.1", pushing.port)]
        while not conn.closed:
            await asyncio.sleep(0.01)
        return [first, await call(pushing, b"second")]

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="js_host.transport"):
        assert run(loop_running()) == [b"first", b"second"]
    assert "idle kept-alive connection" in caplog.text and pushing.url in caplog.text
    assert pushing.connections == 2


def test_a_connection_that_timed_out_or_was_cancelled_is_never_reused(scripted_server) -> None:
    def late(body: bytes) -> bytes:
        time.sleep(0.4)
        return ok(b"late " + body)

    server = scripted_server([late], [late])

    async def main() -> list[bytes]:
        with pytest.raises(FunctionTimeout) as info:
            await call(server, b"a", timeout=0.1)
        assert "did not answer within 0.1 s" in str(info.value)
        task = asyncio.ensure_future(call(server, b"b"))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert aio_transport.get_pool().idle_count() == 0
        await asyncio.sleep(0.5)  # the late answers have come, to connections that are closed
        return [await call(server, b"c"), await call(server, b"d")]

    assert run(main()) == [b"c", b"d"]
    assert server.connections == 3


def test_each_request_on_a_kept_connection_gets_its_own_timeout(scripted_server) -> None:
    # A connection keeps the timer an earlier request armed (one per connection, not per
    # request): it must neither cut a later request short nor let a shorter timeout run long.
    def after(seconds: float) -> Callable[[bytes], bytes]:
        def answer(body: bytes) -> bytes:
            time.sleep(seconds)
            return ok(body)

        return answer

    server = scripted_server([after(0), after(0.7), after(0.8)])

    async def main() -> list[bytes]:
        first = await call(server, b"first", timeout=1.0)  # arms the timer, 1 s on
        await asyncio.sleep(0.5)
        # Still waiting when that timer fires (0.5 s in): it is armed again, for 2 s on.
        second = await call(server, b"second", timeout=2.0)
        with pytest.raises(FunctionTimeout) as info:
            # Due before the timer armed for the second, which the answer (0.8 s) would beat.
            await call(server, b"third", timeout=0.2)
        assert "did not answer within 0.2 s" in str(info.value)
        return [first, second]

    assert run(main()) == [b"first", b"second"]
    assert server.connections == 1


def test_a_server_that_answers_nothing(scripted_server) -> None:
    def hang_up(body: bytes) -> bytes:
        raise OSError("closed without answering")

    server = scripted_server([hang_up])

    async def main() -> None:
        with pytest.raises(ConnectionError) as info:
            await call(server, b"a")
        assert "closed the connection without answering" in str(info.value)
        with pytest.raises(UnexpectedResponse):
            pool = aio_transport.get_pool()
            bad = scripted_server(
                [lambda body: b"HTTP/1.1 103 Early Hints\r\nContent-Length: 4\r\n\r\n" + ok(body)]
            )
            await pool.request("127.0.0.1", bad.port, "POST", "/function/f", b"x", timeout=10)
        with pytest.raises(ConnectionError) as refused:
            await pool.request("127.0.0.1", free_port(), "POST", "/function/f", b"x", timeout=10)
        assert "Cannot connect" in str(refused.value)

    run(main())


def test_an_answer_ends_where_its_framing_says(scripted_server) -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    until_the_end = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end"
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"
    kept = scripted_server([lambda body: chunked, lambda body: chunked])
    closing = scripted_server([lambda body: until_the_end, ("close",)])
    cut_off = scripted_server([lambda body: cut, ("close",)])

    async def main() -> None:
        assert [await call(kept, b"a"), await call(kept, b"b")] == [b"hello", b"hello"]
        assert await call(closing, b"c") == b"until the end"  # ended by the connection (RFC 9112, 6.3)
        with pytest.raises(ConnectionError) as info:
            await call(cut_off, b"d")
        assert "closed the connection mid-response" in str(info.value)
        assert aio_transport.get_pool().idle_count() == 1  # only the chunked answers' connection

    run(main())
    assert kept.connections == 1


def test_the_loops_pool_is_closed_when_the_loop_ends(scripted_server) -> None:
    server = scripted_server()

    async def main() -> aio_transport.AsyncPool:
        await asyncio.gather(*(call(server, b"%d" % i) for i in range(5)))
        pool = aio_transport.get_pool()
        assert pool.idle_count() == 5
        return pool

    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)  # an unclosed socket would warn
        pool = run(main())
        gc.collect()
    assert pool.closed and pool.idle_count() == 0
    # The server sees every connection end.
    wait_for(lambda: server.ended == server.connections == 5, what="the 5 connections closed by the client")

    async def explicit() -> int:
        await call(server, b"x")
        await aio_transport.aclose()
        return aio_transport.get_pool().idle_count()

    assert run(explicit()) == 0


def test_a_loop_that_ends_leaves_no_pool_behind(scripted_server) -> None:
    server = scripted_server()
    loops = []

    async def main() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        await call(server, b"x")  # a pooled connection, and the pool

    for _ in range(5):
        run(main())
    gc.collect()
    assert len(aio_transport._pools) == 0
    assert [loop() for loop in loops] == [None] * 5  # nor the loops themselves


def test_a_forked_child_uses_connections_of_its_own(scripted_server) -> None:
    server = scripted_server()

    async def calls(tag: bytes) -> list[bytes]:
        return await asyncio.gather(*(call(server, tag + b"%d" % i) for i in range(3)))

    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(calls(b"parent-")) == [b"parent-0", b"parent-1", b"parent-2"]
        # A pre-fork server's worker: forked while the parent's loop holds idle connections.
        child = run_in_fork(lambda: {"answers": [a.decode() for a in asyncio.run(calls(b"child-"))]})
        assert child["answers"] == ["child-0", "child-1", "child-2"]
        assert loop.run_until_complete(calls(b"again-")) == [b"again-0", b"again-1", b"again-2"]
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    assert server.connections == 6  # the parent's 3, reused; the child's own 3
    child_connections = {number for number, body in server.requests if body.startswith(b"child-")}
    parent_connections = {number for number, body in server.requests if not body.startswith(b"child-")}
    assert len(child_connections) == 3 and not child_connections & parent_connections
