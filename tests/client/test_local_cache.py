"""The local cache (LOCAL_CACHE_SIZE): answers kept in the Python process, keyed on the
function, the host's code version and the body's hash; their freshness (max-age, Age,
Expires, LOCAL_CACHE_MAX_AGE), what is never kept (no-store, no-cache, Vary, errors),
the byte bound, threads and fork()."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from js_host.function import Function
from js_host.host import JSHost, get_default_host
from js_host.local_cache import ENTRY_OVERHEAD, LocalCache
from js_host.response import Response
from tests.support.client import bin_setting
from tests.support.forked import run_in_fork
from tests.support.processes import NodeProcess, free_port
from tests.support.sockets import read_request
from tests.support.threaded_server import ThreadedServer, closing_servers
from tests.support.threads import run_on_threads

# Every function answers "<lib>:<calls so far>:<data>"; `calls` says how many calls of
# the others reached the host (it is no-store, so never kept).
CONFIG = """
const lib = require('./lib.js');
let calls = 0;
function answer(data, cb) { calls += 1; cb(null, lib.name + ':' + calls + ':' + JSON.stringify(data)); }
module.exports = {
  port: %d,
  cacheControl: { fresh: 'max-age=600', other: 'max-age=600', private: 'private, max-age=600',
                  nostore: 'no-store', nocache: 'no-cache', calls: 'no-store' },
  functions: {
    fresh: answer, other: answer, private: answer, nostore: answer, nocache: answer, plain: answer,
    echo: function(data, cb) { cb(null, data.text); },
    fail: function(data, cb) { cb(new Error('failed on purpose')); },
    calls: function(data, cb) { cb(null, String(calls)); },
  },
};
"""


@pytest.fixture
def impl() -> str:
    """The bundled host: js-host 0.11 sends neither Cache-Control nor a code version (one
    test below runs against it too)."""
    return "bundled"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project whose config requires lib.js (name "v1"), on a free port."""
    (tmp_path / "host.config.js").write_text(CONFIG % free_port())
    (tmp_path / "lib.js").write_text("module.exports = { name: 'v1' };\n")
    return tmp_path


def port_of(project: Path) -> int:
    return int((project / "host.config.js").read_text().split("port: ")[1].split(",")[0])


@pytest.fixture
def project_host(
    project: Path, start_host: Callable[..., NodeProcess], impl: str, client_settings
) -> Callable[..., NodeProcess]:
    """Starts the project's host (of ``impl``) and configures the client for it with
    ``settings``; returns the host."""

    def start(**settings: object) -> NodeProcess:
        host = start_host(project / "host.config.js", "--port", str(port_of(project)), impl=impl)
        client_settings(SOURCE_ROOT=str(project), **bin_setting(impl), **settings)
        return host

    return start


def host_calls() -> int:
    return int(Function("calls").call())


def test_off_by_default(project_host) -> None:
    project_host()
    assert get_default_host().local_cache is None
    assert Function("fresh").call(n=1) == 'v1:1:{"n":1}'
    assert Function("fresh").call(n=1) == 'v1:2:{"n":1}'


def test_a_kept_answer_is_returned_without_a_request(project_host) -> None:
    project_host(LOCAL_CACHE_SIZE=1 << 20)
    assert Function("fresh").call(n=1) == 'v1:1:{"n":1}'
    for _ in range(5):
        assert Function("fresh").call(n=1) == 'v1:1:{"n":1}'
    assert host_calls() == 1
    # Another body, another function with the same body: their own answers.
    assert Function("fresh").call(n=2) == 'v1:2:{"n":2}'
    assert Function("other").call(n=1) == 'v1:3:{"n":1}'
    assert Function("other").call(n=1) == 'v1:3:{"n":1}'
    # A private cache may keep a `private` answer; it is keyed like the others.
    assert Function("private").call(n=1) == 'v1:4:{"n":1}'
    assert Function("private").call(n=1) == 'v1:4:{"n":1}'
    assert host_calls() == 4


@pytest.mark.parametrize("impl", ["bundled", "npm-0.11"])
def test_an_answer_without_freshness_is_kept(project_host) -> None:
    project_host(LOCAL_CACHE_SIZE=1 << 20)
    assert Function("plain").call(n=1) == 'v1:1:{"n":1}'
    assert Function("plain").call(n=1) == 'v1:1:{"n":1}'
    assert Function("plain").call(n=2) == 'v1:2:{"n":2}'


@pytest.mark.parametrize("name", ["nostore", "nocache"])
def test_no_store_and_no_cache_are_never_kept(project_host, name: str) -> None:
    project_host(LOCAL_CACHE_SIZE=1 << 20)
    answers = [Function(name).call(n=1) for _ in range(3)]
    assert answers == ['v1:1:{"n":1}', 'v1:2:{"n":1}', 'v1:3:{"n":1}']
    assert len(get_default_host().local_cache) == 0


