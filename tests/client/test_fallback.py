"""Function(name, fallback=...) against real hosts (both implementations): returned, and logged
at WARNING with the cause, when the host is down or too slow; never for a JavaScript error."""

from __future__ import annotations

import logging

import pytest

from js_host.exceptions import (
    ConfigError,
    ConnectionError,  # noqa: A004 - the spec's name
    FunctionError,
    FunctionTimeout,
    JSHostError,
)
from js_host.function import Function
from js_host.host import JSHost
from tests.support.client import bin_setting, write_config
from tests.support.processes import free_port


def test_fallback_when_the_host_is_down(tmp_path, impl, caplog) -> None:
    host = JSHost(str(write_config(tmp_path, port=free_port())), **bin_kwargs(impl))
    with pytest.raises(ConnectionError):
        Function("hello_world", host=host).call()

    seen: list[JSHostError] = []

    def client_side(err: JSHostError) -> str:
        seen.append(err)
        return '<div id="root"></div>'

    with caplog.at_level(logging.WARNING, logger="js_host.function"):
        assert Function("hello_world", host=host, fallback="").call() == ""
        assert Function("hello_world", host=host, fallback=client_side).call() == '<div id="root"></div>'
    assert [type(err) for err in seen] == [ConnectionError]
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 2, caplog.text
    assert "'hello_world'" in warnings[0].getMessage() and "fallback" in warnings[0].getMessage()
    assert "Cannot connect" in warnings[0].getMessage(), warnings[0].getMessage()  # the cause


def test_fallback_on_timeout_but_never_for_a_javascript_error(configured, caplog) -> None:
    slow = Function("sleep", timeout=0.2, fallback=lambda err: f"late ({type(err).__name__})")
    with caplog.at_level(logging.WARNING, logger="js_host.function"):
        assert slow.call(ms=3000) == "late (FunctionTimeout)"
    assert "did not answer within 0.2 s" in caplog.text
    # The host still answers, and the fallback is not used when it does.
    assert slow.call(ms=1) == "slept"
    assert Function("hello_world", fallback="x").call(name="F") == "Hello, F!"

    # A JavaScript error is a bug to see.
    with pytest.raises(FunctionError) as info:
        Function("double", fallback="x").call()
    assert "No number was provided" in str(info.value)
    # So is a function the host does not have.
    with pytest.raises(ConfigError):
        Function("no_such_function", fallback="x").call()


def test_without_a_fallback_the_errors_are_raised(configured) -> None:
    with pytest.raises(FunctionTimeout):
        Function("sleep", timeout=0.2).call(ms=3000)


@pytest.mark.parametrize("fallback", [1, b"bytes", ["a"]])
def test_a_fallback_is_a_string_or_a_callable(fallback) -> None:
    with pytest.raises(ConfigError) as info:
        Function("f", fallback=fallback)
    assert repr(fallback) in str(info.value) and "fallback must be a string or a callable" in str(info.value)


def bin_kwargs(impl: str) -> dict[str, str]:
    setting = bin_setting(impl)
    return {"bin_path": setting["BIN_PATH"]} if "BIN_PATH" in setting else {}
