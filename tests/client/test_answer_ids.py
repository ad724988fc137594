"""An answer reaches only its own call, told by the X-Request-Id it carries back.

A function that writes a whole response of its own on ``this.res.socket`` after
calling back (from a ``setImmediate``) puts bytes on the kept-alive connection that
arrive after the framing checks ran: the next request on that connection would read
them as its answer, and from there every answer would be one out of step. Against a
real host whose functions do that, every call gets its own output or an
``AnswerMismatch``, never another call's, blocking and asyncio, one thread or eight;
js-host 0.11 (which echoes no id) still works. Against a raw-socket server, the rule
itself: another id, or none where the connection's answers carried one, closes the
connection; none on a connection that never carried one is taken.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Union

import pytest

from js_host import aio_transport
from js_host.exceptions import AnswerMismatch
from js_host.function import Function
from js_host.transport import Pool
from tests.support.client import bin_setting
from tests.support.processes import ROOT, NodeProcess, free_port
from tests.support.scripted_server import ScriptedServer
from tests.support.sockets import idle_local_ports
from tests.support.threaded_server import closing_servers
from tests.support.threads import run_on_threads

pytestmark = pytest.mark.timeout(120)

# Each function's output is its name and a colon, then its data as JSON.
STRAY_CONFIG = """\
module.exports = {
  port: PORT,
  functions: require(FUNCTIONS)(function (name, data) { return name + ':' + JSON.stringify(data); }),
};
"""
STRAY_FUNCTIONS = ROOT / "tests" / "fixtures" / "stray_functions.js"
NAMES = ["stray", "echo", "stray_same_id", "echo"]


def write_stray_config(directory: Path, port: int) -> Path:
    config = directory / "host.config.js"
    functions = json.dumps(str(STRAY_FUNCTIONS))
    config.write_text(STRAY_CONFIG.replace("PORT", str(port)).replace("FUNCTIONS", functions))
    return config


@pytest.fixture
def stray_host(
    tmp_path: Path, start_host: Callable[..., NodeProcess], client_settings: Callable[..., None]
) -> NodeProcess:
    """A bundled host running STRAY_CONFIG; the settings point at it. (A pool's workers
    have no ``this.res``: they cannot write on a connection.)"""
    port = free_port()
    host = start_host(write_stray_config(tmp_path, port), "--port", str(port))
    client_settings(SOURCE_ROOT=str(tmp_path))
    return host


def judged(name: str, data: dict[str, Any], out: str | AnswerMismatch) -> str:
    """ "ok", "error" (an AnswerMismatch) or what is wrong with ``out``, the output of ``name(data)``."""
    if isinstance(out, AnswerMismatch):
        assert "X-Request-Id" in str(out) and "/function/" in str(out), out
        return "error"
    prefix = f"{name}:"
    if out.startswith(prefix):
        try:
            if json.loads(out[len(prefix) :]) == data:
                return "ok"
        except ValueError:
            pass
    return f"{name}({data}) got {out[:60]!r}"


def called(name: str, data: dict[str, Any]) -> str:
    try:
        out: str | AnswerMismatch = Function(name).call(**data)
    except AnswerMismatch as err:
        out = err
    return judged(name, data, out)


async def called_async(name: str, data: dict[str, Any]) -> str:
    try:
        out: str | AnswerMismatch = await Function(name).call_async(**data)
    except AnswerMismatch as err:
        out = err
    return judged(name, data, out)


def wrong(outcomes: list[str]) -> list[str]:
    return [outcome for outcome in outcomes if outcome not in ("ok", "error")]


def test_sequential_calls_get_their_own_answer_or_an_error(stray_host: NodeProcess) -> None:
    outcomes = [called(NAMES[i % len(NAMES)], {"i": i}) for i in range(160)]
    assert wrong(outcomes) == []
    assert outcomes.count("ok") > len(outcomes) / 2


def test_threaded_calls_get_their_own_answer_or_an_error(stray_host: NodeProcess) -> None:
    found: dict[int, list[str]] = {}

    def work(t: int) -> None:
        found[t] = [called(NAMES[(t + i) % len(NAMES)], {"t": t, "i": i}) for i in range(40)]

    run_on_threads(work, 8, timeout=100)
    assert sorted(found) == list(range(8))
    assert [w for t in range(8) for w in wrong(found[t])] == []


def test_asyncio_calls_get_their_own_answer_or_an_error(stray_host: NodeProcess) -> None:
    async def main() -> list[str]:
        outcomes = [await called_async(NAMES[i % len(NAMES)], {"i": i}) for i in range(80)]
        for round_ in range(4):  # and 16 tasks at once
            calls = [called_async(NAMES[i % len(NAMES)], {"r": round_, "i": i}) for i in range(16)]
            outcomes += await asyncio.gather(*calls)
        return outcomes

    outcomes = asyncio.run(main())
    assert len(outcomes) == 144 and wrong(outcomes) == []


def test_answers_that_carry_their_id_keep_the_connection(stray_host: NodeProcess) -> None:
    assert Function("echo").call(n=0) == 'echo:{"n":0}'
    ports = idle_local_ports()
    for n in range(20):
        assert Function("echo").call(n=n) == f'echo:{{"n":{n}}}'
    assert idle_local_ports() == ports and len(ports) == 1


def test_a_host_that_echoes_no_id_still_works(
    tmp_path: Path, start_host: Callable[..., NodeProcess], client_settings: Callable[..., None]
) -> None:
    # js-host 0.11 sends no X-Request-Id: nothing to check, the connection kept alive.
    port = free_port()
    config = write_stray_config(tmp_path, port)
    start_host(config, "--port", str(port), impl="npm-0.11")
    client_settings(SOURCE_ROOT=str(tmp_path), **bin_setting("npm-0.11"))
    assert Function("echo").call(n=0) == 'echo:{"n":0}'
    ports = idle_local_ports()
    for n in range(30):
        assert Function("echo").call(n=n) == f'echo:{{"n":{n}}}'
    assert idle_local_ports() == ports and len(ports) == 1


# The rule, against a raw-socket server -------------------------------------------


def answer(body: bytes, *fields: bytes) -> bytes:
    head = b"".join(field + b"\r\n" for field in fields)
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), head, body)


@pytest.fixture
def scripted_server() -> Iterator[Callable[..., ScriptedServer]]:
    with closing_servers(ScriptedServer) as make:
        yield make


Result = Union[bytes, AnswerMismatch]


def run_calls(pool: str, server: ScriptedServer, calls: list[tuple[bytes, bytes]]) -> list[Result]:
    """Each (body, request id) of ``calls`` in turn, through one pool of the kind ``pool``
    (so over one kept-alive connection while it stays open): the bodies or errors."""
    target = ("127.0.0.1", server.port, "POST", "/function/f")
    if pool == "blocking":
        blocking, results = Pool(), []
        for body, rid in calls:
            try:
                results.append(blocking.request(*target, body, timeout=10, request_id=rid).body)
            except AnswerMismatch as err:
                results.append(err)
        return results

    async def main() -> list[Result]:
        loops_pool, results = aio_transport.get_pool(), []
        for body, rid in calls:
            try:
                results.append((await loops_pool.request(*target, body, timeout=10, request_id=rid)).body)
            except AnswerMismatch as err:
                results.append(err)
        return results

    return asyncio.run(main())


POOLS = ["asyncio", "blocking"]


@pytest.mark.parametrize("pool", POOLS)
def test_an_answer_with_another_id_closes_the_connection(scripted_server, pool) -> None:
    server = scripted_server(
        [
            lambda body: answer(body, b"X-Request-Id: a"),
            lambda body: answer(b"the answer to a", b"x-request-id: a"),  # any case
        ]
    )
    first, second, third = run_calls(pool, server, [(b"first", b"a"), (b"second", b"b"), (b"third", b"c")])
    assert (first, third) == (b"first", b"third")  # the third on a new connection
    assert isinstance(second, AnswerMismatch)
    message = str(second)
    assert f"{server.url}/function/f" in message and "'a'" in message and "'b' was sent" in message
    assert server.connections == 2 and server.requests == [(0, b"first"), (0, b"second"), (1, b"third")]


@pytest.mark.parametrize("pool", POOLS)
def test_no_id_where_the_connection_carried_one_closes_it(scripted_server, pool) -> None:
    server = scripted_server([lambda body: answer(body, b"X-Request-Id: a"), lambda body: answer(b"stray")])
    first, second, third = run_calls(pool, server, [(b"first", b"a"), (b"second", b"b"), (b"third", b"c")])
    assert (first, third) == (b"first", b"third")
    assert isinstance(second, AnswerMismatch) and "carries no X-Request-Id" in str(second)
    assert server.connections == 2


@pytest.mark.parametrize("pool", POOLS)
def test_no_id_on_a_connection_that_never_carried_one_is_taken(scripted_server, pool) -> None:
    server = scripted_server([lambda body: answer(body)] * 3)
    results = run_calls(pool, server, [(b"%d" % i, b"id-%d" % i) for i in range(3)])
    assert results == [b"0", b"1", b"2"] and server.connections == 1


@pytest.mark.parametrize("pool", POOLS)
def test_a_refusal_without_an_id_is_an_answer(scripted_server, pool) -> None:
    # A server in front refusing before it routed the request (the proxy's worker over its
    # budget): a 503 that ends the connection is the caller's to read, whatever its id.
    refusal = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy"
    server = scripted_server([lambda body: answer(body, b"X-Request-Id: a"), lambda body: refusal])
    assert run_calls(pool, server, [(b"first", b"a"), (b"second", b"b")]) == [b"first", b"busy"]
