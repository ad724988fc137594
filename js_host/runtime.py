"""The runtime directory and the manager secret, shared with the Node manager.

Both sides implement the same get-or-create, so whichever starts first creates
the secret and the other reads it:

- runtime dir: ``$JS_HOST_RUNTIME_DIR``, else ``$XDG_RUNTIME_DIR/js-host``, else
  ``<$TMPDIR or /tmp>/js-host-<uid>`` (``tempfile.gettempdir()`` is not used on
  purpose: Node's ``os.tmpdir()`` differs from it);
- secret: ``<runtime dir>/manager.secret``, mode 0600, 64 lowercase hex chars
  (read with surrounding whitespace stripped, e.g. a newline added by an editor).

It also holds the lock files that serialise host starts between the processes
of one machine (:func:`host_start_lock`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import stat
import threading
from collections.abc import Iterator

from .exceptions import ConfigError

SECRET_FILENAME = "manager.secret"

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


def ensure_runtime_dir() -> str:
    """Create the runtime directory (mode 0700) and check that it is private."""
    path = runtime_dir()
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.stat(path)
    if info.st_uid != os.getuid():
        raise ConfigError(
            f"The js-host runtime directory {path!r} belongs to uid {info.st_uid}, not to you "
            f"(uid {os.getuid()}). Remove it, or set JS_HOST_RUNTIME_DIR to a directory of your own."
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise ConfigError(
            f"The js-host runtime directory {path!r} is accessible by other users "
            f"(mode {stat.S_IMODE(info.st_mode):o}). Run `chmod 700 {path}` or remove it."
        )
    return path


@contextlib.contextmanager
def host_start_lock(config_file: str) -> Iterator[str]:
    """Hold an exclusive lock (``flock``) on ``<runtime dir>/host-start-<sha1 of config_file>.lock``.

    js-host 0.11's manager starts two hosts when asked twice at once, and the
    first is then never stopped: every process of this machine starts (and
    restarts) the host of one config file under this lock. It is released when
    the block ends, or when the process dies. Yields the lock file's path.
    """
    key = hashlib.sha1(config_file.encode()).hexdigest()[:16]
    path = os.path.join(ensure_runtime_dir(), f"host-start-{key}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield path
    finally:
        os.close(fd)  # releases the lock


def secret_path() -> str:
    return os.path.join(runtime_dir(), SECRET_FILENAME)


def manager_secret() -> str:
    """Get or create the manager secret (cached per runtime dir)."""
    directory = runtime_dir()
    with _lock:
        cached = _cached.get(directory)
        if cached is not None:
            return cached
        ensure_runtime_dir()
        path = os.path.join(directory, SECRET_FILENAME)
        try:
            value = _read_secret(path)
        except FileNotFoundError:
            value = _create_secret(directory, path)
        _cached[directory] = value
        return value


def _read_secret(path: str) -> str:
    with open(path, encoding="ascii") as fh:
        value = fh.read().strip()
    if len(value) != 64:
        raise ConfigError(f"The manager secret file {path!r} is malformed: remove it and try again.")
    return value


def _create_secret(directory: str, path: str) -> str:
    value = secrets.token_hex(32)
    temp = os.path.join(directory, f".{SECRET_FILENAME}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(value)
        try:
            os.link(temp, path)
        except FileExistsError:
            # Someone else created it first: theirs is the secret.
            return _read_secret(path)
    finally:
        os.unlink(temp)
    return value
