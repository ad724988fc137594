"""``js-host-proxy purge``: each form removes exactly what it names, on each backend
(the file cache, a real redis-server, the memory cache)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from js_host.exceptions import ConfigError
from js_host_proxy.__main__ import main
from js_host_proxy.cache.base import CacheBackend
from js_host_proxy.cache.entry import Entry
from js_host_proxy.cache.file import FileCache
from js_host_proxy.cache.keys import cache_key, split_key
from js_host_proxy.cache.memory import MemoryCache
from js_host_proxy.cache.redis import RedisCache
from js_host_proxy.config import ProxyConfig
from tests.support.proxy import Proxy, Server, Upstream, call_path

pytestmark = pytest.mark.timeout(60)

NAMESPACES = ("", "data-2")
VERSIONS = ("1f2e3d4c5b6a7980", "unversioned-0123456789ab")
FUNCTIONS = ("render", "menu", "a:b")
KEYS = [
    cache_key(ns, version, name, digest)
    for ns, version, name, digest in itertools.product(NAMESPACES, VERSIONS, FUNCTIONS, ("1" * 40, "2" * 40))
]

#: Each form, and which keys (namespace, version, name) it removes.
FORMS: dict[str, tuple[list[str], Callable[[str, str, str], bool]]] = {
    "all": (["--all"], lambda ns, v, f: True),
    "function": (["--function", "render"], lambda ns, v, f: f == "render"),
    "odd function": (["--function", "a:b"], lambda ns, v, f: f == "a:b"),
    "version": (["--version", VERSIONS[0]], lambda ns, v, f: v == VERSIONS[0]),
    "namespace": (["--namespace", "data-2"], lambda ns, v, f: ns == "data-2"),
    "default namespace": (["--namespace", ""], lambda ns, v, f: ns == ""),
    "version and function": (
        ["--version", VERSIONS[1], "--function", "menu"],
        lambda ns, v, f: v == VERSIONS[1] and f == "menu",
    ),
    "all three": (
        ["--namespace", "", "--version", VERSIONS[1], "--function", "render"],
        lambda ns, v, f: ns == "" and v == VERSIONS[1] and f == "render",
    ),
}


def fill(backend: CacheBackend) -> None:
    now = time.time()
    for key in KEYS:
        backend.set(key, Entry(now, now + 3600, key.encode()).dumps(), 7200)
    assert all(backend.get(key) is not None for key in KEYS)


def left(backend: CacheBackend) -> set[str]:
    return {key for key in KEYS if backend.get(key) is not None}


@pytest.fixture(params=["file", "redis"])
def shared_cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, CacheBackend]]:
    """(URL, backend) of each backend the purge command reaches: the file cache, Redis."""
    if request.param == "file":
        url = f"file://{tmp_path}/cache"
        backend: CacheBackend = FileCache(tmp_path / "cache", max_size=1 << 20)
    else:
        url = request.getfixturevalue("redis_server")[0]
        backend = RedisCache(url)
    yield url, backend
    backend.close()


@pytest.mark.parametrize("form", list(FORMS))
def test_each_purge_form_removes_exactly_what_it_names(
    form: str, shared_cache: tuple[str, CacheBackend], capsys: pytest.CaptureFixture[str]
):
    url, backend = shared_cache
    args, named = FORMS[form]
    fill(backend)
    expected = {key for key in KEYS if not named(*split_key(key)[:3])}
    assert main(["purge", *args, "--cache", url]) == 0
    assert f"removed {len(KEYS) - len(expected)} entries" in capsys.readouterr().out
    assert left(backend) == expected
    fill(backend)  # and the purged places take new entries at once
    assert left(backend) == set(KEYS)


@pytest.mark.parametrize("form", list(FORMS))
def test_each_purge_form_of_the_memory_cache(form: str):
    backend = MemoryCache()
    fill(backend)
    args, named = FORMS[form]
    options = dict(zip(args[::2], args[1::2]))
    removed = backend.purge(
        options.get("--namespace"), version=options.get("--version"), function=options.get("--function")
    )
    expected = {key for key in KEYS if not named(*split_key(key)[:3])}
    assert (removed, left(backend)) == (len(KEYS) - len(expected), expected)


def test_purge_expired_removes_only_entries_past_their_stale_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("JS_HOST_PROXY_STALE_TTL", "60")
    backend = FileCache(tmp_path / "cache")
    now = time.time()
    fresh, stale, expired = KEYS[:3]
    backend.set(fresh, Entry(now, now + 60, b"fresh").dumps(), 120)
    backend.set(stale, Entry(now - 90, now - 30, b"stale").dumps(), 120)  # may still be served stale
    backend.set(expired, Entry(now - 200, now - 100, b"expired").dumps(), 120)
    assert main(["purge", "--expired", "--cache", f"file://{tmp_path}/cache"]) == 0
    assert "removed 1 entries (expired, all namespaces)" in capsys.readouterr().out
    assert {k for k in KEYS[:3] if backend.get(k)} == {fresh, stale}


def test_purge_says_what_to_name(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    assert main(["purge", "--cache", f"file://{tmp_path}/cache"]) == 2
    assert "--all" in capsys.readouterr().err


def test_redis_purge_expired_has_nothing_to_do(redis_server: tuple[str, Server], capsys):
    url, _ = redis_server
    assert main(["purge", "--expired", "--cache", url]) == 0
    assert "Redis expires entries itself" in capsys.readouterr().out


def test_purging_the_hosts_version_or_a_function_through_a_running_proxy(
    make_proxy: Callable[..., Proxy], upstream: Upstream, tmp_path: Path
):
    url = f"file://{tmp_path}/cache"
    proxy = make_proxy(cache_url=url)
    for name in ("echo", "long"):
        assert proxy.call(name, {}).headers["X-Cache"] == "MISS"
    assert main(["purge", "--function", "echo", "--cache", url]) == 0
    assert [proxy.call(name, {}).headers["X-Cache"] for name in ("echo", "long")] == ["MISS", "HIT"]
    assert main(["purge", "--version", "other", "--cache", url]) == 0
    assert [proxy.call(name, {}).headers["X-Cache"] for name in ("echo", "long")] == ["HIT", "HIT"]
    assert main(["purge", "--version", upstream.version, "--cache", url]) == 0
    assert [proxy.call(name, {}).headers["X-Cache"] for name in ("echo", "long")] == ["MISS", "MISS"]
    assert (upstream.calls("echo"), upstream.calls("long")) == (3, 2)


TOKEN = "0123456789abcdef-deploy"


def test_the_http_purge_endpoint_is_off_unless_a_token_is_set(make_proxy: Callable[..., Proxy]):
    proxy = make_proxy()
    assert proxy.client.post("/purge", json={"all": True}).status_code == 404
    with pytest.raises(ConfigError, match="at least 16"):
        ProxyConfig.from_env({"JS_HOST_PROXY_PURGE_TOKEN": "short"})
    assert ProxyConfig.from_env({"JS_HOST_PROXY_PURGE_TOKEN": TOKEN}).purge_token == TOKEN
    assert TOKEN not in repr(ProxyConfig(purge_token=TOKEN))


def test_the_http_purge_endpoint_needs_the_token_and_removes_what_it_names(
    start_gunicorn: Callable[..., Any], upstream: Upstream
):
    base, server = start_gunicorn(upstream=upstream.url, purge_token=TOKEN)

    def call(name: str) -> str:
        path, body = call_path(name, {})
        return requests.post(base + path, data=body, timeout=20).headers["X-Cache"]

    def purge(what: Any, token: str | None = TOKEN) -> requests.Response:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return requests.post(base + "/purge", json=what, headers=headers, timeout=20)

    assert [call("echo"), call("long")] == ["MISS", "MISS"]
    for token in (None, "", TOKEN[:-1], TOKEN + "x", "é" * 16):
        refused = purge({"all": True}, token)
        assert refused.status_code == 401 and "JS_HOST_PROXY_PURGE_TOKEN" in refused.text
    assert (
        requests.post(base + "/purge", json={"all": True}, headers={"Authorization": TOKEN}).status_code
        == 401
    )
    assert requests.get(base + "/purge", timeout=20).status_code == 405
    for bad in ({}, [], {"function": 3}, {"everything": True}):
        assert purge(bad).status_code == 400
    deep = requests.post(
        base + "/purge",
        data=b"[" * 5000 + b"]" * 5000,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        timeout=20,
    )
    assert (deep.status_code, "nested too deeply" in deep.text) == (400, True)
    assert [call("echo"), call("long")] == ["HIT", "HIT"]  # nothing was removed so far
    assert purge({"function": "echo"}).json() == {"removed": 1}
    assert [call("echo"), call("long")] == ["MISS", "HIT"]
    assert purge({"version": upstream.version, "function": "long"}).json() == {"removed": 1}
    assert purge({"all": True}).json() == {"removed": 1}
    assert [call("echo"), call("long")] == ["MISS", "MISS"]
    assert TOKEN not in server.log
    assert "RecursionError" not in server.log
