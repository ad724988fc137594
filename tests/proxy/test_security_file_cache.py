"""The file cache against another local user: what she prepares is never served,
followed or removed through.

The other user (uid nobody) can make the default cache's parent in a shared
/tmp before the proxy does, fill it with entries she computed, turn folders into
links and race to swap names while the proxy (root here) writes. Each attack ends
with every answer the host's, her entries never a HIT, and the victim's files
(canaries: content and mtime) untouched.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from js_host_proxy.__main__ import main
from js_host_proxy.cache.entry import Entry
from js_host_proxy.cache.file import FileCache
from js_host_proxy.cache.file_purge import is_entry
from js_host_proxy.cache.memory import MemoryCache
from js_host_proxy.config import ProxyConfig
from tests.support.other_user import OtherUserProcess, other_uid, requires_root, run_as_other, shared_tmp
from tests.support.proxy import Proxy, Upstream, call_path
from tests.support.threads import run_on_threads

pytestmark = pytest.mark.timeout(120)

PLANTED = {"k": "planted"}
GENUINE = b'{"echo":{"k":"planted"}}'

# Her preparation: the cache's parent, made first and open to all, with an entry in it.
PLANT = r"""
import os, sys
base, rel, data = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
os.mkdir(base, 0o777); os.chmod(base, 0o777)
path = os.path.join(base, "cache", rel)
os.makedirs(os.path.dirname(path), 0o777, exist_ok=True)
with open(path, "wb") as f:
    f.write(data)
