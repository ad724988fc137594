"""Bad input, fuzzed with hypothesis, sent to a real host and to the proxy in front
of it: the answer is always a clear error (4xx/5xx with a message) or the right
answer, never a hang (pytest-timeout), never a dead host (it still answers
/status), never a poisoned cache entry (a good request for the same key still
gets the right answer)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from js_host.exceptions import JSHostError
from js_host.function import Function
from js_host.host import JSHost
from js_host_proxy.app import ProxyApp
from js_host_proxy.config import ProxyConfig
from tests.support.processes import BUNDLED_BIN, IMPLEMENTATIONS, NodeProcess
from tests.support.proxy import CONFIGS, body_of, call_path
from tests.support.raw_http import alive, request

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
LIMIT = 2048  # the host's requestDataLimit and the proxy's max_body in this module
KNOWN = {"echo", "counter", "short", "long", "slow", "fail", "calls"}

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """The proxy tests' counting upstream, with a small requestDataLimit."""
    if not BUNDLED_BIN.exists():
        pytest.skip("the project's host does not exist yet")
    folder = tmp_path_factory.mktemp("fuzz-host")
    config = folder / "fuzz.config.js"
    # The upstream config itself (it requires modules beside it), with a smaller limit.
    upstream = json.dumps(str(CONFIGS["bundled"]))
    config.write_text(f"module.exports = {{...require({upstream}), requestDataLimit: {LIMIT}}};\n")
    process = NodeProcess(IMPLEMENTATIONS["bundled"], config, "--port", "0", logdir=folder).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def proxy(host: NodeProcess) -> Iterator[Client]:
    app = ProxyApp(replace(ProxyConfig(), upstreams=(host.url,), cache_url="memory://", max_body=LIMIT))
    yield Client(app)
    app.close()


def post_proxy(client: Client, path: str, body: bytes) -> Any:
    return client.post(path, data=body, content_type="application/json")


def assert_clear_error(status: int, text: str) -> None:
    assert 400 <= status < 600, status
    assert text.strip(), f"{status} without a message"