def test_errors_are_never_kept(project_host) -> None:
    from js_host.exceptions import FunctionError

    project_host(LOCAL_CACHE_SIZE=1 << 20)
    for _ in range(2):
        with pytest.raises(FunctionError, match="failed on purpose"):
            Function("fail").call(n=1)
    assert len(get_default_host().local_cache) == 0


def test_new_code_invalidates_the_old_codes_answers(project: Path, project_host, start_host) -> None:
    host = project_host(LOCAL_CACHE_SIZE=1 << 20)
    assert Function("fresh").call(n=1) == 'v1:1:{"n":1}'
    old_version = get_default_host().local_cache.version
    assert old_version and len(old_version) == 16
    # A deploy: the required file changes and the host restarts on the same port.
    host.stop()
    (project / "lib.js").write_text("module.exports = { name: 'v2' };\n")
    start_host(project / "host.config.js", "--port", str(port_of(project)))
    # The trade of a local cache: until the host reports the new version, the kept
    # answer is returned (for at most its max-age, and LOCAL_CACHE_MAX_AGE).
    assert Function("fresh").call(n=1) == 'v1:1:{"n":1}'
    # Any answer of the new code carries its version: the old code's answers are gone.
    assert Function("fresh").call(n=2) == 'v2:1:{"n":2}'
    assert get_default_host().local_cache.version not in (None, old_version)
    assert Function("fresh").call(n=1) == 'v2:2:{"n":1}'
    assert Function("fresh").call(n=1) == 'v2:2:{"n":1}'


def test_an_answer_without_freshness_is_kept_local_cache_max_age(project_host) -> None:
    project_host(LOCAL_CACHE_SIZE=1 << 20, LOCAL_CACHE_MAX_AGE=2)
    assert Function("plain").call(n=1) == 'v1:1:{"n":1}'
    assert Function("plain").call(n=1) == 'v1:1:{"n":1}'
    # max-age=600, bounded by LOCAL_CACHE_MAX_AGE=2 all the same.
    assert Function("fresh").call(n=1) == 'v1:2:{"n":1}'
    time.sleep(2.1)
    assert Function("plain").call(n=1) == 'v1:3:{"n":1}'
    assert Function("fresh").call(n=1) == 'v1:4:{"n":1}'


def test_eight_threads(project_host) -> None:
    project_host(LOCAL_CACHE_SIZE=64 << 10)
    cache = get_default_host().local_cache
    errors: list[BaseException] = []
    over: list[int] = []

    def work(n: int) -> None:
        rng = random.Random(n)
        try:
            for i in range(150):
                text = f"{n}-{rng.randrange(40)}-" + "x" * rng.randrange(6000)
                if Function("echo").call(text=text) != text:
                    errors.append(AssertionError(f"thread {n}, call {i}: a wrong answer"))
                if cache.size > cache.max_bytes:
                    over.append(cache.size)
        except BaseException as err:
            errors.append(err)

    run_on_threads(work, 8, timeout=120)
    assert not errors, errors[:3]
    assert not over
    kept = list(cache._entries.values())
    assert kept and cache.size == sum(entry.size for entry in kept) <= cache.max_bytes


def test_a_forked_child_starts_empty_and_keeps_its_own(project_host) -> None:
    project_host(LOCAL_CACHE_SIZE=1 << 20)
    assert Function("fresh").call(n=1) == 'v1:1:{"n":1}'

    def child() -> dict[str, object]:
        cache = get_default_host().local_cache
        report = {"kept": len(cache), "first": Function("fresh").call(n=1)}
        report["again"] = Function("fresh").call(n=1)
        report["kept_after"] = len(cache)
        return report

    report = run_in_fork(child)
    assert report == {"kept": 0, "first": 'v1:2:{"n":1}', "again": 'v1:2:{"n":1}', "kept_after": 1}
    # The parent keeps its own.
    assert Function("fresh").call(n=1) == 'v1:1:{"n":1}'


# Answers with the fields a Node host does not send (Age, Expires, Vary), from a raw server.


class FieldsServer(ThreadedServer):
    """Answers like a host: ``/status`` lists ``fields``' functions; ``/function/<name>``
    answers ``<name>:<calls of it>`` with the header lines ``fields[name]`` and, when
    ``version`` is set, the code version."""

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = fields
        self.version: str | None = None
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()
        super().__init__()

    def handle(self, conn: socket.socket, number: int) -> None:
        buf = b""
        with conn:
            while True:
                try:
                    head, _body, buf = read_request(conn, buf)
                except OSError:
                    return
                target = head.split(b" ", 2)[1].decode()
                extra = f"JS-Host-Code-Version: {self.version}\r\n" if self.version else ""
                if target == "/status":
                    out = json.dumps(
                        {"type": "Host", "version": "t", "config": {"functions": list(self.fields)}}
                    )
                else:
                    name = target.split("/")[2].split("?")[0]
                    with self.lock:
                        self.calls[name] = count = self.calls.get(name, 0) + 1
                    out = f"{name}:{count}"
                    extra += "".join(f"{line}\r\n" for line in self.fields[name].split("\n") if line)
                conn.sendall(f"HTTP/1.1 200 OK\r\n{extra}Content-Length: {len(out)}\r\n\r\n{out}".encode())


