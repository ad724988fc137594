"""Function.call over real hosts (both implementations) and over a recording
server: the wire format, results, errors, timeouts, unknown functions and
unencodable data."""

from __future__ import annotations

import hashlib
import json

import pytest

import js_host
from js_host import verbosity
from js_host.conf import settings
from js_host.exceptions import (
    ConfigError,
    ConnectionError,  # noqa: A004 - the spec's name
    FunctionError,
    FunctionTimeout,
    JSHostError,
)
from js_host.function import Function, encode_request, serialize
from js_host.host import JSHost
from tests.support.client import bin_setting, without_logging_config, write_config
from tests.support.processes import NPM_BIN

VECTOR = "bc4919c6adf7168088eaea06e27a5b23f0f9f9da"


def test_hash_vector() -> None:
    assert serialize({"foo": "bar"}) == json.dumps({"foo": "bar"}, sort_keys=True)
    assert encode_request({"foo": "bar"}) == (b'{"foo": "bar"}', VECTOR)


def test_the_request_on_the_wire(tmp_path, recording_server, client_settings) -> None:
    server = recording_server()
    write_config(tmp_path, port=9)
    client_settings(SOURCE_ROOT=str(tmp_path), BIN_PATH=str(NPM_BIN), URL_OVERRIDE=server.url)
    assert Function("hello_world").call(foo="bar") == 'ok:{"foo": "bar"}'
    (request,) = server.function_requests()
    assert request["method"] == "POST"
    assert request["target"] == f"/function/hello_world?hash={VECTOR}"
    assert request["headers"]["content-type"] == "application/json"
    assert request["headers"]["host"] == f"127.0.0.1:{server.port}"
    assert request["body"] == b'{"foo": "bar"}'
    # Key order does not change the body or the hash.
    Function("hello_world").call(b=1, a={"y": 2, "x": 1})
    assert server.function_requests()[-1]["body"] == b'{"a": {"x": 1, "y": 2}, "b": 1}'


def test_calls(configured) -> None:
    assert Function("hello_world").call() == "Hello, World!"
    assert Function("hello_world").call(name="Foo") == "Hello, Foo!"
    result = Function("double").call(number=20)
    assert result == "40" and isinstance(result, str)
    assert Function("echo").call(text="h\u00e9llo \u2603") == "h\u00e9llo \u2603"
    big = "x" * 200_000
    assert Function("echo").call(text=big) == big


def test_function_error_carries_the_js_message_and_stack(configured) -> None:
    with pytest.raises(FunctionError) as info:
        Function("double").call()
    err = info.value
    assert err.js_message == "No number was provided"
    assert err.js_stack.startswith("Error: No number was provided")
    assert "host.config.js" in err.js_stack  # a real stack
    assert "'double'" in str(err) and "No number was provided" in str(err)
    # The connection is still usable.
    assert Function("double").call(number=1) == "2"


def test_timeout_per_function_and_from_settings(
    configured, host_config, impl, client_settings, request: pytest.FixtureRequest
) -> None:
    if impl == "pool":
        # Each worker runs one call at a time, and a call the client gave up on keeps its
        # worker until it ends: the two 3-second sleeps below hold both, and the last call waits.
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="a pooled host goes on running a call whose client has gone, holding its worker",
            )
        )
    with pytest.raises(FunctionTimeout) as info:
        Function("sleep", timeout=0.2).call(ms=3000)
    assert "'sleep'" in str(info.value) and "0.2" in str(info.value)
    assert Function("sleep").call(ms=1) == "slept"
    client_settings(SOURCE_ROOT=str(host_config.parent), FUNCTION_TIMEOUT=0.2, **bin_setting(impl))
    with pytest.raises(FunctionTimeout):
        Function("sleep").call(ms=3000)
    assert Function("hello_world").call() == "Hello, World!"


def test_host_side_504_is_a_timeout(tmp_path, recording_server, client_settings) -> None:
    server = recording_server(status_code=504)
    write_config(tmp_path, port=9)
    client_settings(SOURCE_ROOT=str(tmp_path), BIN_PATH=str(NPM_BIN), URL_OVERRIDE=server.url)
    with pytest.raises(FunctionTimeout):
        Function("hello_world").call()