def assert_healthy(host: NodeProcess, proxy: Client) -> None:
    """The host answers /status, and a good call through the proxy gets the right answer."""
    assert alive(host.url), f"the host died:\n{host.log[-3000:]}"
    data = {"health": "check"}
    reply = post_proxy(proxy, *call_path("echo", data))
    assert reply.status_code == 200 and json.loads(reply.get_data()) == {"echo": data}


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values read by JavaScript: every number is a double."""
    return _numbers_as_floats(a) == _numbers_as_floats(b)


def _numbers_as_floats(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return [_numbers_as_floats(v) for v in value]
    return {k: _numbers_as_floats(v) for k, v in value.items()}


# -- strategies ---------------------------------------------------------------------------------


def _nested(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)  # exact in a JS number
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    _nested,
    max_leaves=25,
)
kwargs = st.dictionaries(st.text(max_size=12), json_values, max_size=6)

odd_names = st.one_of(
    st.sampled_from(
        [
            "__proto__",
            "constructor",
            "toString",
            "hasOwnProperty",
            "prototype",
            "..",
            ".",
            "../status",
            "echo/",
            "/echo",
            "echo/../echo",
            "./echo",
            "echo.",
            "echo%",
            "%",
            "%zz",
            "%00",
            "echo%00",
            "e\u0301cho",
            "\u00e9cho",
            "\U0001f600",
            "\u202eohce",
            "ECHO",
            " echo",
            "echo ",
            "echo?x",
            "echo#x",
            "a" * 5000,
            "",
        ]
    ),
    st.text(min_size=0, max_size=40),
)


# -- random JSON --------------------------------------------------------------------------------


@FUZZ
@given(data=kwargs)
def test_random_kwargs_round_trip_through_function_call(host: NodeProcess, proxy: Client, data: dict) -> None:
    echo = Function("echo", host=JSHost(str(CONFIGS["bundled"]), url_override=host.url), timeout=20)
    body = body_of(data)
    if len(body) > LIMIT:
        with pytest.raises(JSHostError):
            echo.call(**data)
    else:
        assert same_json(json.loads(echo.call(**data)), {"echo": data})
    reply = post_proxy(proxy, *call_path("echo", data))
    if len(body) > LIMIT:
        assert reply.status_code == 413
    else:
        assert reply.status_code == 200 and same_json(json.loads(reply.get_data()), {"echo": data})


@pytest.mark.parametrize("depth", [10, 1000, 100_000, 1_000_000])
@pytest.mark.parametrize("kind", ["[", '{"a":'])
def test_deep_nesting_is_an_error_or_an_answer(
    host: NodeProcess, proxy: Client, depth: int, kind: str
) -> None:
    close = "]" if kind == "[" else "}"
    body = b'{"deep":' + (kind * depth).encode() + b"0" + (close * depth).encode() + b"}"
    path = f"/function/echo?hash={hashlib.sha1(body).hexdigest()}"
    answer = request(host.url, "POST", path, body, timeout=60)
    if answer.status != 200:
        assert_clear_error(answer.status, answer.text)
    if len(body) > LIMIT:
        assert answer.status == 413
    reply = post_proxy(proxy, path, body)
    assert reply.status_code == answer.status
    assert_healthy(host, proxy)


# -- bodies -------------------------------------------------------------------------------------

bodies = st.one_of(
    st.binary(max_size=300),
    # Valid JSON around an invalid UTF-8 sequence.
    st.tuples(
        st.text(max_size=10),
        st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x00"]),
    ).map(lambda t: b'{"k": "' + t[0].encode() + t[1] + b'"}'),
    st.sampled_from(
        [b"", b"null", b"[]", b"1", b'"s"', b"{", b"{}", b"{}{}", b"\xef\xbb\xbf{}", b'{"a":1,}']
    ),
)


@FUZZ
@given(body=bodies)
def test_bad_bodies_get_a_clear_error_and_poison_nothing(
    host: NodeProcess, proxy: Client, body: bytes
) -> None:
    path = f"/function/echo?hash={hashlib.sha1(body).hexdigest()}"
    answer = request(host.url, "POST", path, body)
    if answer.status != 200:
        assert_clear_error(answer.status, answer.text)
        assert answer.status < 500, answer  # bad input is the client's error
    reply = post_proxy(proxy, path, body)
    assert reply.status_code == answer.status
    if reply.status_code != 200:
        assert_clear_error(reply.status_code, reply.get_data(as_text=True))
        # Nothing stored for the key: asking again reaches the host again.
        assert post_proxy(proxy, path, body).headers.get("X-Cache") != "HIT"
    assert_healthy(host, proxy)


@pytest.mark.parametrize("where", ["host", "proxy"])
def test_bodies_at_and_over_the_size_limit(host: NodeProcess, proxy: Client, where: str) -> None:
    def body_of_size(size: int) -> bytes:
        body = b'{"pad": "' + b"x" * (size - 11) + b'"}'
        assert len(body) == size
        return body

    for size, expected in (
        (LIMIT - 1, 200),
        (LIMIT, 200),
        (LIMIT + 1, 413),
        (10 * LIMIT, 413),
        (5_000_000, 413),
    ):
        body = body_of_size(size)
        path = f"/function/echo?hash={hashlib.sha1(body).hexdigest()}"
        if where == "host":
            answer = request(host.url, "POST", path, body, timeout=60)
            status, text = answer.status, answer.text
        else:
            reply = post_proxy(proxy, path, body)
            status, text = reply.status_code, reply.get_data(as_text=True)
        assert status == expected, (size, status, text[:200])
        if status == 200:
            assert json.loads(text) == {"echo": json.loads(body)}
        else:
            assert_clear_error(status, text)
    assert_healthy(host, proxy)


# -- function names -----------------------------------------------------------------------------


@FUZZ
@given(name=odd_names, safe=st.sampled_from(["", "/", "/.%"]))
def test_odd_function_names_are_unknown_never_a_crash(
    host: NodeProcess, proxy: Client, name: str, safe: str
) -> None:
    data = {"name": "odd"}
    body = body_of(data)
    encoded = quote(name, safe=safe)
    path = f"/function/{encoded}?hash={hashlib.sha1(body).hexdigest()}"
    try:
        meant = unquote(encoded, errors="strict")
    except UnicodeDecodeError:
        meant = None
    answer = request(host.url, "POST", path, body)
    if meant in KNOWN:
        assert answer.status in (200, 500)  # `fail` fails on purpose
    else:
        assert_clear_error(answer.status, answer.text)
        assert answer.status in (400, 404), answer
    reply = post_proxy(proxy, path, body)
    if meant not in KNOWN:
        assert_clear_error(reply.status_code, reply.get_data(as_text=True))
    # The Python client refuses names the host does not list, before any request.
    if meant not in KNOWN and name:
        with pytest.raises(JSHostError):
            Function(name, host=JSHost(str(CONFIGS["bundled"]), url_override=host.url)).call(**data)
    # The good name with the same body (same hash) is untouched.
    good = post_proxy(proxy, *call_path("echo", data))
    assert good.status_code == 200 and json.loads(good.get_data()) == {"echo": data}
    assert_healthy(host, proxy)


# -- hashes -------------------------------------------------------------------------------------


@FUZZ
@given(
    data=kwargs,
    query=st.one_of(
        st.none(),
        st.text(alphabet="0123456789abcdefABCDEF", min_size=0, max_size=41).map(lambda h: f"hash={h}"),
        st.sampled_from(["hash", "hash=", "hash=%ZZ", "&&&", "hash=a&hash=b", "x=1", "hash[]=1", "=="]),
        st.text(max_size=20).map(lambda t: "hash=" + quote(t)),
    ),
)
def test_wrong_and_missing_hashes(host: NodeProcess, proxy: Client, data: dict, query: str | None) -> None:
    body = body_of(data)
    if len(body) > LIMIT:
        return
    digest = hashlib.sha1(body).hexdigest()
    path = "/function/echo" + ("" if query is None else "?" + query)
    # The host ignores the hash: the right answer whatever the query.
    answer = request(host.url, "POST", path, body)
    assert answer.status == 200 and same_json(json.loads(answer.body), {"echo": data})
    reply = post_proxy(proxy, path, body)
    given_hashes = [] if query is None else [v for k, v in _params(query) if k == "hash"]
    if reply.status_code == 200:
        assert same_json(json.loads(reply.get_data()), {"echo": data})
        if given_hashes and given_hashes[0]:
            assert given_hashes[0].lower() == digest, (query, reply.headers)
    else:
        assert reply.status_code == 400, (query, reply.status_code)
        assert_clear_error(reply.status_code, reply.get_data(as_text=True))
    # The right key gets the right answer, whatever came before it.
    good = post_proxy(proxy, *call_path("echo", data))
    assert good.status_code == 200 and same_json(json.loads(good.get_data()), {"echo": data})


def _params(query: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(query, keep_blank_values=True)


def test_upper_case_hash_is_the_same_key(host: NodeProcess, proxy: Client) -> None:
    data = {"case": "upper"}
    body = body_of(data)
    upper = f"/function/echo?hash={hashlib.sha1(body).hexdigest().upper()}"
    first = post_proxy(proxy, upper, body)
    assert first.status_code == 200 and json.loads(first.get_data()) == {"echo": data}
    assert post_proxy(proxy, *call_path("echo", data)).headers["X-Cache"] == "HIT"


def test_module_host_is_the_fuzz_config(host: NodeProcess) -> None:
    assert Path(host.cmd[2]).name == "fuzz.config.js"
