"""Purging the file cache (``js-host-proxy purge``): namespace folders (or a version's
or a function's folders in them) moved aside and removed, expired entries swept,
and what killed processes left behind.

A killed worker leaves its temporary file (``.tmp-*``) and its lock file
(``<entry>.lock``); a killed purge leaves a ``.purge-<time>-*`` folder. Every
purge removes those older than ``LEFTOVER_AGE`` seconds, except lock files that
someone holds (a purge removes a lock file only while holding it itself; the
workers check that the file they locked is still at its path, see
:mod:`js_host_proxy.cache.file_lock`).

Every removal is relative to a held folder descriptor and never follows a link:
a link is removed itself or left alone, whatever it points to is never touched.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterable

from js_host.exceptions import ConfigError
from js_host.private_dir import PrivateDir
from js_host_proxy.cache.entry import Entry
from js_host_proxy.cache.file_folders import is_at

logger = logging.getLogger(__name__)

#: Seconds after which a temporary or unheld lock file is a leftover of a killed process.
LEFTOVER_AGE = 60.0
TRASH_PREFIX = ".purge-"

_ENTRY = re.compile(r"[0-9a-f]{64}\Z")
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def purge_folder(
    root: PrivateDir,
    folders: Iterable[str],
    *,
    expired_only: bool,
    stale_ttl: float,
    groups: Callable[[str], bool] | None = None,
) -> tuple[int, int]:
    """Purge the namespace ``folders`` of the cache ``root`` (only their function folders
    for which ``groups(name)`` is true, when given): (entries, leftovers) removed."""
    removed = leftovers = 0
    now = time.time()
    for name in folders:
        if expired_only:
            entries, others = _sweep(root, name, now, stale_ttl, groups)
        elif groups is None:
            entries, others = _move_aside_and_remove(root, root, name, now, depth=2)
        else:
            entries = others = 0
            try:
                ns = root.subdir(name, create=False)
            except FileNotFoundError:
                continue
            except ConfigError as err:  # a link or a file where a namespace folder should be
                logger.warning("js-host-proxy purge: skipping %r: %s", root.join(name), err)
                continue
            with ns:
                for group in ns.listdir():
                    if groups(group):
                        counts = _move_aside_and_remove(root, ns, group, now, depth=1)
                        entries += counts[0]
                        others += counts[1]
        removed += entries
        leftovers += others
    for name in root.listdir():
        if _trash_age(name, now) >= LEFTOVER_AGE:  # an interrupted purge's
            leftovers += sum(_remove(root, name))
    return removed, leftovers


def _move_aside_and_remove(
    root: PrivateDir, parent: PrivateDir, name: str, now: float, *, depth: int
) -> tuple[int, int]:
    """Move the folder ``name`` of ``parent`` into ``root`` under a trash name, then remove
    it: (entries, other files). Moved first, so new entries go to a fresh folder at once."""
    trash = f"{TRASH_PREFIX}{int(now)}-{secrets.token_hex(4)}"
    try:
        os.rename(name, trash, src_dir_fd=parent.fd, dst_dir_fd=root.fd)
    except FileNotFoundError:
        return 0, 0
    return _remove(root, trash, depth=depth)


def is_entry(name: str) -> bool:
    return _ENTRY.match(name) is not None


def _trash_age(name: str, now: float) -> float:
    match = re.match(rf"{re.escape(TRASH_PREFIX)}(\d+)-", name)
    return now - int(match.group(1)) if match else -1.0


def _remove(root: PrivateDir, name: str, *, depth: int = 2) -> tuple[int, int]:
    """Remove the folder ``name`` of ``root`` (a link itself only), whose entries are
    ``depth`` levels down (2: a namespace's, 1: a function's): (entries, other files)."""
    try:
        info = root.lstat(name)
        if not stat.S_ISDIR(info.st_mode):
            root.unlink(name, missing_ok=True)
            return 0, 1
        entries = _count_entries(root.fd, name, depth)
        files = root.remove_tree(name)
    except OSError as err:  # e.g. a worker still writing into it: the next purge finishes it
        logger.warning("js-host-proxy purge: could not remove all of %r: %s", root.join(name), err)
        return 0, 0
    return entries, files - entries


def _count_entries(parent_fd: int, name: str, depth: int) -> int:
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    try:
        if depth <= 1:
            return sum(1 for e in os.scandir(fd) if is_entry(e.name) and e.is_file(follow_symlinks=False))
        return sum(
            _count_entries(fd, sub.name, depth - 1)
            for sub in os.scandir(fd)
            if sub.is_dir(follow_symlinks=False)
        )
    finally:
        os.close(fd)


def _sweep(
    root: PrivateDir, name: str, now: float, stale_ttl: float, groups: Callable[[str], bool] | None
) -> tuple[int, int]:
    """Remove the entries past their stale window, and leftovers: (entries, leftovers)."""
    try:
        ns = root.subdir(name, create=False)
    except FileNotFoundError:
        return 0, 0
    except ConfigError as err:  # a link or a file where a namespace folder should be: left alone
        logger.warning("js-host-proxy purge: skipping %r: %s", root.join(name), err)
        return 0, 0
    removed = leftovers = 0
    with ns:
        for shard_name in ns.listdir():
            if groups is not None and not groups(shard_name):
                continue
            try:
                shard = ns.subdir(shard_name, create=False)
            except FileNotFoundError:
                continue
            except ConfigError as err:  # a link or a file where a shard should be: left alone
                logger.warning("js-host-proxy purge: skipping %r: %s", ns.join(shard_name), err)
                continue
            with shard:
                for entry in shard.listdir():
                    if is_entry(entry):
                        removed += _expire(shard, entry, now, stale_ttl)
                    elif entry.startswith(".tmp-"):
                        leftovers += _remove_old_temp(shard, entry, now)
                    elif entry.endswith(".lock") and is_entry(entry[: -len(".lock")]):
                        leftovers += _remove_unheld_lock(shard, entry, now)
    return removed, leftovers


def _open(shard: PrivateDir, name: str) -> int | None:
    """``name`` open for reading when it is a regular file of ours, else None."""
    try:
        return shard.open_file(name, _READ_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as err:  # a link (ELOOP) or someone else's file: never followed, left alone
        logger.warning("js-host-proxy purge: leaving %r alone: %s", shard.join(name), err)
        return None


def _expire(shard: PrivateDir, name: str, now: float, stale_ttl: float) -> int:
    fd = _open(shard, name)
    if fd is None:
        return 0
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        entry = Entry.loads(b"".join(chunks))
        if entry is not None and entry.fresh_until + stale_ttl >= now:
            return 0
        if not is_at(fd, shard.fd, name):  # a worker stored a new entry meanwhile
            return 0
        shard.unlink(name, missing_ok=True)
        return 1
    finally:
        os.close(fd)


def _remove_old_temp(shard: PrivateDir, name: str, now: float) -> int:
    try:
        info = shard.lstat(name)
    except FileNotFoundError:
        return 0
    if stat.S_ISDIR(info.st_mode) or now - info.st_mtime < LEFTOVER_AGE:
        return 0
    shard.unlink(name, missing_ok=True)  # a link is removed itself, never followed
    return 1


def _remove_unheld_lock(shard: PrivateDir, name: str, now: float) -> int:
    try:
        if now - shard.lstat(name).st_mtime < LEFTOVER_AGE:
            return 0
    except FileNotFoundError:
        return 0
    fd = _open(shard, name)
    if fd is None:
        return 0
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a worker holds it (or waits on it): never removed
            return 0
        # Removed while we hold it; a worker that opened it before checks, once it has the
        # lock, that its file is still at the path (and takes the new one).
        if not is_at(fd, shard.fd, name):
            return 0
        shard.unlink(name, missing_ok=True)
        return 1
    finally:
        os.close(fd)
