"""The Redis cache under memory pressure: every key the proxy makes has a TTL, so
``maxmemory-policy volatile-lru`` (or ``allkeys-lru``) can evict; under ``noeviction``
the proxy serves uncached and says which setting to change. Real redis-server."""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

import pytest
import redis
import requests

from tests.support.proxy import Proxy, Server, Upstream, call_path
from tests.support.threads import run_on_threads

pytestmark = pytest.mark.timeout(120)


def keys_without_ttl(url: str) -> tuple[int, list[bytes]]:
    """(how many keys Redis holds, those of them that have no TTL)."""
    client = redis.Redis.from_url(url)
    try:
        names = list(client.scan_iter(count=1000))
        return len(names), [n for n in names if client.pttl(n) < 0]
    finally:
        client.close()


def test_every_key_the_proxy_makes_has_a_ttl(
    start_gunicorn: Callable[..., Any], upstream: Upstream, redis_server: tuple[str, Server]
):
    url, _ = redis_server
    # Two proxies (2 workers each) on one Redis: waiters in other processes block on the
    # lock's wake-up list and pass the token on.
    bases = [
        start_gunicorn(upstream=upstream.url, cache=url, threads=32, gunicorn_args="--worker-connections 13")[
            0
        ]
        for _ in range(2)
    ]
    start = threading.Barrier(50)
    answers: list[Any] = [None] * 50

    def run(i: int) -> None:
        path, body = call_path("slow", {"ms": 800})
        start.wait()
        answers[i] = requests.post(bases[i % 2] + path, data=body, timeout=30)

    run_on_threads(run, 50, timeout=60)
    assert [a.status_code for a in answers] == [200] * 50
    assert upstream.calls("slow") == 1
    for i in range(5):
        path, body = call_path("echo", {"i": i})
        requests.post(bases[i % 2] + path, data=body, timeout=20)
    held, without = keys_without_ttl(url)
    assert held >= 6 and without == []
    client = redis.Redis.from_url(url)
    assert any(n.startswith(b"js-host-proxy-wake:") for n in client.scan_iter())  # waiters were there
    client.close()


def fill(proxy: Proxy, count: int) -> list[str]:
    """X-Cache of ``count`` distinct calls of ~20 kB answers, then of the last one again."""
    states = []
    for i in range(count):
        states.append(proxy.call("echo", {"i": i, "pad": "x" * 20_000}).headers["X-Cache"])
    states.append(proxy.call("echo", {"i": count - 1, "pad": "x" * 20_000}).headers["X-Cache"])
    return states


@pytest.mark.parametrize("policy", ["volatile-lru", "allkeys-lru"])
def test_a_full_redis_with_an_lru_policy_evicts_and_keeps_caching(
    policy: str,
    make_proxy: Callable[..., Proxy],
    upstream: Upstream,
    start_redis: Callable[..., tuple[str, Server]],
    caplog: pytest.LogCaptureFixture,
):
    url, _ = start_redis("--maxmemory", "4mb", "--maxmemory-policy", policy)
    proxy = make_proxy(cache_url=url)
    with caplog.at_level(logging.WARNING):
        states = fill(proxy, 400)  # 8 MB of answers through 4 MB
    assert states == ["MISS"] * 400 + ["HIT"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    client = redis.Redis.from_url(url)
    assert client.info("stats")["evicted_keys"] > 0
    client.close()


def test_a_full_redis_without_eviction_serves_uncached_and_names_the_setting(
    make_proxy: Callable[..., Proxy],
    upstream: Upstream,
    start_redis: Callable[..., tuple[str, Server]],
    caplog: pytest.LogCaptureFixture,
):
    url, _ = start_redis("--maxmemory", "4mb", "--maxmemory-policy", "noeviction")
    proxy = make_proxy(cache_url=url)
    with caplog.at_level(logging.WARNING):
        states = fill(proxy, 400)
    assert states == ["MISS"] * 401  # every answer still given, the last ones uncached
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert "maxmemory" in warnings and "maxmemory-policy volatile-lru or allkeys-lru" in warnings