def test_bundled_host_function_timeout(impl, tmp_path, start_host, client_settings) -> None:
    if impl == "npm-0.11":
        pytest.skip("functionTimeout is the project's host's addition")
    from tests.support.processes import free_port

    port = free_port()
    config = write_config(tmp_path, port=port, functionTimeout=200)
    start_host(config, "--port", str(port), impl=impl)
    client_settings(SOURCE_ROOT=str(tmp_path))
    with pytest.raises(FunctionTimeout) as info:
        Function("sleep").call(ms=3000)
    assert "sleep" in str(info.value)


def test_unknown_function_fails_before_any_request(tmp_path, recording_server, client_settings) -> None:
    server = recording_server(["hello_world"])
    write_config(tmp_path, port=9)
    client_settings(SOURCE_ROOT=str(tmp_path), BIN_PATH=str(NPM_BIN), URL_OVERRIDE=server.url)
    with pytest.raises(ConfigError) as info:
        Function("nope").call()
    assert "'nope'" in str(info.value) and "hello_world" in str(info.value)
    assert server.function_requests() == []


def test_unknown_function_on_a_real_host(configured) -> None:
    with pytest.raises(ConfigError):
        Function("toString").call()


def test_unencodable_data_names_the_argument(configured) -> None:
    with pytest.raises(TypeError) as info:
        Function("echo").call(text="a", when=object())
    assert "'when'" in str(info.value) and "'echo'" in str(info.value)
    with pytest.raises(TypeError) as info:
        Function("echo").call(number=float("nan"))
    assert "'number'" in str(info.value)


@pytest.mark.parametrize("name", ["", None, 3])
def test_function_names_must_be_strings(name) -> None:
    with pytest.raises(ConfigError):
        Function(name)


def test_a_function_without_a_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        Function()
    assert "needs a name" in str(info.value)


def test_no_host_running(tmp_path, client_settings) -> None:
    from tests.support.processes import free_port

    write_config(tmp_path, port=free_port())
    with pytest.raises(ConnectionError) as info:
        client_settings(SOURCE_ROOT=str(tmp_path), BIN_PATH=str(NPM_BIN))
    assert "Cannot connect" in str(info.value) and "host.config.js" in str(info.value)
    assert isinstance(info.value, JSHostError)


def test_another_program_on_the_hosts_port_is_named_not_advised_to_start_there(
    tmp_path, client_settings
) -> None:
    import http.server
    import threading

    # Some other web server on the config's port: starting the host there would fail (EADDRINUSE).
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        write_config(tmp_path, port=port)
        with pytest.raises(ConnectionError) as info:
            client_settings(SOURCE_ROOT=str(tmp_path), BIN_PATH=str(NPM_BIN))
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    message = str(info.value)
    assert f"Something else holds http://127.0.0.1:{port}" in message, message
    assert "answered 501" in message and f"sport = :{port}" in message and "host.config.js" in message
    assert "Start it with" not in message


def test_a_function_on_an_explicit_host(configured, host_config, impl) -> None:
    host = JSHost(str(host_config), bin_path=bin_setting(impl).get("BIN_PATH"))
    assert not host.has_connected
    assert Function("hello_world", host=host).call(name="H") == "Hello, H!"
    assert host.has_connected


def test_host_introspection(configured, host_config, impl) -> None:
    from js_host.host import host

    url = configured.url
    assert host.get_url() == url
    assert host.get_path_to_config_file() == str(host_config)
    assert host.path_to_node.endswith("node")
    assert host.is_running()
    status = host.request_status()
    # Both announce the js-host protocol 0.11; ours also says which release it is.
    assert status["type"] == "Host" and status["version"] == "0.11.7"
    assert status.get("packageVersion", js_host.__version__) == js_host.__version__
    assert "double" in host.get_status()["config"]["functions"]
    with pytest.raises(ConfigError):
        host.start()


