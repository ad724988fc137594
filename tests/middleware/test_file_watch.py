"""FileWatcher (the development reloader's watcher of the host's loaded files), on real files,
by inotify and by its polling thread: edits, saves by rename and deletions are seen; other files
of the folder, a chmod and an unchanged file are not; a forked child watches on its own."""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from js_host import file_watch
from js_host.file_watch import FileWatcher, mtime_ns
from tests.support.forked import run_in_fork
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["inotify", "polling"])
def watcher(request: pytest.FixtureRequest) -> Iterator[FileWatcher]:
    polling = request.param == "polling"
    if not polling and not os.path.exists("/proc/sys/fs/inotify"):
        pytest.skip("no inotify on this system")
    watcher = FileWatcher(interval=0.05, polling=polling)
    yield watcher
    watcher.close()


def edit(path: Path, text: str) -> None:
    """Write ``text`` and make the change visible whatever the filesystem's mtime resolution."""
    path.write_text(text)
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 2_000_000_000))


def files(tmp_path: Path, count: int = 3) -> list[Path]:
    paths = []
    for i in range(count):
        folder = tmp_path / f"part{i % 2}"
        folder.mkdir(exist_ok=True)
        path = folder / f"m{i}.js"
        path.write_text(f"module.exports = {i};\n")
        paths.append(path)
    return paths


def watch(watcher: FileWatcher, paths: list[Path]) -> None:
    # As the host reports them: mtimes in ns as strings.
    watcher.watch({str(path): str(mtime_ns(str(path))) for path in paths})


def test_edits_are_seen_and_the_rest_is_not(watcher: FileWatcher, tmp_path: Path) -> None:
    paths = files(tmp_path)
    watch(watcher, paths)
    assert watcher.mode == ("polling" if watcher._polling else "inotify")
    assert len(watcher) == 3 and not watcher.changed()

    # Another file of a watched folder (a log, an editor's swap file), a chmod: no change.
    (paths[0].parent / "server.log").write_text("a line\n")
    paths[1].chmod(0o600)
    (paths[1].parent / ".m1.js.swp").write_text("swap")
    time.sleep(3 * watcher.interval)  # a few passes of the polling thread
    assert not watcher.changed(), watcher.changed_files

    edit(paths[1], "module.exports = 'edited';\n")
    wait_for(watcher.changed, what="the edit")
    assert watcher.changed_files == [str(paths[1])]
    assert watcher.changed(), "stays True until watch() is called again"

    # Watching the new versions: no change until the next edit.
    watch(watcher, paths)
    assert not watcher.changed()


def test_a_save_by_rename_and_a_deletion(watcher: FileWatcher, tmp_path: Path) -> None:
    paths = files(tmp_path)
    watch(watcher, paths)
    # How many editors save: a new file renamed over the old one.
    temporary = paths[2].parent / "m2.js.tmp"
    temporary.write_text("module.exports = 'saved';\n")
    info = temporary.stat()
    os.utime(temporary, ns=(info.st_atime_ns, info.st_mtime_ns + 2_000_000_000))
    os.replace(temporary, paths[2])
    wait_for(watcher.changed, what="the save by rename")
    assert watcher.changed_files == [str(paths[2])]

    watch(watcher, paths)
    paths[0].unlink()
    wait_for(watcher.changed, what="the deletion")
    assert watcher.changed_files == [str(paths[0])]


def test_a_file_changed_before_watching_counts_at_once(watcher: FileWatcher, tmp_path: Path) -> None:
    paths = files(tmp_path)
    loaded = {str(path): str(mtime_ns(str(path))) for path in paths}
    edit(paths[0], "module.exports = 'edited before';\n")  # after the host loaded it
    watcher.watch({**loaded, str(tmp_path / "gone.js"): None})
    assert watcher.changed() and watcher.changed_files == [str(paths[0])]


def test_a_forked_child_watches_on_its_own(watcher: FileWatcher, tmp_path: Path) -> None:
    paths = files(tmp_path)
    watch(watcher, paths)

    def child() -> dict[str, object]:
        before = watcher.changed()  # nothing watched in this process yet
        watch(watcher, paths)
        edit(paths[0], "module.exports = 'edited in the child';\n")
        wait_for(watcher.changed, what="the edit, in the child")
        return {"before": before, "files": watcher.changed_files, "mode": watcher.mode}

    report = run_in_fork(child)
    assert report["before"] is True
    assert report["files"] == [str(paths[0])]
    assert report["mode"] == watcher.mode
    # The parent watches as before: it sees the child's edit too (and its events were its own).
    wait_for(watcher.changed, what="the edit, in the parent")
    assert watcher.changed_files == [str(paths[0])]


def test_a_watched_file_that_appears(watcher: FileWatcher, tmp_path: Path) -> None:
    # A file the host looked for and did not find, then created by a hard link (or a
    # symlink, mknod): inotify sends only CREATE for it, no CLOSE_WRITE.
    paths = files(tmp_path, count=1)
    missing = paths[0].parent / "later.js"
    watcher.watch({str(paths[0]): str(mtime_ns(str(paths[0]))), str(missing): None})
    assert not watcher.changed()
    os.link(paths[0], missing)
    wait_for(watcher.changed, what="the new file")
    assert watcher.changed_files == [str(missing)]


def test_a_thread_asking_while_another_reads_the_events_sees_the_edit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two request threads: the first takes the edit's events off the kernel's queue and
    compares the mtimes; the second, asking meanwhile, must not take the edit for none (its
    request would reach the host the first one is about to restart)."""
    if not os.path.exists("/proc/sys/fs/inotify"):
        pytest.skip("no inotify on this system")
    watcher = FileWatcher(polling=False)
    (path,) = files(tmp_path, 1)
    watch(watcher, [path])
    asking, comparing = threading.Event(), threading.Event()

    def slow_mtime(name: str) -> int | None:
        comparing.set()
        asking.wait(10)
        time.sleep(0.3)  # the second thread asks while the first compares
        return mtime_ns(name)

    try:
        edit(path, "module.exports = 'edited';\n")
        wait_for(lambda: select.select([watcher._inotify.fileno()], [], [], 0)[0])  # the events are queued
        monkeypatch.setattr(file_watch, "mtime_ns", slow_mtime)
        first = threading.Thread(target=watcher.changed)
        first.start()
        assert comparing.wait(10)
        asking.set()
        assert watcher.changed(), "the second thread took the edit for none"
        first.join(10)
        assert watcher.changed_files == [str(path)]
    finally:
        asking.set()
        watcher.close()
