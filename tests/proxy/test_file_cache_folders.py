"""The file cache's held folders and lock files: purges, killed workers and
changed folders are noticed, and a lock excludes while it is held."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from js_host_proxy.__main__ import main
from js_host_proxy.cache import file_lock
from js_host_proxy.cache.entry import Entry
from js_host_proxy.cache.file import FileCache
from js_host_proxy.cache.keys import cache_key

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
KEY = cache_key("", "v1", "echo", "1" * 40)
OTHER_KEY = cache_key("", "v1", "echo", "2" * 40)


def eventually(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def lock_path(cache: FileCache, key: str) -> Path:
    slot = cache._folders.slot(key)
    assert slot is not None
    return Path(slot[1].join(slot[2] + ".lock"))


def age(path: Path, seconds: float = 120) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


# A worker killed while it holds a key's lock and writes an entry's temporary file.
KILLED_WORKER = r"""
import os, signal, sys
from js_host_proxy.cache.file import FileCache
cache = FileCache(sys.argv[1])
lock = cache.lock(sys.argv[2], 5)
assert lock.__enter__() is True
shard = cache._folders.slot(sys.argv[2])[1]
fd, name = shard.create_temp(".tmp-")
os.write(fd, b"half an entry")
print(os.path.join(shard.path, name), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_purge_removes_what_a_killed_worker_left_but_never_a_held_lock(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    root = tmp_path / "cache"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WORKER, str(root), KEY],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    temp = Path(killed.stdout.strip())
    cache = FileCache(root)
    dead_lock = lock_path(cache, KEY)
    assert temp.exists() and dead_lock.exists()
    fresh = Entry(time.time(), time.time() + 60, b"cc=4,x").dumps()
    cache.set(OTHER_KEY, fresh, 60)
    with cache.lock(OTHER_KEY, 5) as held:
        assert held
        held_lock = lock_path(cache, OTHER_KEY)
        young = held_lock.parent / ".tmp-being-written"
        young.write_bytes(b"")
        for path in (temp, dead_lock, held_lock):
            age(path)
        assert main(["purge", "--cache", f"file://{root}", "--expired"]) == 0
        out = capsys.readouterr().out
        assert "removed 0 entries (expired, all namespaces) and 2 leftover temporary or lock files" in out
        assert not temp.exists() and not dead_lock.exists()
        assert held_lock.exists() and young.exists()
        # The lock still excludes: another process waits for it (here until its timeout).
        with FileCache(root).lock(OTHER_KEY, 0.2) as other:
            assert not other
    assert not held_lock.exists()  # its holder removed it on release
    assert cache.get(OTHER_KEY) == fresh
    young.unlink()
    cache.close()


def test_a_lock_file_removed_before_it_is_locked_is_not_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    root = tmp_path / "cache"
    cache = FileCache(root)
    leftover = lock_path(cache, KEY)
    leftover.write_bytes(b"")  # a killed worker's
    age(leftover)
    real_flock = fcntl.flock
    purged: list[int] = []

    def flock_after_a_purge(fd: int, operation: int) -> None:
        # The purge runs between the worker's open of the lock file and its flock.
        if not purged:
            purged.append(-1)  # once (the purge's own flock comes here too)
            purged[0] = FileCache(root).purge(expired_only=True)
            assert not leftover.exists()
        real_flock(fd, operation)

    monkeypatch.setattr(file_lock.fcntl, "flock", flock_after_a_purge)
    with cache.lock(KEY, 5) as held:
        assert held and purged == [0]
        # It holds the file at the path (a new one), so it excludes the others.
        assert leftover.exists()
        with leftover.open("rb") as other, pytest.raises(BlockingIOError):
            real_flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    cache.close()


def test_a_namespace_folder_moved_aside_is_no_longer_read(tmp_path: Path):
    root = tmp_path / "cache"
    reader, writer = FileCache(root), FileCache(root)
    writer.set(KEY, b"old", 60)
    assert reader.get(KEY) == b"old"
    # A purge that moved the folder aside and was killed before removing it.
    (folder,) = [p for p in root.iterdir() if p.name.startswith("ns-")]
    folder.rename(root / f".purge-{int(time.time())}-0000")
    assert eventually(lambda: reader.get(KEY) is None)

    def stored_again() -> bool:
        writer.set(KEY, b"new", 60)
        return reader.get(KEY) == b"new"

    assert eventually(stored_again)
    assert [reader.get(KEY) for _ in range(3)] == [b"new"] * 3
    # Removed outright (rm -r): the next write makes the folders again.
    for cache in (reader, writer):
        cache.close()
    writer.set(KEY, b"again", 60)
    subprocess.run(["rm", "-r", str(root)], check=True)
    writer.set(KEY, b"after rm", 60)
    assert writer.get(KEY) == b"after rm" and reader.get(KEY) == b"after rm"
    for cache in (reader, writer):
        cache.close()


def test_a_cache_folder_opened_to_others_later_is_no_longer_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    root = tmp_path / "cache"
    cache = FileCache(root)
    cache.set(KEY, b"value", 60)
    assert cache.get(KEY) == b"value"
    caplog.set_level(logging.WARNING)
    root.chmod(0o755)
    assert eventually(lambda: cache.get(KEY) is None)
    message = "\n".join(r.getMessage() for r in caplog.records)
    assert f"'{root}' is accessible by other users (mode 755)" in message and "JS_HOST_PROXY_CACHE" in message
    cache.set(OTHER_KEY, b"not stored", 60)
    assert len([p for p in root.rglob("*") if p.is_file()]) == 1
    root.chmod(0o700)
    assert eventually(lambda: cache.get(KEY) == b"value")
    cache.close()