def test_function_call_verbosity(configured, host_config, impl, client_settings, capsys) -> None:
    with without_logging_config():
        client_settings(
            SOURCE_ROOT=str(host_config.parent), VERBOSITY=verbosity.FUNCTION_CALL, **bin_setting(impl)
        )
        Function("hello_world").call(name="V")
        assert "Calling function 'hello_world'" in capsys.readouterr().err
        assert settings.VERBOSITY == verbosity.FUNCTION_CALL
        # The data is shown up to 1000 characters, also for a body sent in parts.
        big = "y" * 5000
        assert Function("echo").call(text=big) == big
        (line,) = [x for x in capsys.readouterr().err.splitlines() if "Calling function 'echo'" in x]
        assert line.endswith(' with data {"text": "' + "y" * (1000 - len('{"text": "')))


@pytest.mark.parametrize("timeout", ["5", 0, -1, True, float("nan"), [5]])
def test_function_timeout_must_be_a_positive_number(timeout) -> None:
    with pytest.raises(ConfigError) as info:
        Function("f", timeout=timeout)
    assert repr(timeout) in str(info.value) and "'f'" in str(info.value)


def test_encode_request_matches_json_dumps(monkeypatch) -> None:
    from hypothesis import given
    from hypothesis import settings as hsettings
    from hypothesis import strategies as st

    from js_host import wire

    monkeypatch.setattr(wire, "LARGE_STRING", 0)  # every string takes the fast path

    values = st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.text()
        | st.floats(allow_nan=False, allow_infinity=False),
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children, max_size=3),
        max_leaves=8,
    )

    @hsettings(max_examples=300, deadline=None)
    @given(st.dictionaries(st.text(min_size=1), values | st.text(alphabet=st.characters(max_codepoint=127))))
    def check(data):
        expected = json.dumps(data, sort_keys=True).encode()
        assert encoded(data) == (expected, hashlib.sha1(expected).hexdigest())

    def encoded(data):
        body, digest = wire.encode_request(data)
        return (body if isinstance(body, bytes) else b"".join(body)), digest

    check()
    big = {"text": "x" * 200_000, "a": 1}
    monkeypatch.undo()
    body, _ = wire.encode_request(big)
    assert isinstance(body, list)  # the large string is a buffer of its own
    expected = json.dumps(big, sort_keys=True).encode()
    assert encoded(big) == (expected, hashlib.sha1(expected).hexdigest())


# Production through the caching proxy (URL_OVERRIDE)


