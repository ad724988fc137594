"""The file cache's folders, held open per process and checked again every second.

The root, namespace and shard folders are :class:`~js_host.private_dir.PrivateDir`\\ s
(no link on the way, no folder others can change above, ours with no group/other
access). A process keeps their descriptors, so that a hit is one ``openat`` in the
shard folder (see :mod:`js_host_proxy.cache.file`).

Layout: ``<root>/ns-<sha1(namespace)[:16]>/v-<version>.f-<sha1(function)[:16]>/<sha256(key)>``:
a namespace, a version or a function is purged by moving its folders aside (a
rename each), and a hit is still one ``openat`` in a held folder. ("Shard" below is
such a function folder.)

A purge moves namespace or function folders aside, and a user may remove or replace the cache
folder. So at most every ``REVALIDATE_EVERY`` seconds (and at once when a write
finds its folder gone) the root is opened again by its path, with every check,
and each namespace folder again in it (and a function folder in its namespace's when
a key's slot is looked up again): a folder no longer at its path is dropped
and the one there now is used, so nobody keeps reading a purged folder. A folder
that fails a check makes the cache unusable until the next look (calls are served
uncached; the warning names the folder and ``JS_HOST_PROXY_CACHE``).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable

from js_host.exceptions import ConfigError
from js_host.private_dir import PrivateDir
from js_host_proxy.cache.keys import split_key

#: Seconds between two checks that the folders a process holds are still the cache's.
REVALIDATE_EVERY = 1.0
#: Seconds a dropped folder's descriptor stays open (a thread may be about to use it).
RETIRED_FOR = 30.0
#: How many keys' folders are remembered (the hot keys come back at once when cleared).
HOT_KEYS = 4096
#: Function folders held open per namespace (old versions' are dropped when there are more).
HELD_GROUPS = 256
WHAT = "proxy file cache"
SETTING = "JS_HOST_PROXY_CACHE"


class Namespace:
    """A namespace folder held open, its shard folders (opened on demand), and when
    it was last found at its path. ``alive`` turns false when it is dropped."""

    __slots__ = ("alive", "checked_at", "dir", "name", "shards")

    def __init__(self, name: str, folder: PrivateDir, checked_at: float) -> None:
        self.name = name
        self.dir = folder
        self.shards: dict[str, PrivateDir] = {}
        self.checked_at = checked_at
        self.alive = True


#: (namespace, shard folder, entry name) of a key.
Slot = tuple[Namespace, PrivateDir, str]


def namespace_folder(namespace: str) -> str:
    return f"ns-{hashlib.sha1(namespace.encode()).hexdigest()[:16]}"


def version_prefix(version: str) -> str:
    """What the names of a version's function folders start with."""
    return f"v-{version}.f-"


def function_suffix(name: str) -> str:
    """What the names of a function's folders (one per version) end with."""
    return f".f-{hashlib.sha1(name.encode('utf-8', 'surrogateescape')).hexdigest()[:16]}"


def group_folder(version: str, name: str) -> str:
    """The folder of one function's entries under one code version, in its namespace's."""
    return version_prefix(version) + function_suffix(name)[len(".f-") :]


def split_group(folder: str) -> tuple[str, str] | None:
    """(version, function digest) of a function folder's name; None for other names."""
    if not folder.startswith("v-") or ".f-" not in folder:
        return None
    version, function = folder[2:].rsplit(".f-", 1)
    return version, function


