"""Development: tell, cheaply and off the request path, whether files have changed.

:class:`FileWatcher` is given files with the mtimes of a known version of them
(the modules a host loaded, as it reports them) and says whether any of them is
no longer that version. :meth:`FileWatcher.changed` never stats thousands of
files: it is meant to run before every request (see :mod:`js_host.reloader`).

Two ways to watch, chosen when watching starts:

- Linux: inotify (through ``inotify_simple``, which adds no thread of its own), on
  the folders of the files (one watch per folder, so that thousands of files in a
  few folders take a few watches, and a file replaced by an editor's rename stays
  watched). The kernel queues the events as the edit happens; ``changed()`` reads
  them without blocking (one system call when there are none), so the first check
  after an edit sees it. A library that hands events over from a thread of its own
  (watchdog) would let a request that follows an edit at once miss it.
- Elsewhere, when inotify cannot be used (its limits reached), or with
  ``JS_HOST_WATCH_POLLING=1`` in the environment (a Docker Desktop bind mount or
  a network filesystem, whose edits send no events): a daemon thread stats the
  files every ``interval`` seconds and sets a flag that ``changed()`` reads.

Either way an event is only a hint: a file counts as changed once its mtime is
not the one given (so a ``chmod``, or an editor's swap file in the same folder,
changes nothing). A watcher belongs to the process that started it: in a forked
child ``changed()`` is True until :meth:`FileWatcher.watch` starts afresh there.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import weakref
from collections.abc import Mapping
from typing import Optional

logger = logging.getLogger(__name__)

#: Seconds between two passes of the polling thread.
POLL_INTERVAL = 0.5
#: The environment variable that asks for polling instead of inotify ("1").
POLLING_VARIABLE = "JS_HOST_WATCH_POLLING"

try:  # Linux only (an install requirement there)
    from inotify_simple import INotify
    from inotify_simple import flags as inotify_flags
except ImportError:  # pragma: no cover - other platforms poll
    INotify = None  # type: ignore[assignment,misc]

# What a folder's watch reports. MODIFY is left out: a log file kept open in the
# project's folder would send one event per line; an edit ends with a close
# (CLOSE_WRITE), a rename (MOVED_TO) or an mtime set by hand (ATTRIB). CREATE: a watched
# path that did not exist and appears by a link or mknod sends nothing else (the mtime
# comparison still decides whether it counts).
_FOLDER_MASK = (
    (
        inotify_flags.ATTRIB
        | inotify_flags.CREATE
        | inotify_flags.CLOSE_WRITE
        | inotify_flags.MOVED_FROM
        | inotify_flags.MOVED_TO
        | inotify_flags.DELETE
        | inotify_flags.ONLYDIR
    )
    if INotify is not None
    else 0
)

Mtimes = dict[str, Optional[int]]


def mtime_ns(path: str) -> int | None:
    """The mtime of ``path`` in ns (None: it cannot be stat'ed)."""
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


class FileWatcher:
    """Watches files for a change from given mtimes. Thread-safe."""

    def __init__(self, *, interval: float = POLL_INTERVAL, polling: bool | None = None) -> None:
        #: Seconds between two passes of the polling thread.
        self.interval = interval
        # None: polling only where inotify cannot be used, or when the environment asks for it.
        self._polling = polling
        self._lock = threading.Lock()
        self._reference: Mtimes = {}  # path -> the mtime it should have
        self._names: dict[int, tuple[str, set[str]]] = {}  # inotify wd -> (folder, watched names)
        self._inotify: INotify | None = None  # the inotify instance
        self._thread: threading.Thread | None = None  # the polling thread
        self._stop = threading.Event()
        self._pid: int | None = None  # the process watching (None: not watching)
        #: The files seen changed (empty: none yet).
        self.changed_files: list[str] = []
        _watchers.add(self)

    @property
    def mode(self) -> str:
        """How it watches: "inotify", "polling" or "none" (not started in this process)."""
        if self._pid != os.getpid():
            return "none"
        return "inotify" if self._inotify is not None else "polling"

    def __len__(self) -> int:
        """How many files it watches."""
        return len(self._reference)

    def __contains__(self, path: object) -> bool:
        """Whether it watches ``path`` (absolute)."""
        return path in self._reference

    def watch(self, mtimes: Mapping[str, int | str | None]) -> None:
        """Watch the files of ``mtimes`` ({path: the mtime in ns it should have, None for a file
        that should not exist}) instead of the ones watched so far; forgets earlier changes. A file
        that differs already counts as changed at once."""
        reference = {os.path.abspath(path): None if m is None else int(m) for path, m in mtimes.items()}
        # The watches are built outside the lock (an add_watch per folder), then swapped in:
        # changed(), which takes the lock, never waits for them.
        built = None if self._polling_wanted() else self._watch_folders(reference)
        with self._lock:
            if self._pid != os.getpid():
                self._forget_parent()
            self._reference = reference
            self.changed_files = []
            self._close_inotify()
            if built is not None:
                self._inotify, self._names = built
            if self._inotify is None:
                self._ensure_thread()
        # After the watches: an edit made before them (since the mtimes were taken) counts too.
        self._compare(list(reference))

    def changed(self) -> bool:
        """Whether a watched file has changed (cheap: no stat unless an event names a watched
        file). Stays True until the next :meth:`watch`."""
        if self.changed_files:
            return True
        if self._pid != os.getpid():
            return True  # a forked child: nothing watched in this process yet
        if self._inotify is not None:
            self._read_events()
        return bool(self.changed_files)

    def __del__(self) -> None:
        # An inotify instance per watcher, and a user may have few (fs.inotify.max_user_instances).
        if self._inotify is not None and self._pid == os.getpid():
            self._inotify.close()
            self._inotify = None

    def close(self) -> None:
        """Stop watching (the thread ends, the inotify instance is closed)."""
        with self._lock:
            self._stop.set()
            if self._pid == os.getpid():
                self._close_inotify()
            self._pid = None

    # Inotify

    def _polling_wanted(self) -> bool:
        if self._polling is not None:
            return self._polling
        wanted = os.environ.get(POLLING_VARIABLE, "") not in ("", "0")
        return wanted or INotify is None or not sys.platform.startswith("linux")

    def _watch_folders(self, reference: Mtimes) -> tuple[INotify, dict[int, tuple[str, set[str]]]] | None:
        """A new inotify instance watching the folders of ``reference``, and its watches (wd ->
        (folder, watched names)); None when inotify cannot: the caller polls instead."""
        folders: dict[str, set[str]] = {}
        for path in reference:
            folder, name = os.path.split(path)
            folders.setdefault(folder, set()).add(name)
        try:
            inotify = INotify(nonblocking=True)
        except OSError as err:
            logger.info("Watching files by polling every %g s: no inotify (%s)", self.interval, err)
            return None
        names: dict[int, tuple[str, set[str]]] = {}
        for folder, watched in folders.items():
            try:
                wd = inotify.add_watch(folder, _FOLDER_MASK)
            except (FileNotFoundError, NotADirectoryError):
                continue  # the folder has gone, and its files (compared)
            except OSError as err:
                logger.warning(
                    "Watching files by polling every %g s: inotify cannot watch %s (%s; on Linux raise "
                    "fs.inotify.max_user_watches)",
                    self.interval,
                    folder,
                    err,
                )
                inotify.close()
                return None
            names[wd] = (folder, watched)
        return inotify, names

    def _close_inotify(self) -> None:
        if self._inotify is not None:
            self._inotify.close()
        self._inotify = None
        self._names = {}

    def _read_events(self) -> None:
        # The events are compared with the mtimes before the lock is released: a thread calling
        # changed() meanwhile would find the kernel's queue empty and take the edit for none,
        # and its request would reach the host the edit is about to restart.
        with self._lock:
            inotify = self._inotify
            if inotify is None:
                return
            try:
                events = inotify.read(timeout=0)  # what the kernel has queued; never waits
            except OSError:
                return
            candidates: set[str] = set()
            for event in events:
                if event.mask & inotify_flags.Q_OVERFLOW:
                    candidates = set(self._reference)  # events lost: compare them all, once
                    break
                watched = self._names.get(event.wd)
                if watched is not None and event.name in watched[1]:
                    candidates.add(os.path.join(watched[0], event.name))
            changed = _changed_among(sorted(candidates), self._reference)
            if changed:
                self.changed_files = self.changed_files + changed

    # Polling

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop = threading.Event()
        # The thread holds the watcher weakly: it ends once nothing else holds it.
        self._thread = threading.Thread(
            target=_poll, args=(weakref.ref(self), self._stop), name="js-host file watcher", daemon=True
        )
        self._thread.start()

    # Both

    def _compare(self, paths: list[str]) -> None:
        """Record the files of ``paths`` whose mtime is not the reference's."""
        reference = self._reference
        changed = _changed_among(paths, reference)
        if changed:
            with self._lock:
                if reference is self._reference:  # not watching other files meanwhile
                    self.changed_files = self.changed_files + changed

    def _forget_parent(self) -> None:
        """In a forked child (under the lock): the parent's inotify instance and thread are the
        parent's (the child's copy of the descriptor is closed; the parent's stays open)."""
        self._close_inotify()
        self._thread = None
        self._stop = threading.Event()
        self._pid = os.getpid()


def _changed_among(paths: list[str], reference: Mtimes) -> list[str]:
    """The files of ``paths`` that ``reference`` watches and whose mtime is not its own."""
    return [path for path in paths if path in reference and mtime_ns(path) != reference[path]]


def _poll(ref: weakref.ref[FileWatcher], stop: threading.Event) -> None:
    """The polling thread: a pass over the files every ``interval`` seconds, while the watcher
    polls in this process and has not seen a change yet."""
    while True:
        watcher = ref()
        if watcher is None:
            return
        interval = watcher.interval
        del watcher  # not held while waiting
        if stop.wait(interval):
            return
        watcher = ref()
        if watcher is None:
            return
        if watcher._inotify is None and not watcher.changed_files and watcher._pid == os.getpid():
            watcher._compare(list(watcher._reference))
        del watcher


_watchers: weakref.WeakSet[FileWatcher] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # The polling threads are daemons; stopping them at exit keeps them off a dying interpreter.
    for watcher in list(_watchers):
        watcher.close()