@pytest.fixture
def proxy_in_front(impl, running_host):
    """The real js_host_proxy (werkzeug server, memory cache, 1 s upstream timeout) in front of
    ``running_host``; yields (proxy URL, the host's NodeProcess)."""
    import threading
    from dataclasses import replace

    from werkzeug.serving import make_server

    from js_host_proxy.app import ProxyApp
    from js_host_proxy.config import ProxyConfig

    app = ProxyApp(
        replace(
            ProxyConfig(),
            upstreams=(running_host.url,),
            cache_url="memory://",
            upstream_timeout=1.0,
            retry_down_after=0.0,
        )
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", running_host
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
        app.close()


def test_url_override_needs_neither_node_nor_the_config_file(
    tmp_path, proxy_in_front, client_settings, monkeypatch
) -> None:
    from js_host import config_status

    def no_node(*args, **kwargs):
        raise AssertionError(f"node was run: {args}")

    monkeypatch.setattr(config_status, "_run_config", no_node)
    url, _ = proxy_in_front
    empty = tmp_path / "app"  # no config file, no node_modules
    empty.mkdir()
    client_settings(
        SOURCE_ROOT=str(empty),
        URL_OVERRIDE=url,
        PATH_TO_NODE="/nonexistent/node",
        BIN_PATH="node_modules/nope/js-host.js",
        CONFIG_FILE="missing.config.js",
    )
    from js_host.host import host

    assert host.has_connected  # CONNECT_ONCE_CONFIGURED, through GET <URL_OVERRIDE>/status
    assert host.get_url() == url
    status_data = host.get_status()
    assert status_data["type"] == "Host"
    assert {"echo", "sleep"} <= set(host.get_config()["functions"])
    assert host.config_file == str(empty / "missing.config.js")
    assert Function("echo").call(text="via the proxy") == "via the proxy"
    # Without URL_OVERRIDE the same settings are still refused.
    with pytest.raises(ConfigError) as info:
        client_settings(
            SOURCE_ROOT=str(empty), PATH_TO_NODE="/nonexistent/node", CONNECT_ONCE_CONFIGURED=False
        )
    assert "'/nonexistent/node'" in str(info.value)


def test_proxy_504_is_a_timeout_and_502_a_connection_error(
    proxy_in_front, host_config, client_settings
) -> None:
    url, node = proxy_in_front
    client_settings(SOURCE_ROOT=str(host_config.parent), URL_OVERRIDE=url)
    # The proxy gives up after 1 s (the Function would wait 10 s): 504.
    with pytest.raises(FunctionTimeout) as info:
        Function("sleep").call(ms=3000)
    assert url in str(info.value) and "504" in str(info.value)

    node.stop()
    # The host is down behind the proxy: 502, with the proxy's message.
    with pytest.raises(ConnectionError) as info:
        Function("echo").call(text="host down")
    message = str(info.value)
    assert url in message and "502" in message and node.url in message, message
    # Connecting names the URL and what the proxy said, too.
    from js_host.host import JSHost

    with pytest.raises(ConnectionError) as info:
        JSHost(url_override=url).connect()
    assert url in str(info.value) and "502" in str(info.value)


def test_gateway_errors_without_url_override_stay_unexpected(tmp_path, recording_server) -> None:
    # Only URL_OVERRIDE points at a proxy; a host itself never answers 502.
    from js_host.exceptions import UnexpectedResponse

    server = recording_server(status_code=502)
    host = JSHost(str(write_config(tmp_path, port=server.port)), bin_path=str(NPM_BIN))
    with pytest.raises(UnexpectedResponse):
        Function("echo", host=host).call(text="x")


def test_a_hosts_own_503_is_a_connection_error(tmp_path, recording_server) -> None:
    # A pooled host whose workers are all busy and whose queue is full answers 503.
    server = recording_server(status_code=503)
    host = JSHost(str(write_config(tmp_path, port=server.port)), bin_path=str(NPM_BIN))
    with pytest.raises(ConnectionError) as info:
        Function("echo", host=host).call(text="x")
    assert "'echo'" in str(info.value) and "503" in str(info.value) and server.url in str(info.value)
    assert Function("echo", host=host, fallback="later").call(text="x") == "later"


# IPv6


def test_format_url_brackets_ipv6_addresses() -> None:
    from js_host.endpoint import format_url, split_url

    assert format_url("127.0.0.1", 9009) == "http://127.0.0.1:9009"
    assert format_url("::1", 9009) == "http://[::1]:9009"
    assert format_url("[::1]", 9009) == "http://[::1]:9009"
    assert split_url("http://[::1]:9009/prefix/") == ("::1", 9009, "/prefix")
    with pytest.raises(ConfigError):
        settings.configure(URL_OVERRIDE="http://::1:9009", CONNECT_ONCE_CONFIGURED=False)


@pytest.fixture
def ipv6_host(tmp_path, recording_server):
    server = recording_server(address="::1")
    host = JSHost(str(write_config(tmp_path, port=server.port, address="::1")), bin_path=str(NPM_BIN))
    return host, server


def test_a_host_on_ipv6_loopback(ipv6_host) -> None:
    host, server = ipv6_host
    assert host.get_url() == f"http://[::1]:{server.port}"
    assert Function("hello_world", host=host).call(a=1) == 'ok:{"a": 1}'
    assert host.get_target().address == "::1"
    assert len(server.function_requests()) == 1


def test_the_host_header_brackets_ipv6_addresses(ipv6_host) -> None:
    host, server = ipv6_host
    Function("hello_world", host=host).call()
    assert server.function_requests()[0]["headers"]["host"] == f"[::1]:{server.port}"