class Folders:
    """The folders of the cache at ``root`` that this process holds.

    ``hot`` maps the keys used lately to their :data:`Slot`; a slot may be used
    while ``slot[0].alive`` and younger than ``REVALIDATE_EVERY`` (see
    :func:`is_current`), else :meth:`slot` finds it again.
    """

    def __init__(self, root: str, failed: Callable[[str, BaseException], None]) -> None:
        self.root = root
        self.hot: dict[str, Slot] = {}
        self._failed = failed
        self._lock = threading.Lock()
        self._root: PrivateDir | None = None
        self._root_checked_at = 0.0
        self._unusable_until = 0.0
        self._namespaces: dict[str, Namespace] = {}
        self._retired: list[tuple[float, PrivateDir]] = []

    def slot(self, key: str) -> Slot | None:
        """Where ``key``'s entry lives; None while the cache is unusable (or for a string
        that is not a key)."""
        slot = self.hot.get(key)
        if slot is not None and is_current(slot):
            return slot
        try:
            namespace, version, name, _ = split_key(key)
        except ValueError:
            return None  # not a key of keys.py: nowhere to store it
        group = group_folder(version, name)
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
        with self._lock:
            now = time.monotonic()
            if now < self._unusable_until:
                return None
            self._close_retired(now)
            for attempt in range(2):
                try:
                    ns = self._namespace(namespace, now)
                    shard = ns.shards.get(group)
                    if shard is not None and not _at_name(shard, ns.dir, group):
                        # A purge of this version or function moved it aside.
                        self._retired.append((now, ns.shards.pop(group)))
                        self.hot = {}
                        shard = None
                    if shard is None:
                        if len(ns.shards) >= HELD_GROUPS:  # mostly old versions': let them go
                            self._retired.extend((now, d) for d in ns.shards.values())
                            ns.shards = {}
                            self.hot = {}
                        shard = ns.shards[group] = ns.dir.subdir(group)
                    break
                except FileNotFoundError as err:
                    # A folder held here was removed (a purge, `rm -r`): open them all again, once.
                    self._drop_all(now)
                    if attempt:
                        self._unusable(err, now)
                        return None
                except (ConfigError, OSError) as err:
                    self._unusable(err, now)
                    return None
            slot = (ns, shard, digest)
            if len(self.hot) >= HOT_KEYS:
                self.hot = {}
            self.hot[key] = slot
            return slot

    def root_dir(self) -> PrivateDir | None:
        """The cache folder, held open (checked again every second); None while unusable."""
        with self._lock:
            now = time.monotonic()
            if now < self._unusable_until:
                return None
            try:
                return self._open_root(now)
            except (ConfigError, OSError) as err:
                self._unusable(err, now)
                return None

    def stale(self, ns: Namespace) -> None:
        """A write found ``ns``'s folder gone: look again at the next call."""
        with self._lock:
            if self._namespaces.get(ns.name) is ns:
                self._retire_namespace(ns, time.monotonic())
            self._root_checked_at = 0.0

    def close(self) -> None:
        with self._lock:
            now = time.monotonic()
            self._drop_all(now)
            self._close_retired(now, everything=True)

    def _namespace(self, namespace: str, now: float) -> Namespace:
        root = self._open_root(now)
        ns = self._namespaces.get(namespace)
        if ns is not None and now - ns.checked_at < REVALIDATE_EVERY:
            return ns
        fresh = root.subdir(namespace_folder(namespace))  # checked again: still ours, still private
        if ns is not None and _same_dir(fresh, ns.dir):
            fresh.close()
            ns.checked_at = now
            return ns
        if ns is not None:  # moved aside by a purge: a new folder is at the path now
            self._retire_namespace(ns, now)
        ns = self._namespaces[namespace] = Namespace(namespace, fresh, now)
        return ns

    def _open_root(self, now: float) -> PrivateDir:
        if self._root is not None and now - self._root_checked_at < REVALIDATE_EVERY:
            return self._root
        # The whole path again: a folder on the way (or the root) may have changed since.
        fresh = PrivateDir.open(self.root, what=WHAT, setting=SETTING)
        if self._root is not None and _same_dir(fresh, self._root):
            fresh.close()
        else:
            self._drop_all(now)
            self._root = fresh
        self._root_checked_at = now
        return self._root

    def _unusable(self, err: BaseException, now: float) -> None:
        """Serve uncached for a while: a folder is missing, not private, or not a folder."""
        self._drop_all(now)
        self._unusable_until = now + REVALIDATE_EVERY
        self._failed("open", err)

    def _retire_namespace(self, ns: Namespace, now: float) -> None:
        ns.alive = False
        if self._namespaces.get(ns.name) is ns:
            del self._namespaces[ns.name]
        self._retired.extend((now, d) for d in (*ns.shards.values(), ns.dir))

    def _drop_all(self, now: float) -> None:
        for ns in list(self._namespaces.values()):
            self._retire_namespace(ns, now)
        self.hot = {}
        if self._root is not None:
            self._retired.append((now, self._root))
            self._root = None

    def _close_retired(self, now: float, *, everything: bool = False) -> None:
        # Closed late: another thread may be between reading a slot and its openat.
        keep = []
        for retired_at, folder in self._retired:
            if everything or now - retired_at >= RETIRED_FOR:
                folder.close()
            else:
                keep.append((retired_at, folder))
        self._retired = keep


def is_current(slot: Slot) -> bool:
    """Whether ``slot`` may be used without looking at the folders again."""
    return slot[0].alive and time.monotonic() - slot[0].checked_at < REVALIDATE_EVERY


def _same_dir(a: PrivateDir, b: PrivateDir) -> bool:
    x, y = os.fstat(a.fd), os.fstat(b.fd)
    return (x.st_dev, x.st_ino) == (y.st_dev, y.st_ino)


def _at_name(folder: PrivateDir, parent: PrivateDir, name: str) -> bool:
    """Whether ``folder`` is still the one named ``name`` in ``parent``."""
    try:
        at = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    info = os.fstat(folder.fd)
    return (info.st_dev, info.st_ino) == (at.st_dev, at.st_ino)


def is_at(fd: int, dir_fd: int, name: str) -> bool:
    """Whether the file open as ``fd`` is the one named ``name`` in ``dir_fd``."""
    try:
        at = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    info = os.fstat(fd)
    return (info.st_dev, info.st_ino) == (at.st_dev, at.st_ino)
