"""Fixtures used only by the proxy tests: each upstream implementation in turn, and
the scripted upstream (raw bytes a Node host does not send) with a proxy in front."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any, Callable

import pytest

from js_host_proxy.app import ProxyApp
from js_host_proxy.config import ProxyConfig
from tests.support.proxy import IMPLS, Proxy, Upstream
from tests.support.scripted_upstream import ScriptedUpstream


@pytest.fixture(params=IMPLS)
def any_upstream(request: pytest.FixtureRequest, start_upstream: Callable[..., Upstream]) -> Upstream:
    """Each implementation in turn (our host is skipped while it does not exist)."""
    return start_upstream(request.param)


@pytest.fixture
def scripted() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as upstream:
        yield upstream


@pytest.fixture
def scripted_proxy(scripted: ScriptedUpstream) -> Iterator[Callable[..., Proxy]]:
    """``scripted_proxy(**config)``: the app in-process in front of ``scripted``, memory cache."""
    made: list[ProxyApp] = []

    def make(**overrides: Any) -> Proxy:
        overrides.setdefault("upstreams", (scripted.url,))
        overrides.setdefault("cache_url", "memory://")
        app = ProxyApp(replace(ProxyConfig(), **overrides))
        made.append(app)
        return Proxy(app)

    yield make
    for app in made:
        app.close()