"""


def forge(make_proxy: Callable[..., Proxy], scratch: Path) -> tuple[bytes, str]:
    """(entry, path in the cache) of a well-formed entry for echo(PLANTED) saying FORGED.

    The key and layout come from the proxy itself (a call stored in a memory
    cache, then the entry written by a FileCache into ``scratch``): what she can
    compute from the code."""
    backend = MemoryCache()
    assert make_proxy(backend=backend).call("echo", PLANTED).data == GENUINE
    key = next(iter(backend._data))
    entry = Entry.loads(backend.get(key))
    assert entry is not None and b"planted" in entry.blob
    now = time.time()
    forged = Entry(now, now + 3600, entry.blob.replace(b"planted", b"FORGED!")).dumps()
    cache = FileCache(scratch)
    cache.set(key, forged, 3600)
    cache.close()
    (path,) = [p for p in scratch.rglob("*") if p.is_file()]
    return forged, str(path.relative_to(scratch))


def snapshot(top: Path) -> dict[str, tuple[int, int, int, bytes]]:
    """Every name under ``top`` (links not followed): (mode, uid, mtime, content of files)."""
    found = {}
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            content = Path(path).read_bytes() if os.path.isfile(path) and not os.path.islink(path) else b""
            found[os.path.relpath(path, top)] = (info.st_mode, info.st_uid, info.st_mtime_ns, content)
    return found


def assert_genuine(answers: list[Any]) -> None:
    for answer in answers:
        assert answer.status_code == 200, answer.get_data(as_text=True)
        assert answer.get_data() == GENUINE


def warnings_of(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def test_the_forged_entry_is_well_formed(
    make_proxy: Callable[..., Proxy], upstream: Upstream, tmp_path: Path
):
    """The control: where the proxy itself stored it, the forged entry would be a HIT."""
    forge(make_proxy, tmp_path / "cache")
    hit = make_proxy(cache_url=f"file://{tmp_path}/cache").call("echo", PLANTED)
    assert (hit.headers["X-Cache"], hit.get_data()) == ("HIT", GENUINE.replace(b"planted", b"FORGED!"))


@requires_root
def test_a_prepared_default_parent_with_planted_entries_is_never_used(
    make_proxy: Callable[..., Proxy],
    upstream: Upstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    forged, rel = forge(make_proxy, tmp_path / "scratch")
    calls_before = upstream.calls("echo", PLANTED)
    with shared_tmp() as shared:
        base = shared / f"js-host-proxy-{os.getuid()}"
        result = run_as_other(PLANT, str(base), rel, forged.hex())
        assert result.returncode == 0, result.stderr
        hers = snapshot(base)
        monkeypatch.setenv("TMPDIR", str(shared))
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        monkeypatch.delenv("JS_HOST_PROXY_CACHE", raising=False)
        caplog.set_level(logging.WARNING)
        # The default moves to the per-user cache folder, where it works (a HIT the second time).
        default = ProxyConfig.from_env().cache_url
        assert default == f"file://{tmp_path}/xdg/js-host-proxy"
        assert str(base) in warnings_of(caplog) and "JS_HOST_PROXY_CACHE" in warnings_of(caplog)
        answers = [make_proxy(cache_url=default).call("echo", PLANTED) for _ in range(2)]
        assert_genuine(answers)
        assert [a.headers["X-Cache"] for a in answers] == ["MISS", "HIT"]
        assert (tmp_path / "xdg" / "js-host-proxy").stat().st_uid == os.getuid()
        # Told to use her folder anyway: refused, served uncached, and said why.
        caplog.clear()
        proxy = make_proxy(cache_url=f"file://{base}/cache")
        answers = [proxy.call("echo", PLANTED) for _ in range(2)]
        assert_genuine(answers)
        assert [a.headers["X-Cache"] for a in answers] == ["MISS", "MISS"]
        message = warnings_of(caplog)
        assert (
            f"'{base}' above it belongs to uid {other_uid()}" in message and "JS_HOST_PROXY_CACHE" in message
        )
        assert snapshot(base) == hers  # nothing written, nothing removed
    assert upstream.calls("echo", PLANTED) == calls_before + 3


@requires_root
def test_an_entry_that_is_not_a_regular_file_of_ours_is_never_served(
    make_proxy: Callable[..., Proxy], upstream: Upstream, tmp_path: Path
):
    forged, rel = forge(make_proxy, tmp_path / "cache")
    entry = tmp_path / "cache" / rel
    proxy = make_proxy(cache_url=f"file://{tmp_path}/cache")
    os.chown(entry, other_uid(), -1)  # hers
    answer = proxy.call("echo", PLANTED)
    assert (answer.headers["X-Cache"], answer.get_data()) == ("MISS", GENUINE)
    # A link to a forged entry elsewhere is never followed either.
    elsewhere = tmp_path / "forged"
    elsewhere.write_bytes(forged)
    entry.unlink()
    entry.symlink_to(elsewhere)
    answer = proxy.call("echo", PLANTED)
    assert (answer.headers["X-Cache"], answer.get_data()) == ("MISS", GENUINE)
    assert elsewhere.read_bytes() == forged


@requires_root
def test_a_cache_folder_that_is_a_link_to_hers_is_refused(
    make_proxy: Callable[..., Proxy],
    upstream: Upstream,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
):
    with shared_tmp() as shared:
        hers, link = shared / "hers", shared / "cache"
        default = shared / f"js-host-proxy-{os.getuid()}"
        result = run_as_other(
            "import os, sys; os.mkdir(sys.argv[1], 0o777); os.chmod(sys.argv[1], 0o777); "
            "os.symlink(sys.argv[1], sys.argv[2]); os.symlink(sys.argv[1], sys.argv[3])",
            str(hers),
            str(link),
            str(default),
        )
        assert result.returncode == 0, result.stderr
        caplog.set_level(logging.WARNING)
        proxy = make_proxy(cache_url=f"file://{link}")
        answers = [proxy.call("echo", PLANTED) for _ in range(2)]
        assert_genuine(answers)
        assert [a.headers["X-Cache"] for a in answers] == ["MISS", "MISS"]
        message = warnings_of(caplog)
        assert f"'{link}'" in message and "symbolic link" in message and "JS_HOST_PROXY_CACHE" in message
        assert main(["purge", "--all", "--cache", f"file://{link}"]) == 1
        assert "symbolic link" in capsys.readouterr().err
        # The default is a link of hers too: the per-user cache folder instead.
        monkeypatch.setenv("TMPDIR", str(shared))
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert ProxyConfig.from_env({}).cache_url == f"file://{tmp_path}/xdg/js-host-proxy"
        assert list(hers.iterdir()) == []


# Her racer: while the proxy writes, the cache folder under her parent becomes in turn a
# link to the victim's folder, her own tree (a forged entry, shard folders that are links
# to the victim's folder) and a link to that tree; every temporary file that shows up is
# swapped for a link to one of the victim's files.
RACER = r"""
import os, shutil, sys, time
base, victim, stop, rel, data = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], bytes.fromhex(sys.argv[5])
canaries = [os.path.join(victim, n) for n in sorted(os.listdir(victim))]
tree = base + "-tree"
ns, shard, name = rel.split("/")
for top in (base, tree):
    os.mkdir(top, 0o777); os.chmod(top, 0o777)
os.makedirs(os.path.join(tree, ns, shard), 0o777)
with open(os.path.join(tree, rel), "wb") as f:
    f.write(data)
for i in range(256):
    if "%02x" % i != shard:
        os.symlink(victim, os.path.join(tree, ns, "%02x" % i))
shutil.copytree(tree, tree + "-copy", symlinks=True)
cache, rounds, deadline = os.path.join(base, "cache"), 0, time.time() + 60
while not os.path.exists(stop) and time.time() < deadline:
    rounds += 1
    try:
        if os.path.islink(cache):
            os.unlink(cache)
        elif os.path.isdir(cache):
            os.rename(cache, tree + "-copy")
        if rounds % 3 == 0:
            os.symlink(victim, cache)
        elif rounds % 3 == 1:
            os.rename(tree + "-copy", cache)
        else:
            os.symlink(tree, cache)
    except OSError:
        pass
    for folder, dirs, files in os.walk(base):
        for f in files:
            if f.startswith(".tmp-"):
                try:
                    os.unlink(os.path.join(folder, f))
                    os.symlink(canaries[rounds % len(canaries)], os.path.join(folder, f))
                except OSError:
                    pass
