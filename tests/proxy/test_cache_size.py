"""JS_HOST_PROXY_MAX_SIZE: the file and memory caches stay under their bound (never over
by more than one entry), evict the least recently used with stale and expired entries
first, and keep the hot keys; the file cache's bound holds across gunicorn workers."""

from __future__ import annotations

import fcntl
import os
import random
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from js_host_proxy.cache.base import CacheBackend
from js_host_proxy.cache.entry import Entry
from js_host_proxy.cache.file import FileCache
from js_host_proxy.cache.file_purge import is_entry
from js_host_proxy.cache.keys import cache_key
from js_host_proxy.cache.memory import MemoryCache
from js_host_proxy.config import ProxyConfig, parse_size
from tests.support.proxy import Upstream, call_path
from tests.support.threads import run_on_threads

pytestmark = pytest.mark.timeout(180)

MAX_SIZE = 64 * 1024


def entries_size(root: Path) -> tuple[int, int]:
    """(bytes of all entries under ``root``, the largest entry's), counted while holding
    the lock every write takes: a consistent snapshot."""
    fd = os.open(root / ".usage", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        sizes = [p.stat().st_size for p in root.glob("ns-*/*/*") if is_entry(p.name)]
    finally:
        os.close(fd)
    return sum(sizes), max(sizes, default=0)


def test_the_bound_holds_under_gunicorn_with_8_threads_writing_random_sizes(
    start_gunicorn: Callable[..., Any], upstream: Upstream, tmp_path: Path
):
    root = tmp_path / "cache"
    base, server = start_gunicorn(upstream=upstream.url, max_size="64kb")
    hot_path, hot_body = call_path("echo", {"hot": True})
    headers = {"Content-Type": "application/json"}
    assert requests.post(base + hot_path, data=hot_body, headers=headers, timeout=20).status_code == 200
    done = threading.Event()
    seen: list[tuple[int, int]] = []
    hot_states: list[str] = []

    def watch() -> None:
        while not done.is_set():
            seen.append(entries_size(root))

    def write(i: int) -> None:
        rng = random.Random(i)
        with requests.Session() as session:
            for n in range(25):
                path, body = call_path("echo", {"t": i, "n": n, "pad": "x" * rng.randint(100, 6000)})
                assert session.post(base + path, data=body, headers=headers, timeout=20).status_code == 200
                hot = session.post(base + hot_path, data=hot_body, headers=headers, timeout=20)
                hot_states.append(hot.headers["X-Cache"])

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        run_on_threads(write, 8, timeout=150)
    finally:
        done.set()
        watcher.join()
    seen.append(entries_size(root))
    total, largest = max(seen)
    assert len(seen) > 1 and total <= MAX_SIZE + largest, (total, largest)
    assert seen[-1][0] <= MAX_SIZE
    # 200 entries of ~3 kB went through a cache that holds ~20: the hot key was always there.
    assert upstream.calls("echo") == 201
    assert hot_states == ["HIT"] * 200
    assert "Traceback" not in server.log


def _entry(fresh_for: float, size: int = 1000) -> bytes:
    now = time.time()
    return Entry(now, now + fresh_for, b"x" * size).dumps()


def _key(i: int | str) -> str:
    return cache_key("", "v1", "render", f"{i}".rjust(40, "0"))


@pytest.mark.parametrize("kind", ["file", "memory"])
def test_stale_and_expired_entries_go_first_then_the_least_recently_used(kind: str, tmp_path: Path):
    size = len(_entry(60))
    bound = 10 * size + size // 2  # ten entries
    cache: CacheBackend = (
        FileCache(tmp_path / "cache", max_size=bound) if kind == "file" else MemoryCache(max_size=bound)
    )
    if isinstance(cache, FileCache):
        cache.stale_ttl = 3600
    cache.set(_key("expired"), _entry(-7200), 7200 * 2)  # past its stale window
    cache.set(_key("stale"), _entry(-60), 7200)  # stale, may still be served while the host is down
    for i in range(8):
        cache.set(_key(i), _entry(3600), 7200)
        time.sleep(0.02)  # distinct access times (the file cache records them every 10 ms)
    cache.set(_key(8), _entry(3600), 7200)  # nine fresh, one stale, one expired: past the bound
    assert cache.get(_key("expired")) is None and cache.get(_key("stale")) is None
    time.sleep(0.02)
    assert cache.get(_key(0)) is not None  # the oldest fresh entry, used now
    for i in range(9, 12):  # fresh ones only now: the least recently used go
        time.sleep(0.02)
        cache.set(_key(i), _entry(3600), 7200)
    assert [i for i in range(12) if cache.get(_key(i)) is None] == [1, 2]
    cache.close()


def test_the_memory_bound_holds_under_8_threads():
    cache = MemoryCache(max_size=MAX_SIZE)
    largest = 0
    over: list[int] = []

    def write(i: int) -> None:
        nonlocal largest
        rng = random.Random(i)
        for n in range(300):
            value = _entry(60, rng.randint(100, 6000))
            largest = max(largest, len(value))
            cache.set(_key(f"{i}x{n}"), value, 60)
            if cache.get(_key("hot")) is None:
                cache.set(_key("hot"), _entry(60), 60)
            if cache.size > MAX_SIZE + 6100:
                over.append(cache.size)

    cache.set(_key("hot"), _entry(60), 60)
    run_on_threads(write, 8, timeout=60)
    assert over == [] and cache.size <= MAX_SIZE
    assert cache.get(_key("hot")) is not None


def test_an_entry_larger_than_the_bound_is_not_stored(tmp_path: Path):
    for cache in (FileCache(tmp_path / "cache", max_size=500), MemoryCache(max_size=500)):
        cache.set(_key(1), _entry(60, 1000), 60)
        assert cache.get(_key(1)) is None
        cache.close()


def test_sizes_in_the_setting():
    assert [parse_size(t, "X") for t in ("0", "1024", "512mb", "1GB", "64 kb", "1.5mb")] == [
        0,
        1024,
        512 << 20,
        1 << 30,
        64 << 10,
        3 << 19,
    ]
    assert ProxyConfig.from_env({"JS_HOST_PROXY_MAX_SIZE": "2mb"}).max_size == 2 << 20
    assert ProxyConfig.from_env({}).max_size == 512 << 20
    with pytest.raises(Exception, match="JS_HOST_PROXY_MAX_SIZE='lots' is not a size"):
        ProxyConfig.from_env({"JS_HOST_PROXY_MAX_SIZE": "lots"})
