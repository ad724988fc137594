"""Fixtures used only by the proxy tests: each upstream implementation in turn, and
the scripted upstream (raw bytes a Node host does not send) with a proxy in front."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Callable

import pytest

from tests.support.proxy import IMPLS, Proxy, Upstream, in_process_proxies
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
    with in_process_proxies(scripted.url) as make:
        yield make