print("rounds", rounds, flush=True)
"""


@requires_root
def test_racing_link_swaps_under_gunicorn_touch_nothing_of_the_victims(
    start_gunicorn: Callable[..., Any], upstream: Upstream, make_proxy: Callable[..., Proxy], tmp_path: Path
):
    forged, rel = forge(make_proxy, tmp_path / "scratch")
    with shared_tmp() as shared:
        victim = shared / "victim-files"  # the victim's, readable by all, writable by root only
        victim.mkdir(mode=0o755)
        victim.chmod(0o755)
        for i in range(3):
            (victim / f"canary-{i}").write_bytes(b"precious %d\n" % i)
        canaries = snapshot(victim)
        base, stop = shared / f"js-host-proxy-{os.getuid()}", shared / "stop"
        racer = OtherUserProcess(
            RACER, str(base), str(victim), str(stop), rel, forged.hex(), log=tmp_path / "racer.log"
        )
        racer.spawn()
        try:
            racer.wait_until(lambda: (base / "cache").exists() or (base / "cache").is_symlink(), 15)
            url, server = start_gunicorn(upstream=upstream.url, cache=f"file://{base}/cache")
            datas = [PLANTED] + [{"race": i} for i in range(15)]
            results: list[tuple[dict[str, Any], requests.Response]] = []

            def client(n: int) -> None:
                with requests.Session() as session:
                    for i in range(40):
                        data = datas[(n + i) % len(datas)]
                        path, body = call_path("echo", data)
                        reply = session.post(
                            url + path, data=body, headers={"Content-Type": "application/json"}, timeout=20
                        )
                        results.append((data, reply))

            run_on_threads(client, 4, timeout=60)
        finally:
            stop.touch()
            racer.wait(20)
            racer.stop()
        assert "rounds" in racer.log, racer.log
        assert len(results) == 160
        for data, reply in results:
            assert reply.status_code == 200, reply.text
            assert reply.json() == {"echo": data}, "a forged or foreign answer was served"
        assert snapshot(victim) == canaries  # no canary written, truncated, touched or added
        for top in (
            base,
            Path(f"{base}-tree"),
            Path(f"{base}-tree-copy"),
        ):  # and nothing of root's was left in her folders
            owners = {info[1] for info in snapshot(top).values()}
            assert owners <= {other_uid()}, owners
        assert "JS_HOST_PROXY_CACHE" in server.log and str(base) in server.log


def expired_entry() -> bytes:
    return Entry(1.0, 2.0, b"cc=4,old").dumps()


@requires_root
def test_purge_removes_nothing_through_planted_links(
    make_proxy: Callable[..., Proxy], upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    long_ago = time.time() - 3600
    outside = tmp_path / "outside"  # the victim's files, that links in the cache point to
    (outside / "folder").mkdir(parents=True)
    for name in ("entry", "temp", "lock", f"folder/{'a' * 64}", "folder/.tmp-x", f"folder/{'b' * 64}.lock"):
        (outside / name).write_bytes(expired_entry())
        os.utime(outside / name, (long_ago, long_ago))
    precious = snapshot(outside)
    url = f"file://{tmp_path}/cache"
    make_proxy(cache_url=url).call("echo", PLANTED)
    (entry,) = [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and is_entry(p.name)]
    shard, ns = entry.parent, entry.parent.parent
    links = {
        shard / ("c" * 64): outside / "entry",
        shard / ".tmp-link": outside / "temp",
        shard / f"{'d' * 64}.lock": outside / "lock",
        ns / "zz": outside / "folder",
        tmp_path / "cache" / "ns-0000000000000000": outside / "folder",
        tmp_path / "cache" / ".purge-1-abcd": outside / "folder",
    }
    for link, target in links.items():
        link.symlink_to(target)
        os.utime(link, (long_ago, long_ago), follow_symlinks=False)
    assert main(["purge", "--cache", url, "--expired"]) == 0
    # The links' targets are never read or removed; the links named like leftovers are removed.
    assert "removed 0 entries (expired, all namespaces) and 2 leftover" in capsys.readouterr().out
    assert snapshot(outside) == precious
    assert make_proxy(cache_url=url).call("echo", PLANTED).headers["X-Cache"] == "HIT"
    assert main(["purge", "--all", "--cache", url]) == 0
    assert "removed 1 entries" in capsys.readouterr().out
    assert snapshot(outside) == precious
    with shared_tmp() as shared:  # her prepared tree: refused outright
        forged, rel = forge(make_proxy, tmp_path / "scratch")
        base = shared / f"js-host-proxy-{os.getuid()}"
        result = run_as_other(PLANT, str(base), rel, forged.hex())
        assert result.returncode == 0, result.stderr
        hers = snapshot(base)
        for expired in (["--all"], ["--expired"]):
            assert main(["purge", "--cache", f"file://{base}/cache", *expired]) == 1
            assert "is not private" in capsys.readouterr().err
        assert snapshot(base) == hers