@pytest.fixture
def fields_host() -> Callable[..., JSHost]:
    """A JSHost with a local cache of ``size`` bytes in front of a FieldsServer of ``fields``."""

    def make(fields: dict[str, str], size: int = 1 << 20) -> JSHost:
        server = make_server(fields)
        host = JSHost("host.config.js", url_override=server.url)
        host.local_cache = LocalCache(size, 60.0)
        host.server = server  # type: ignore[attr-defined]
        return host

    with closing_servers(FieldsServer) as make_server:
        yield make


def test_max_age_less_age_and_expires(fields_host) -> None:
    now = time.time()
    expires = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now + 600))
    past = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now - 600))
    host = fields_host(
        {
            "aged_out": "Cache-Control: max-age=10\nAge: 10",  # spent its life in another cache
            "aged": "Cache-Control: max-age=3\nAge: 1",
            "expires": f"Expires: {expires}",
            "expired": f"Expires: {past}",
            "bad_date": "Expires: 0",
            "bad_max_age": "Cache-Control: max-age=soon",
            "vary": "Cache-Control: max-age=600\nVary: Accept",
            "split": "Cache-Control: public\nCache-Control: no-store",  # a repeated field counts whole
            "s_maxage": "Cache-Control: s-maxage=600, max-age=0",  # s-maxage is for shared caches
        }
    )

    def twice(name: str) -> list[str]:
        function = Function(name, host=host)
        return [function.call(n=1), function.call(n=1)]

    for name in ("aged_out", "expired", "bad_date", "bad_max_age", "vary", "split", "s_maxage"):
        assert twice(name) == [f"{name}:1", f"{name}:2"], name
    assert twice("expires") == ["expires:1", "expires:1"]
    assert twice("aged") == ["aged:1", "aged:1"]
    time.sleep(2.1)  # max-age 3 less Age 1
    assert Function("aged", host=host).call(n=1) == "aged:2"  # never past its max-age


def test_any_answer_of_a_new_version_drops_the_old_ones(fields_host) -> None:
    host = fields_host({"a": "Cache-Control: max-age=600", "b": "Cache-Control: no-store"})
    host.server.version = "1111111111111111"
    assert Function("a", host=host).call(n=1) == "a:1"
    assert Function("a", host=host).call(n=1) == "a:1"
    host.server.version = "2222222222222222"
    assert Function("b", host=host).call(n=1) == "b:1"  # not kept, but it reports the version
    assert host.local_cache.version == "2222222222222222" and len(host.local_cache) == 0
    assert Function("a", host=host).call(n=1) == "a:2"


def test_the_byte_bound_evicts_the_least_recently_used(fields_host) -> None:
    names = ["f0", "f1", "f2", "f3"]
    entry = len("f0:1") + len("f0") + 40 + ENTRY_OVERHEAD
    host = fields_host({n: "Cache-Control: max-age=600" for n in names}, size=3 * entry)
    for name in names[:3]:
        Function(name, host=host).call(n=1)
    Function("f0", host=host).call(n=1)  # used again: f1 is now the least recently used
    Function("f3", host=host).call(n=1)  # over the bound: f1 goes
    assert host.local_cache.size <= 3 * entry and len(host.local_cache) == 3
    # The kept ones first (a call of f1 would evict the next least recently used).
    answers = [Function(n, host=host).call(n=1) for n in ("f0", "f2", "f3", "f1")]
    assert answers == ["f0:1", "f2:1", "f3:1", "f1:2"]
    # An answer larger than the whole cache is not kept, and evicts nothing.
    cache = host.local_cache
    cache.answered("huge", "0" * 40, Response(200, [], b"x" * cache.max_bytes, True), "x" * cache.max_bytes)
    assert cache.get("huge", "0" * 40) is None and len(cache) == 3


def test_local_hits_across_hosts_are_their_own(fields_host) -> None:
    one = fields_host({"f": "Cache-Control: max-age=600"})
    two = fields_host({"f": "Cache-Control: max-age=600"})
    assert Function("f", host=one).call(n=1) == "f:1"
    assert Function("f", host=two).call(n=1) == "f:1"
    one.server.calls.clear()
    assert Function("f", host=one).call(n=1) == "f:1" and not one.server.calls
