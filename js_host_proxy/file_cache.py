"""The file cache: one folder shared by all the workers of a machine.

Layout: ``<root>/ns-<sha1(namespace)[:16]>/<xx>/<sha256(key)>`` (``xx``: the
first two hex digits), so that a namespace can be purged on its own and no
folder grows huge. Writes are atomic (a temporary file in the same folder, then
``os.replace``): a reader sees the old entry or the new one, never half of one.

Coalescing across processes uses ``fcntl.flock`` on ``<entry>.lock``: the
process calling the host holds it exclusively; the others block on a shared
lock, which the kernel grants the moment the holder closes the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from js_host_proxy.caches import CacheBackend, Entry, FailureLog, split_key

#: Bytes asked of os.read at a time: most entries fit in one read.
READ_SIZE = 1 << 16


class FileCache(CacheBackend):
    shared = True

    def __init__(self, root: str | os.PathLike[str], *, dirmode: int = 0o700, filemode: int = 0o600) -> None:
        self.root = Path(root)
        self.dirmode = dirmode
        self.filemode = filemode
        self._failed = FailureLog(f"file cache {str(self.root)!r}")
        self._ns_dirs: dict[str, str] = {}
        self._dirs_made: set[str] = set()
        self._paths: dict[str, str] = {}  # key -> path, for the keys read or written lately

    def path(self, key: str) -> str:
        path = self._paths.get(key)
        if path is None:
            namespace = split_key(key)[0]
            ns_dir = self._ns_dirs.get(namespace)
            if ns_dir is None:
                ns_dir = self._ns_dirs[namespace] = self.namespace_dir(namespace)
            digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
            path = os.path.join(ns_dir, digest[:2], digest)
            if len(self._paths) >= 4096:  # the hot keys come back at once
                self._paths.clear()
            self._paths[key] = path
        return path

    def namespace_dir(self, namespace: str) -> str:
        return str(self.root / f"ns-{hashlib.sha1(namespace.encode()).hexdigest()[:16]}")

    def get(self, key: str) -> bytes | None:
        # os.open/os.read: no file object to build, for the hit path's sake.
        try:
            fd = os.open(self.path(key), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as err:
            self._failed("read", err)
            return None
        try:
            data = os.read(fd, READ_SIZE)
            # A short read of a regular file is its end (entries are never written in place:
            # os.replace swaps in a complete file); a full one may have more behind it.
            if len(data) == READ_SIZE:
                chunks = [data]
                while chunk := os.read(fd, READ_SIZE):
                    chunks.append(chunk)
                data = b"".join(chunks)
            return data
        except OSError as err:
            self._failed("read", err)
            return None
        finally:
            os.close(fd)

    def set(self, key: str, value: bytes, ttl: float) -> None:
        # ttl is not needed here: the entry carries its own times, and `purge --expired` sweeps.
        path = self.path(key)
        try:
            try:
                self._write(path, value)
            except FileNotFoundError:  # the folder was purged since this process made it
                self._dirs_made.discard(os.path.dirname(path))
                self._write(path, value)
        except OSError as err:
            self._failed("write", err)

    def _write(self, path: str, value: bytes) -> None:
        folder = os.path.dirname(path)
        self._makedirs(folder)
        # A temporary name of this thread's, then os.replace: readers never see half an entry.
        tmp = f"{folder}/.tmp-{os.getpid()}-{threading.get_ident()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, self.filemode)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(value)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def delete(self, key: str) -> None:
        try:
            os.unlink(self.path(key))
        except FileNotFoundError:
            pass
        except OSError as err:
            self._failed("delete", err)

    def _makedirs(self, folder: str) -> None:
        if folder in self._dirs_made:
            return
        if not self.root.is_dir():
            self.root.mkdir(mode=self.dirmode, parents=True, exist_ok=True)
        if self.root.stat().st_uid != os.getuid():
            raise PermissionError(
                f"{str(self.root)!r} belongs to another user; remove it or set JS_HOST_PROXY_CACHE"
            )
        os.makedirs(folder, self.dirmode, exist_ok=True)
        self._dirs_made.add(folder)

    def purge(self, namespace: str | None = None, *, expired_only: bool = False) -> int:
        """Remove entries (of one namespace when given; only those past their stale
        window with ``expired_only``); returns how many."""
        if not self.root.is_dir():
            return 0
        folders = (
            [Path(self.namespace_dir(namespace))]
            if namespace is not None
            else [p for p in self.root.iterdir() if p.name.startswith("ns-")]
        )
        removed = 0
        for folder in folders:
            if expired_only:
                removed += self._sweep(folder)
                continue
            # Move the folder aside first: new entries go to a fresh folder at once.
            trash = self.root / f".purge-{os.getpid()}-{time.monotonic_ns()}"
            try:
                folder.rename(trash)
            except FileNotFoundError:
                continue
            removed += sum(1 for p in trash.rglob("*") if p.is_file() and _is_entry(p.name))
            shutil.rmtree(trash, ignore_errors=True)
        return removed

    def _sweep(self, folder: Path) -> int:
        removed = 0
        now = time.time()
        for path in folder.rglob("*"):
            if not (path.is_file() and _is_entry(path.name)):
                continue
            with contextlib.suppress(OSError):
                entry = Entry.loads(path.read_bytes())
                if entry is None or entry.fresh_until + self.stale_ttl < now:
                    path.unlink()
                    removed += 1
        return removed

    #: Set by the app from its config (JS_HOST_PROXY_STALE_TTL); used by `purge --expired`.
    stale_ttl = 86400.0

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[bool]:
        path = self.path(key) + ".lock"
        try:
            try:
                self._makedirs(os.path.dirname(path))
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, self.filemode)
            except FileNotFoundError:  # the folder was purged since this process made it
                self._dirs_made.discard(os.path.dirname(path))
                self._makedirs(os.path.dirname(path))
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, self.filemode)
        except OSError as err:
            self._failed("lock", err)
            yield True  # no lock to be had: go ahead uncoordinated
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _wait_released(fd, timeout)
            yield False
            return
        try:
            yield True
        finally:
            # Unlinked while held: processes blocked on this file wake when it closes,
            # newcomers create a fresh one; so lock files never pile up.
            with contextlib.suppress(OSError):
                os.unlink(path)
            os.close(fd)


def _is_entry(name: str) -> bool:
    return not name.endswith(".lock") and not name.startswith(".tmp-")


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
