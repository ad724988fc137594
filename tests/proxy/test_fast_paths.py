"""The hit and miss paths' shortcuts give exactly what the plain code gives: parsed
entries are reused only while the backend holds the same bytes, the prepared
upstream request equals requests' own, large file entries are read whole, and
gunicorn's Date header keeps gunicorn's text; calls to a plain http:// host share
kept-alive connections, others go through urllib3."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import pytest
import requests

from js_host_proxy.cache.entry import Entry
from js_host_proxy.cache.file import READ_SIZE, FileCache
from js_host_proxy.cache.memory import MemoryCache
from js_host_proxy.keyed_cache import call_of
from js_host_proxy.upstream import UpstreamPool
from tests.support.proxy import Proxy, Upstream, sha1
from tests.support.scripted_upstream import ScriptedUpstream

pytestmark = pytest.mark.timeout(60)


def test_a_changed_entry_is_sent_as_stored_not_as_parsed_before(
    make_proxy: Callable[..., Proxy], upstream: Upstream
):
    backend = MemoryCache()
    proxy = make_proxy(backend=backend)
    assert proxy.call("echo", {"n": 1}).headers["X-Cache"] == "MISS"
    assert proxy.call("echo", {"n": 1}).data == b'{"echo":{"n":1}}'
    key = upstream.key("echo", {"n": 1})
    entry = Entry.loads(backend.get(key))
    assert entry is not None
    # Another process (or machine, with Redis) stores a new answer under the same key.
    new_blob = entry.blob.replace(b'{"echo":{"n":1}}', b'{"echo":{"n":2}}')
    now = time.time()
    backend.set(key, Entry(now, now + 60, new_blob).dumps(), 120)
    hit = proxy.call("echo", {"n": 1})
    assert (hit.headers["X-Cache"], hit.data) == ("HIT", b'{"echo":{"n":2}}')
    # Expired in the backend: not a hit, even though this process parsed it before.
    backend.set(key, Entry(now - 120, now - 60, new_blob).dumps(), 120)
    assert proxy.call("echo", {"n": 1}).headers["X-Cache"] == "MISS"
    assert upstream.calls("echo") == 2


def test_hits_carry_the_same_headers_as_the_miss_plus_age(
    make_proxy: Callable[..., Proxy], upstream: Upstream
):
    proxy = make_proxy()
    miss = proxy.call("long", {"h": 1})
    hit = proxy.call("long", {"h": 1})
    assert (miss.headers["X-Cache"], hit.headers["X-Cache"]) == ("MISS", "HIT")
    assert hit.headers["Cache-Control"] == miss.headers["Cache-Control"] == "max-age=3600"
    assert hit.headers["Content-Type"] == miss.headers["Content-Type"]
    assert hit.headers["Content-Length"] == str(len(hit.data)) and hit.headers["Age"] == "0"
    assert "Connection" not in hit.headers and "Keep-Alive" not in hit.headers


def test_a_large_file_entry_is_read_whole(tmp_path: Path):
    cache = FileCache(tmp_path / "cache")
    for size in (0, 1, READ_SIZE - 1, READ_SIZE, READ_SIZE + 1, 3 * READ_SIZE + 7):
        value = bytes(i % 251 for i in range(size))
        cache.set(f"0::v1:f:{size}", value, 60)
        assert cache.get(f"0::v1:f:{size}") == (value if size else b"")
    assert cache.get("0::v1:f:missing") is None and cache.get("0::f") is None


@pytest.mark.parametrize(
    "base", ["http://127.0.0.1:9009", "http://LocalHost:9009", "http://u:p@127.0.0.1:1", "https://[::1]:443"]
)
def test_the_prepared_upstream_request_is_the_one_requests_prepares(base: str):
    pool = UpstreamPool([base], connect_timeout=1, read_timeout=1, retry_down_after=1)
    headers = {"Accept-Encoding": "identity", "Via": "1.1 js-host-proxy", "Content-Type": "application/json"}
    paths = [
        "/function/echo?hash=bc4919c6adf7168088eaea06e27a5b23f0f9f9da",
        "/function/echo",
        "/function/a%20b?hash=AB&x=1",
        "/function/%C3%A9?hash=%41",
        "/function/x?hash=a b",
        "/function/x?hash=%zz",
        "/function/x?hash=\u00e9",
        "/status",
    ]
    for path_qs in paths:
        for method, body in (("POST", b'{"a": 1}'), ("POST", b""), ("GET", None)):
            ours = pool.prepare(method, base, path_qs, body, headers)
            theirs = requests.Request(method, base + path_qs, data=body, headers=headers).prepare()
            assert (ours.method, ours.url, ours.body) == (theirs.method, theirs.url, theirs.body)
            assert list(ours.headers.items()) == list(theirs.headers.items())


def test_a_large_answer_is_served_whole_from_the_cache(make_proxy: Callable[..., Proxy], upstream: Upstream):
    proxy = make_proxy()
    data = {"text": "x" * 100_000}
    miss, hit, again = (proxy.call("echo", data) for _ in range(3))
    assert [r.headers["X-Cache"] for r in (miss, hit, again)] == ["MISS", "HIT", "HIT"]
    assert miss.data == hit.data == again.data and len(hit.data) > 100_000
    assert upstream.calls("echo") == 1


def test_calls_to_a_plain_http_host_share_one_kept_alive_connection(
    scripted_proxy: Callable[..., Proxy], scripted: ScriptedUpstream
):
    scripted.script(
        "/function/kept", b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 2\r\n\r\nok"
    )
    proxy = scripted_proxy()
    credentials = {"Cookie": "session=1", "Authorization": "Bearer 1"}
    answers = [proxy.call("kept", {"n": i}, headers=credentials) for i in range(10)]
    assert [(a.status_code, a.headers["X-Cache"], a.data) for a in answers] == [(200, "MISS", b"ok")] * 10
    assert proxy.call("kept", {"n": 3}).headers["X-Cache"] == "HIT"
    # One connection for the ten calls; the other is the code-version watch (GET /status).
    assert scripted.requests("/function/kept") == 10 and scripted.connections == 2
    assert scripted.requests("/status") >= 1
    # The fields a requests session would send, and none of the client's credentials.
    sent = scripted.seen_headers[-1]
    assert sent["host"] == f"127.0.0.1:{scripted.port}" and sent["content-length"] == "8"
    assert (sent["accept-encoding"], sent["via"]) == ("identity", "1.1 js-host-proxy")
    assert "cookie" not in sent and "authorization" not in sent


def test_a_host_url_with_credentials_is_called_through_urllib3(
    scripted_proxy: Callable[..., Proxy], scripted: ScriptedUpstream
):
    proxy = scripted_proxy(upstreams=(f"http://user:secret@127.0.0.1:{scripted.port}",))
    answer = proxy.call("creds", {"n": 1})
    assert (answer.status_code, answer.data) == (200, b"ok")
    assert scripted.seen_headers[-1]["authorization"].startswith("Basic ")


def test_the_call_of_a_plain_url_is_the_one_the_full_parse_gives():
    digest = sha1(b"{}")
    cases = {
        f"http://127.0.0.1:9009/function/echo?hash={digest}": ("http://127.0.0.1:9009", "echo"),  # fast path
        f"http://[::1]:1/function/a.b-c_d~?hash={digest}": ("http://[::1]:1", "a.b-c_d~"),  # fast path
        f"http://h/function/%C3%A9?hash={digest}": ("http://h", "\u00c3\u00a9"),  # quoted: WSGI latin-1
        f"http://h/function/echo?hash={digest.upper()}": ("http://h", "echo"),
        f"http://h/function/echo?hash={digest}&x=1": ("http://h", "echo"),
    }
    for url, (base, name) in cases.items():
        assert call_of(url) == (base, name, digest), url
    assert call_of("http://h/status") is None
    assert call_of("http://h/function/echo") is None
