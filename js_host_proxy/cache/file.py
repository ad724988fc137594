"""The file cache: one folder shared by all the workers of a machine.

Layout: ``<root>/ns-<sha1(namespace)[:16]>/v-<version>.f-<sha1(function)[:16]>/<sha256(key)>``
(:mod:`js_host_proxy.cache.file_folders`), so that a namespace, a code version or
a function is purged by moving folders aside. Writes are atomic (a temporary file with a random name, made
with ``O_EXCL`` in the same folder, then ``os.replace``): a reader sees the old
entry or the new one, never half of one.

Other local users are untrusted. The folders are private and held open per
process (:mod:`js_host_proxy.cache.file_folders`); every entry, temporary and
lock file is opened relative to its folder's descriptor with ``O_NOFOLLOW``, and
an entry's bytes are used only when it is a regular file of ours. A hit is one
``openat`` + ``fstat`` + ``read`` (+ a ``futimens`` recording the access, at most
every ``ACCESS_EVERY`` seconds per entry, when the size is bounded: see
:mod:`js_host_proxy.cache.file_size`).

Coalescing across processes uses ``fcntl.flock`` on ``<entry>.lock``
(:mod:`js_host_proxy.cache.file_lock`).
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Iterator

from js_host.private_dir import PrivateDir
from js_host_proxy.cache.base import CacheBackend, FailureLog
from js_host_proxy.cache.entry import fresh_until
from js_host_proxy.cache.file_folders import (
    SETTING,
    WHAT,
    Folders,
    function_suffix,
    is_current,
    namespace_folder,
    version_prefix,
)
from js_host_proxy.cache.file_lock import hold
from js_host_proxy.cache.file_purge import purge_folder
from js_host_proxy.cache.file_size import (
    RESCAN_EVERY,
    entry_size,
    locked_usage,
    read_usage,
    record_access,
    scan_and_evict,
)
from js_host_proxy.cache.keys import Selection

#: Bytes asked of os.read at a time: most entries fit in one read.
READ_SIZE = 1 << 16

# O_NONBLOCK: a FIFO put in place of an entry must not block the open (fstat refuses it).
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class FileCache(CacheBackend):
    shared = True

    def __init__(self, root: str | os.PathLike[str], *, max_size: int = 0) -> None:
        self.root = os.path.abspath(os.fspath(root))
        #: Bytes of entries kept at most (0: no bound); see file_size.py.
        self.max_size = max_size
        self._failed = FailureLog(f"file cache {self.root!r}")
        self._uid = os.getuid()
        self._folders = Folders(self.root, self._failed)
        #: Leftover temporary and lock files (and interrupted purges) the last purge removed.
        self.leftovers = 0

    #: Set by the app from its config (JS_HOST_PROXY_STALE_TTL); used by `purge --expired`.
    stale_ttl = 86400.0

    # -- the hit path ---------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        # Folders.slot's fast path, inlined: this is the hit path.
        slot = self._folders.hot.get(key)
        if slot is None or not is_current(slot):
            slot = self._folders.slot(key)
            if slot is None:
                return None
        shard, name = slot[1], slot[2]
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=shard.fd)
        except FileNotFoundError:
            return None
        except OSError as err:  # ELOOP: a link where an entry should be
            self._failed("read", err)
            return None
        try:
            info = os.fstat(fd)
            if info.st_uid != self._uid or not stat.S_ISREG(info.st_mode):
                self._failed("read", PermissionError(_not_ours(shard.join(name), info)))
                return None
            if self.max_size:
                record_access(fd, info, time.time())
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

    def stats(self) -> tuple[int | None, int | None]:
        """(entries, bytes) from the shared usage record (kept with a size bound only)."""
        root = self._folders.root_dir() if self.max_size else None
        return (None, None) if root is None else read_usage(root)

    def close(self) -> None:
        self._folders.close()

    # -- writes -----------------------------------------------------------------------------

    def set(self, key: str, value: bytes, ttl: float) -> None:
        # ttl is not needed here: the entry carries its own times, and `purge --expired` sweeps.
        if self.max_size and len(value) > self.max_size:
            return  # it would evict everything and then itself
        try:
            for attempt in range(2):
                slot = self._folders.slot(key)
                if slot is None:
                    return
                try:
                    if self.max_size:
                        self._write_bounded(slot[1], slot[2], value)
                    else:
                        slot[1].write_atomic(slot[2], value)
                    return
                except FileNotFoundError:  # the folder was purged since this process opened it
                    self._folders.stale(slot[0])
                    if attempt:
                        raise
        except OSError as err:
            self._failed("write", err)

    def _write_bounded(self, shard: PrivateDir, name: str, value: bytes) -> None:
        """Write the entry, then (holding ``.usage``) put it in place, count it, and evict
        when past the bound (see file_size.py)."""
        now = time.time()
        fd, temp = shard.create_temp(".tmp-")
        try:
            try:
                view = memoryview(value)
                while view:
                    view = view[os.write(fd, view) :]
                # mtime: the end of its freshness, for eviction (stale entries go first).
                os.utime(fd, ns=(int(now * 1e9), int(fresh_until(value, now) * 1e9)))
            finally:
                os.close(fd)
            root = self._folders.root_dir()
            if root is None:
                raise OSError(f"the cache folder {self.root!r} is unusable")
            with locked_usage(root) as usage:
                old = entry_size(shard, name)
                shard.replace(temp, name)
                if usage.total is not None:
                    usage.total += len(value) - old
                if usage.entries is not None and not old:
                    usage.entries += 1
                recount = usage.total is None or now - usage.scanned_at > RESCAN_EVERY
                if recount or usage.total > self.max_size:
                    removed = scan_and_evict(root, usage, self.max_size, self.stale_ttl)
                    if removed and self.evicted is not None:
                        self.evicted(removed)
        except BaseException:
            shard.unlink(temp, missing_ok=True)
            raise

    def delete(self, key: str) -> None:
        slot = self._folders.slot(key)
        if slot is None:
            return
        try:
            root = self._folders.root_dir() if self.max_size else None
            if root is None:
                slot[1].unlink(slot[2], missing_ok=True)
                return
            with locked_usage(root) as usage:
                old = entry_size(slot[1], slot[2])
                slot[1].unlink(slot[2], missing_ok=True)
                if usage.total is not None:
                    usage.total -= old
                if usage.entries is not None and old:
                    usage.entries -= 1
        except OSError as err:
            self._failed("delete", err)

    def _purge(self, selection: Selection, expired_only: bool) -> int:
        """Remove the entries in ``selection`` (only those past their stale window with
        ``expired_only``), and leftovers of killed processes (temporary files and unheld
        lock files older than a minute); returns how many entries."""
        try:
            root = PrivateDir.open(self.root, what=WHAT, setting=SETTING, create=False)
        except FileNotFoundError:
            return 0
        namespace, version, function = selection.namespace, selection.version, selection.function
        with root:
            folders = (
                [namespace_folder(namespace)]
                if namespace is not None
                else [n for n in root.listdir() if n.startswith("ns-")]
            )
            start = "" if version is None else version_prefix(version)
            end = "" if function is None else function_suffix(function)

            def named(group: str) -> bool:
                return group.startswith(start) and group.endswith(end)

            groups = None if version is None and function is None else named
            removed, self.leftovers = purge_folder(
                root, folders, expired_only=expired_only, stale_ttl=self.stale_ttl, groups=groups
            )
            if removed:
                with locked_usage(root) as usage:
                    usage.total = usage.entries = None  # counted again by the next write
        return removed

    # -- locks ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float) -> Iterator[bool]:
        with hold(self._folders, key, timeout, self._failed) as held:
            yield held


def _not_ours(path: str, info: os.stat_result) -> str:
    return (
        f"{path!r} is not a regular file of uid {os.getuid()} (uid {info.st_uid}, "
        f"{stat.filemode(info.st_mode)}): not used; remove it"
    )
