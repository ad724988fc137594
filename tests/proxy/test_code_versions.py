"""Keys carry the code version: a deploy never serves the old code's output, unchanged
code keeps its entries across a restart, and two projects never share entries.

Real hosts (restarted on the same port, as a deploy does), the proxy under real
gunicorn with 2 workers and the file cache; every call is checked by its output.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from js_host_proxy.cache.file import FileCache
from js_host_proxy.cache.file_purge import is_entry
from js_host_proxy.cache.keys import unversioned
from tests.support.processes import NodeProcess, free_port
from tests.support.proxy import Proxy, call_path, in_process_proxies
from tests.support.scripted_upstream import ScriptedUpstream

pytestmark = pytest.mark.timeout(120)

CONFIG = """'use strict';
var greeting = require('./greeting');
module.exports = {functions: {render: function(data, cb) { cb(null, greeting(data)); }}};
"""


def project(folder: Path, text: str) -> Path:
    """A project whose config requires ./greeting.js, which answers ``text`` + the data."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "host.config.js").write_text(CONFIG)
    write_greeting(folder, text)
    return folder / "host.config.js"


def write_greeting(folder: Path, text: str) -> None:
    (folder / "greeting.js").write_text(
        f"module.exports = function(data) {{ return {text!r} + ' ' + JSON.stringify(data); }};\n"
    )


def calls(base: str, count: int, data: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(X-Cache, output) of ``count`` calls of render(data), each on a new connection (so
    that both workers answer some)."""
    path, body = call_path("render", data or {"n": 1})
    answers = []
    for _ in range(count):
        answer = requests.post(
            base + path,
            data=body,
            headers={"Content-Type": "application/json", "Connection": "close"},
            timeout=20,
        )
        assert answer.status_code == 200, answer.text
        answers.append((answer.headers["X-Cache"], answer.text))
    return answers


def test_a_changed_required_file_is_a_miss_with_the_new_output_after_the_host_restarts(
    start_host: Callable[..., NodeProcess], start_gunicorn: Callable[..., Any], tmp_path: Path
):
    config = project(tmp_path / "app", "v1")
    port = str(free_port())
    host = start_host(config, "--port", port)
    base, server = start_gunicorn(upstream=host.url)
    first = calls(base, 8)
    assert first[0] == ("MISS", 'v1 {"n":1}')
    assert set(first[1:]) == {("HIT", 'v1 {"n":1}')}
    # The deploy: new code in a required file (the config is unchanged), the host restarted.
    host.stop()
    write_greeting(tmp_path / "app", "v2")
    start_host(config, "--port", port)
    after = calls(base, 8)
    assert after[0] == ("MISS", 'v2 {"n":1}')
    assert set(after[1:]) == {("HIT", 'v2 {"n":1}')}  # both workers, none with v1
    assert "Traceback" not in server.log


def test_unchanged_code_keeps_its_entries_across_a_host_restart(
    start_host: Callable[..., NodeProcess], start_gunicorn: Callable[..., Any], tmp_path: Path
):
    config = project(tmp_path / "app", "v1")
    port = str(free_port())
    host = start_host(config, "--port", port)
    base, _ = start_gunicorn(upstream=host.url)
    assert calls(base, 6)[0] == ("MISS", 'v1 {"n":1}')
    host.stop()
    start_host(config, "--port", port)
    assert set(calls(base, 6)) == {("HIT", 'v1 {"n":1}')}


@pytest.mark.parametrize("impl", ["bundled", "npm-0.11"])
def test_two_projects_on_one_machine_never_see_each_others_entries(
    impl: str, start_host: Callable[..., NodeProcess], start_gunicorn: Callable[..., Any], tmp_path: Path
):
    # Both proxies on their default cache: one folder (here tmp_path/cache) for both.
    cache = f"file://{tmp_path}/cache"
    hosts = [start_host(project(tmp_path / name, name), impl=impl) for name in ("shop", "blog")]
    proxies = [start_gunicorn(upstream=host.url, cache=cache)[0] for host in hosts]
    for _ in range(2):
        for name, base in zip(("shop", "blog"), proxies):
            answers = calls(base, 3)
            assert {output for _, output in answers} == {f'{name} {{"n":1}}'}
    assert [state for state, _ in calls(proxies[1], 2)] == ["HIT", "HIT"]


def test_an_answer_is_stored_under_the_version_it_carries(
    start_host: Callable[..., NodeProcess], tmp_path: Path
):
    """Two upstreams on different code (a rolling deploy): each answer is stored under its
    own version, whatever the proxy believed of the upstream it called."""
    old = start_host(project(tmp_path / "old", "old"))
    new = start_host(project(tmp_path / "new", "new"))
    versions = {old.status["codeVersion"]: "old", new.status["codeVersion"]: "new"}
    assert len(versions) == 2
    backend = FileCache(tmp_path / "cache")
    with in_process_proxies(old.url) as make:
        proxy: Proxy = make(backend=backend, upstreams=(old.url, new.url))
        outputs = {proxy.call("render", {"n": i}).get_data(as_text=True) for i in range(6)}
        assert {o.split()[0] for o in outputs} == {"old", "new"}  # round-robin over both
        for version, text in versions.items():
            assert proxy.app.versions.current(old.url if text == "old" else new.url) == version
    stored = {}
    for folder in (tmp_path / "cache").glob("ns-*/v-*"):
        version = folder.name[2:].split(".f-")[0]
        stored[version] = {p.read_bytes() for p in folder.iterdir() if is_entry(p.name)}
    assert set(stored) == set(versions)
    for version, blobs in stored.items():
        assert all(versions[version].encode() + b" " in blob for blob in blobs)


def test_a_host_without_a_version_is_keyed_by_the_set_of_upstreams():
    assert unversioned(("http://127.0.0.1:1", "http://127.0.0.1:2")) == unversioned(
        ["http://127.0.0.1:2/", "http://127.0.0.1:1"]
    )
    assert unversioned(("http://127.0.0.1:1",)) != unversioned(("http://127.0.0.1:2",))
    assert unversioned(("http://127.0.0.1:1",)).startswith("unversioned-")


def test_a_status_that_never_comes_is_not_waited_for_by_every_call(
    scripted_proxy: Callable[..., Proxy], scripted: ScriptedUpstream
):
    scripted.script("/status", lambda sock: None)  # takes the request, never answers
    proxy = scripted_proxy(upstream_timeout=0.3)
    answers = [proxy.call("ok", {"n": i}) for i in range(5)]
    assert [(a.status_code, a.data) for a in answers] == [(200, b"ok")] * 5
    # The first lookup waited for /status; the next ones used what was known meanwhile.
    assert 1 <= scripted.requests("/status") < 5
