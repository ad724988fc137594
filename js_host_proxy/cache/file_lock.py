"""The file cache's lock per key, across processes: ``fcntl.flock`` on ``<entry>.lock``.

The process calling the host holds it exclusively; the others block on a shared
lock, which the kernel grants the moment the holder closes the file. A holder
checks, once it has the lock, that the file is still the one at the path, so a
purge may remove lock files it can lock itself (left by a killed worker, see
:mod:`js_host_proxy.cache.file_purge`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator

from js_host_proxy.cache.base import FailureLog
from js_host_proxy.cache.file_folders import Folders, is_at

#: Attempts at a lock whose file a purge removes under our feet.
LOCK_ATTEMPTS = 5

_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_NOCTTY


@contextlib.contextmanager
def hold(folders: Folders, key: str, timeout: float, failed: FailureLog) -> Iterator[bool]:
    """:meth:`FileCache.lock <js_host_proxy.cache.file.FileCache.lock>` for the cache
    of ``folders``: yield True holding ``key``'s lock, or False once its holder let go
    (or ``timeout`` passed); True, unlocked, when the cache is unusable."""
    try:
        opened = _open_lock(folders, key)
    except OSError as err:
        failed("lock", err)
        opened = None
    if opened is None:
        yield True  # no lock to be had: go ahead uncoordinated
        return
    fd, dir_fd, name, held = opened
    if not held:
        os.close(dir_fd)
        _wait_released(fd, timeout)
        yield False
        return
    try:
        yield True
    finally:
        # Unlinked while held: processes blocked on this file wake when it closes,
        # newcomers create a fresh one; so lock files never pile up.
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=dir_fd)
        os.close(fd)
        os.close(dir_fd)


def _open_lock(folders: Folders, key: str) -> tuple[int, int, str, bool] | None:
    """(lock fd, its folder's fd (a copy of ours, for the unlink), its name, whether
    held exclusively); None when the cache is unusable."""
    for _ in range(LOCK_ATTEMPTS):
        slot = folders.slot(key)
        if slot is None:
            return None
        name = slot[2] + ".lock"
        dir_fd = os.dup(slot[1].fd)  # the slot's may be closed while the lock is held
        try:
            fd = slot[1].open_file(name, _LOCK_FLAGS)
        except FileNotFoundError:  # the folder was purged since this process opened it
            os.close(dir_fd)
            folders.stale(slot[0])
            continue
        except BaseException:
            os.close(dir_fd)
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return fd, dir_fd, name, False
        except BaseException:
            os.close(fd)
            os.close(dir_fd)
            raise
        # A purge may have removed the file between our open and flock: then this lock
        # excludes nobody (a newcomer makes a new file); take the one at the path.
        if is_at(fd, dir_fd, name):
            return fd, dir_fd, name, True
        os.close(fd)
        os.close(dir_fd)
    raise OSError(f"the lock file for {key!r} in {folders.root!r} kept being replaced")


def _wait_released(fd: int, timeout: float) -> None:
    """Block until the exclusive holder of ``fd``'s file lets go, at most ``timeout`` s.

    flock has no timeout, so a daemon thread blocks on a shared lock and sets an
    event; if the wait times out the thread finishes (and closes ``fd``) on release.
    """
    released = threading.Event()

    def wait() -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        except OSError:
            pass
        finally:
            os.close(fd)
            released.set()

    threading.Thread(target=wait, name="js-host-proxy-lock-wait", daemon=True).start()
    released.wait(timeout)
