"""Function.call against a host whose config is an ES module (``.mjs``), and a
source-mapped ``FunctionError.js_stack`` that names the original source file of a
bundled function."""

from __future__ import annotations

from typing import Callable

import pytest

from js_host.exceptions import FunctionError
from js_host.function import Function
from js_host.host import JSHost
from tests.support.client import FIXTURES
from tests.support.processes import BUNDLED_BIN, NodeProcess

ESM_CONFIG = FIXTURES / "esm.config.mjs"


@pytest.fixture
def esm_host(start_host: Callable[..., NodeProcess]) -> JSHost:
    process = start_host(ESM_CONFIG)
    return JSHost(str(ESM_CONFIG), url_override=process.url, bin_path=str(BUNDLED_BIN))


def test_function_call_on_an_mjs_config(esm_host: JSHost) -> None:
    assert Function("hello", host=esm_host).call(name="ESM") == "Hello, ESM!"
    assert Function("render_card", host=esm_host).call(title="T") == '<div class="card">T</div>'


def test_js_stack_names_the_original_source_file(esm_host: JSHost) -> None:
    with pytest.raises(FunctionError) as info:
        Function("render_card", host=esm_host).call()
    err = info.value
    assert err.js_message == "renderCard needs a title"
    assert "sourcemap/src/render.js:5:" in err.js_stack, err.js_stack
    assert "bundle.js" not in err.js_stack.split("\n")[1], err.js_stack
