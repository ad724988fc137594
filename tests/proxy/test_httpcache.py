"""What the proxy relies on in CacheControl (POST caching is outside its defaults):
checked against a real host, so that a CacheControl release that changes any of
it fails here rather than in production."""

from __future__ import annotations

import time
from importlib.metadata import version

import pytest

from js_host_proxy.cache.entry import Entry
from js_host_proxy.cache.keys import UNVERSIONED, cache_key
from js_host_proxy.cache.memory import MemoryCache
from js_host_proxy.httpcache import caching_session
from js_host_proxy.keyed_cache import KeyedCache
from tests.support.proxy import Upstream, body_of, call_path, sha1

pytestmark = pytest.mark.timeout(30)


def test_the_pinned_series_is_installed():
    major, minor = (int(x) for x in version("CacheControl").split(".")[:2])
    assert (major, minor) == (0, 14), "setup.py pins CacheControl>=0.14,<0.15; re-check this file on a bump"


def stored_key(upstream: Upstream, name: str, data: dict | None = None, namespace: str = "") -> str:
    """The key of ``name(data)`` in a KeyedCache made without the proxy's versions (whose
    hosts that report no version are all ``unversioned``)."""
    version = upstream.host.status.get("codeVersion") or UNVERSIONED
    return cache_key(namespace, version, name, sha1(body_of(data or {})))


@pytest.fixture
def backend() -> MemoryCache:
    return MemoryCache()


def post(session, upstream: Upstream, name: str, data: dict, base: str | None = None):
    path, body = call_path(name, data)
    response = session.post(
        (base or upstream.url) + path, data=body, headers={"Content-Type": "application/json"}
    )
    response.content  # noqa: B018 - reading to the end is what stores it
    return response


def test_posts_are_stored_and_answered_by_name_and_hash(upstream: Upstream, backend: MemoryCache):
    session = caching_session(KeyedCache(backend, namespace="ns", stale_ttl=60), ttl=60)
    assert post(session, upstream, "echo", {"a": 1}).from_cache is False
    # A second POST is answered from the cache; POST does not invalidate the entry.
    assert post(session, upstream, "echo", {"a": 1}).from_cache is True
    # The key ignores which upstream was asked: "localhost" is another authority.
    other = upstream.url.replace("127.0.0.1", "localhost")
    assert post(session, upstream, "echo", {"a": 1}, base=other).from_cache is True
    assert upstream.calls("echo") == 1
    entry = Entry.loads(backend.get(stored_key(upstream, "echo", {"a": 1}, namespace="ns")))
    assert entry is not None and entry.fresh_until - entry.stored_at == pytest.approx(60, abs=1)


def test_only_200_without_no_store_is_stored(any_upstream: Upstream, backend: MemoryCache):
    session = caching_session(KeyedCache(backend, namespace="", stale_ttl=60), ttl=60)
    for name in ("fail", "counter", "nope"):
        post(session, any_upstream, name, {})
        assert post(session, any_upstream, name, {}).from_cache is False
    assert (any_upstream.calls("fail"), any_upstream.calls("counter")) == (2, 2)
    assert backend.purge() == 0


def test_the_hosts_max_age_wins_and_the_default_ttl_fills_in(any_upstream: Upstream, backend: MemoryCache):
    session = caching_session(KeyedCache(backend, namespace="", stale_ttl=60), ttl=7)
    assert post(session, any_upstream, "long", {}).headers["Cache-Control"] == "max-age=3600"
    assert "Cache-Control" not in post(session, any_upstream, "echo", {}).headers  # the TTL stays inside
    lifetimes = {}
    for name in ("long", "echo"):
        entry = Entry.loads(backend.get(stored_key(any_upstream, name)))
        assert entry is not None
        lifetimes[name] = round(entry.fresh_until - entry.stored_at)
    assert lifetimes == {"long": 3600, "echo": 7}


def test_an_expired_entry_is_kept_for_stale_use_but_not_served(upstream: Upstream, backend: MemoryCache):
    cache = KeyedCache(backend, namespace="", stale_ttl=60)
    session = caching_session(cache, ttl=60)
    post(session, upstream, "short", {})  # max-age=1
    time.sleep(1.2)
    path, _ = call_path("short", {})
    # CacheControl is never shown the expired entry (so it does not delete it) ...
    assert cache.get(upstream.url + path) is None
    assert backend.get(stored_key(upstream, "short")) is not None
    # ... and calls the host again.
    assert post(session, upstream, "short", {}).from_cache is False
    assert upstream.calls("short") == 2
