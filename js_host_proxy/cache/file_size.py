"""The file cache's size bound (``JS_HOST_PROXY_MAX_SIZE``), shared by every process.

What counts is the bytes of the entries (their files' sizes; temporary and lock
files are not entries). The bound holds across processes through one file,
``<root>/.usage``, that holds the total and is locked (``flock``) by every write:

- a write makes its temporary file outside the lock, then, holding it, replaces the
  entry and adds the difference to the total; when the total is past the bound it
  evicts, still holding it, down to ``LOW_WATER`` of the bound. So at any moment the
  entries are at most the bound plus the one entry being written, and the bound
  itself once the writer lets go. That is what "never over by more than one entry"
  costs: misses take turns at one lock for a few microseconds (an ``openat``, a
  ``flock``, a read and a write of ``.usage``), and the write that crosses the bound
  pays for a scan of every entry's metadata (one ``stat`` each, no read) while the
  other writers wait. Hits never take the lock.
- Eviction order: entries past their stale window first, then stale ones, then
  the least recently used. Both are in the file's times, so the scan reads no
  entry: an entry's *mtime* is set to the end of its freshness when it is written,
  and its *atime* to the time of its last hit, by the hit itself
  (``futimens``, at most once every ``ACCESS_EVERY`` seconds per entry). Kernel
  atime updates are not relied on (``relatime`` and ``noatime`` mounts skip them).
- The record also counts the entries (for the metrics, ``FileCache.stats``), kept as
  the total is; a record written before it had the count reads as "not known".
- The total is made true again by every scan, and scanned afresh when it is not
  known (a new cache folder, after a purge: purges mark it unknown) or older than
  ``RESCAN_EVERY`` seconds (a worker killed between its write and its count).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass

from js_host.private_dir import PrivateDir
from js_host_proxy.cache.base import LOW_WATER
from js_host_proxy.cache.file_purge import is_entry

logger = logging.getLogger(__name__)

USAGE = ".usage"
#: Seconds between two recordings of a hit in an entry's atime (the LRU's precision).
ACCESS_EVERY = 0.01
#: Bytes of the record in ``.usage``.
RECORD = 48
#: Seconds after which the total is counted again from the entries.
RESCAN_EVERY = 600.0

_USAGE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOCTTY
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def record_access(fd: int, info: os.stat_result, now: float) -> None:
    """Set the atime of the entry open as ``fd`` (its mtime kept) when it is older than
    ``ACCESS_EVERY``: the entry was just hit."""
    if now - info.st_atime >= ACCESS_EVERY:
        with contextlib.suppress(OSError):
            os.utime(fd, ns=(int(now * 1e9), info.st_mtime_ns))


@dataclass
class Usage:
    """The shared total, read and written while ``.usage`` is locked."""

    fd: int
    total: int | None  # None: not known, count it
    scanned_at: float
    entries: int | None = None  # None: not known (the next scan counts them)

    def save(self) -> None:
        # One fixed-width record rewritten in place: an ftruncate per write cost milliseconds.
        if self.total is None:
            text = b"unknown"
        else:
            text = b"%d %.0f" % (self.total, self.scanned_at)
            if self.entries is not None:
                text += b" %d" % self.entries
        os.pwrite(self.fd, text.ljust(RECORD - 1) + b"\n", 0)


def parse_usage(record: bytes) -> tuple[int | None, float, int | None]:
    """(total, scanned_at, entries) of a ``.usage`` record; (None, 0.0, None) when not known."""
    try:
        fields = record.split()
        total, scanned_at = int(fields[0]), float(fields[1])
    except (ValueError, IndexError):
        return None, 0.0, None
    entries = int(fields[2]) if len(fields) > 2 and fields[2].isdigit() else None
    return total, scanned_at, entries


def read_usage(root: PrivateDir) -> tuple[int | None, int | None]:
    """(entries, bytes) as the record says now, without its lock (one ``pread``: a writer
    rewrites it in one ``pwrite``); (None, None) when not known or there is none."""
    try:
        fd = root.open_file(USAGE, os.O_RDONLY | os.O_NOCTTY)
    except FileNotFoundError:
        return None, None
    try:
        total, _, entries = parse_usage(os.pread(fd, RECORD, 0))
    finally:
        os.close(fd)
    return (entries, total) if total is not None else (None, None)


@contextlib.contextmanager
def locked_usage(root: PrivateDir) -> Iterator[Usage]:
    """``.usage`` of the cache ``root``, locked exclusively while the body runs; saved after."""
    fd = root.open_file(USAGE, _USAGE_FLAGS)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        total, scanned_at, entries = parse_usage(os.pread(fd, RECORD, 0))
        usage = Usage(fd, total, scanned_at, entries)
        yield usage
        usage.save()
    finally:
        os.close(fd)  # releases the lock


@dataclass(frozen=True)
class _Found:
    order: tuple[int, float]  # (tier: 0 expired, 1 stale, 2 fresh; last access)
    size: int
    folder: int  # index into the scan's open folders
    name: str


def scan_and_evict(root: PrivateDir, usage: Usage, max_size: int, stale_ttl: float) -> int:
    """Count every entry under ``root``; when past ``max_size``, remove entries in eviction
    order down to ``LOW_WATER`` of it. Sets ``usage``; returns how many were removed."""
    now = time.time()
    found: list[_Found] = []
    folders: list[int] = []
    total = 0
    try:
        for ns_name in root.listdir():
            if not ns_name.startswith("ns-"):
                continue
            ns_fd = _open_dir(root.fd, ns_name)
            if ns_fd is None:
                continue
            try:
                for group in os.scandir(ns_fd):
                    if not group.is_dir(follow_symlinks=False):
                        continue
                    group_fd = _open_dir(ns_fd, group.name)
                    if group_fd is None:
                        continue
                    folders.append(group_fd)
                    for item in os.scandir(group_fd):
                        if not is_entry(item.name):
                            continue
                        try:
                            info = item.stat(follow_symlinks=False)
                        except FileNotFoundError:
                            continue
                        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
                            continue  # not ours: never counted, never removed (a purge says so)
                        tier = 0 if info.st_mtime + stale_ttl < now else 1 if info.st_mtime < now else 2
                        found.append(_Found((tier, info.st_atime), info.st_size, len(folders) - 1, item.name))
                        total += info.st_size
            finally:
                os.close(ns_fd)
        removed = 0
        if total > max_size:
            target = int(max_size * LOW_WATER)
            for item in sorted(found, key=lambda f: f.order):
                if total <= target:
                    break
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(item.name, dir_fd=folders[item.folder])
                    removed += 1
                total -= item.size
            logger.info(
                "file cache %r: removed %d entries to stay under %d bytes", root.path, removed, max_size
            )
        usage.total = total
        usage.scanned_at = now
        usage.entries = len(found) - removed
        return removed
    finally:
        for fd in folders:
            os.close(fd)


def _open_dir(parent_fd: int, name: str) -> int | None:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError:  # gone (a purge), or a link (ELOOP): not ours to count
        return None


def entry_size(folder: PrivateDir, name: str) -> int:
    """The size of the entry ``name`` in ``folder`` (0 when there is none of ours)."""
    try:
        info = folder.lstat(name)
    except FileNotFoundError:
        return 0
    return info.st_size if stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() else 0
