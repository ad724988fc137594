"""The runtime directory and the manager secret, shared with the Node manager.

Both sides implement the same get-or-create, so whichever starts first creates
the secret and the other reads it:

- runtime dir: ``$JS_HOST_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/js-host``, else
  ``<$TMPDIR or /tmp>/js-host-<uid>`` (``tempfile.gettempdir()`` is not used on
  purpose: Node's ``os.tmpdir()`` differs from it). It is opened as a
  :class:`~js_host.private_dir.PrivateDir`: never through a link, ours, mode
  0700, under folders that no other user can change. When the default place is
  unusable (another user made it, or made it a link) the error names the path
  and the settings to use: there is no fallback, as every process of the user
  (Python and Node) must find the same directory;
- secret: ``<runtime dir>/manager.secret``, mode 0600, 64 lowercase hex chars
  (read with surrounding whitespace stripped, e.g. a newline added by an editor),
  created under a random temporary name (``O_EXCL``) and ``link()``-ed into place.

It also holds the lock files that serialise work on one config file between
the processes of one machine (:class:`MachineLock`): host starts
(:func:`host_start_lock`) and the development reloader's record; and it reads
the end of the logfiles that managed hosts write there (:func:`tail`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import stat
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

from .exceptions import ConfigError
from .private_dir import PrivateDir

SECRET_FILENAME = "manager.secret"
#: How the runtime directory is named in error messages (the Node side says the same).
RUNTIME_DIR_WHAT = "js-host runtime directory"

#: The most a MachineLock record may hold (bytes).
_RECORD_LIMIT = 1 << 20

_lock = threading.Lock()
_cached: dict[str, str] = {}


def runtime_dir() -> str:
    """The runtime directory's absolute path (not created).

    A relative ``JS_HOST_RUNTIME_DIR`` (or ``TMPDIR``) is taken from the current
    directory, so that node processes started elsewhere get the same directory
    when given this path.
    """
    explicit = os.environ.get("JS_HOST_RUNTIME_DIR")
    if explicit:
        return os.path.abspath(explicit)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return os.path.abspath(os.path.join(xdg, "js-host"))
    tmpdir = os.environ.get("TMPDIR") or "/tmp"
    return os.path.abspath(os.path.join(tmpdir, f"js-host-{os.getuid()}"))


def runtime_dir_setting() -> str:
    """What the user can set to move the runtime directory (named in error messages)."""
    if os.environ.get("JS_HOST_RUNTIME_DIR") or os.environ.get("XDG_RUNTIME_DIR"):
        return "JS_HOST_RUNTIME_DIR"
    return "JS_HOST_RUNTIME_DIR (or XDG_RUNTIME_DIR)"


def open_runtime_dir() -> PrivateDir:
    """The runtime directory, created if needed and checked private; the caller closes it.

    Raises :class:`ConfigError` naming the path, what is wrong and the setting
    to use when it is unsafe (see :class:`~js_host.private_dir.PrivateDir`).
    """
    return PrivateDir.open(runtime_dir(), what=RUNTIME_DIR_WHAT, setting=runtime_dir_setting())


def ensure_runtime_dir() -> str:
    """Create the runtime directory (mode 0700) and check that it is private; returns its path."""
    with open_runtime_dir() as directory:
        return directory.path


class MachineLock:
    """An exclusive lock (``flock``) shared by the processes of this machine, for one config file.

    The lock is the file ``<runtime dir>/<purpose>-<sha1 of config_file>.lock``
    (``.json`` with ``record``). It is one name shared by every process, so no
    random name: the directory is private, and the file is opened without
    following a link and only if it is a private regular file of this user's.
    The lock is released when the block ends, or when the process dies.

    With ``record``, the file also holds a small JSON object, read into
    :attr:`record` when the lock is taken and written back (in place, as the
    file itself is the lock) when the block ends, if it changed.
    """

    def __init__(self, purpose: str, config_file: str, *, record: bool = False) -> None:
        key = hashlib.sha1(config_file.encode()).hexdigest()[:16]
        self.name = f"{purpose}-{key}{'.json' if record else '.lock'}"
        #: The lock file's path (known once the lock is taken).
        self.path: str | None = None
        #: The JSON record held in the file (with ``record``; empty until the lock is taken).
        self.record: dict[str, Any] = {}
        self._keeps_record = record
        self._fd: int | None = None
        self._before = ""

    def __enter__(self) -> MachineLock:
        with open_runtime_dir() as directory:
            self._fd = directory.open_private_file(self.name, os.O_RDWR | os.O_CREAT)
            self.path = directory.join(self.name)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            if self._keeps_record:
                self.record = _load_record(os.read(self._fd, _RECORD_LIMIT))
                self._before = json.dumps(self.record, sort_keys=True)
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._keeps_record and self._fd is not None:
                data = json.dumps(self.record, sort_keys=True)
                if data != self._before:
                    os.lseek(self._fd, 0, os.SEEK_SET)
                    os.ftruncate(self._fd, 0)
                    os.write(self._fd, data.encode())
        finally:
            self._release()

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None


def _load_record(data: bytes) -> dict[str, Any]:
    # A record that is not a JSON object (e.g. cut short by a crash) starts again empty.
    try:
        record = json.loads(data) if data else {}
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


@contextlib.contextmanager
def host_start_lock(config_file: str) -> Iterator[str]:
    """Hold the :class:`MachineLock` ``host-start`` of ``config_file``; yields the lock file's path.

    js-host 0.11's manager starts two hosts when asked twice at once, and the
    first is then never stopped: every process of this machine starts (and
    restarts) the host of one config file under this lock.
    """
    with MachineLock("host-start", config_file) as lock:
        assert lock.path is not None
        yield lock.path


def development_record(config_file: str) -> MachineLock:
    """The development record every process of the machine shares for the host of
    ``config_file``: the mtimes the reloader compares and the crash shown last (a
    ``middleware-<key>.json`` in the runtime dir; the name is kept for existing runtime dirs),
    read and locked in a ``with`` block."""
    return MachineLock("middleware", config_file, record=True)


def tail(path: str, lines: int) -> str:
    """The last ``lines`` lines of the file at ``path`` (for messages), or why they cannot be read."""
    # Never through a link, and only a regular file: what is shown may reach a web page.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        with open(fd, encoding="utf-8", errors="replace") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return "(cannot read it: not a regular file)"
            return "".join(deque(fh, maxlen=lines)).rstrip("\n") or "(empty)"
    except OSError as err:
        return f"(cannot read it: {err})"


def secret_path() -> str:
    return os.path.join(runtime_dir(), SECRET_FILENAME)


def manager_secret() -> str:
    """Get or create the manager secret (cached per runtime dir)."""
    directory = runtime_dir()
    with _lock:
        cached = _cached.get(directory)
        if cached is not None:
            return cached
        with open_runtime_dir() as private:
            try:
                value = _read_secret(private)
            except FileNotFoundError:
                value = _create_secret(private)
        _cached[directory] = value
        return value


def _read_secret(directory: PrivateDir) -> str:
    # Only a regular file of ours that nobody else can read: never through a link.
    fd = directory.open_private_file(SECRET_FILENAME)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(4096)
    value = data.decode("ascii", "replace").strip()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise ConfigError(
            f"The manager secret file {directory.join(SECRET_FILENAME)!r} is malformed "
            "(not 64 hex characters): remove it and try again."
        )
    return value


def _create_secret(directory: PrivateDir) -> str:
    value = secrets.token_hex(32)
    fd, temp = directory.create_temp(f".{SECRET_FILENAME}.")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(value)
        try:
            directory.link(temp, SECRET_FILENAME)
        except FileExistsError:
            # Someone else created it first: theirs is the secret.
            return _read_secret(directory)
    finally:
        directory.unlink(temp, missing_ok=True)
    return value
