"""Directories that only this user can use, and files opened inside them safely.

Other local users are untrusted. A private path is safe when nobody else can
change what it names, now or later:

- every ancestor (after resolving the parent's links once, with ``realpath``) is
  owned by root or by this user, and is not writable by group or others unless
  it is sticky (like ``/tmp``, where others cannot rename or remove our entries);
- the directory itself is no link, is owned by this user and has no group or
  other permission bits.

:meth:`PrivateDir.open` walks the path one component at a time with
``O_NOFOLLOW`` relative to the previous component's descriptor and checks each
on the descriptor it opened (no check-then-use gap; the checks and their messages
are :mod:`js_host.private_checks`), then keeps the directory's descriptor: every
file is opened relative to it, never following a link, and files made here get
random names with ``O_EXCL``. The Node side (``js_host/node/lib/private_dir.js``)
applies the same rules to paths, as Node has no directory-relative opens.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from typing import NoReturn

from .exceptions import ConfigError
from .private_checks import check_ancestor, check_file, check_private, file_link_message

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class PrivateDir:
    """An open directory of this user's with no access for others (see the module doc).

    ``what`` names it in error messages ("js-host runtime directory") and
    ``setting`` is what the user can set to move it elsewhere.
    """

    def __init__(self, path: str, fd: int, *, what: str, setting: str) -> None:
        self.path, self.fd, self.what, self.setting = path, fd, what, setting

    @classmethod
    def open(cls, path: str, *, what: str, setting: str, create: bool = True) -> PrivateDir:
        """Open (and with ``create``, make, mode 0700, parents included) the private dir ``path``.

        Raises :class:`ConfigError` naming the unsafe component and the setting to
        use when the path is a link, belongs to someone else, or is reachable
        through a folder that others can change; :class:`FileNotFoundError` when it
        does not exist and ``create`` is false.
        """
        path = os.path.abspath(path)
        parent, name = os.path.split(path)
        real_parent = os.path.realpath(parent)
        fd = os.open("/", _DIR_FLAGS)
        current = "/"
        try:
            for part in [p for p in real_parent.split("/") if p]:
                check_ancestor(fd, current, what=what, setting=setting, target=path)
                child = os.path.join(current, part)
                fd = _replace_fd(fd, _open_dir(fd, part, child, create, what=what, setting=setting))
                current = child
            check_ancestor(fd, current, what=what, setting=setting, target=path)
            fd = _replace_fd(fd, _open_dir(fd, name, path, create, what=what, setting=setting))
            check_private(fd, path, what=what, setting=setting)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, what=what, setting=setting)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> PrivateDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PrivateDir {self.path}>"

    def join(self, name: str) -> str:
        """The path of ``name`` in this directory (for messages and for other processes)."""
        return os.path.join(self.path, name)

    def subdir(self, name: str, *, create: bool = True) -> PrivateDir:
        """The private sub-directory ``name`` (made with mode 0700 when missing and ``create``)."""
        path = self.join(name)
        fd = _open_dir(self.fd, name, path, create, what=self.what, setting=self.setting)
        try:
            check_private(fd, path, what=self.what, setting=self.setting)
        except BaseException:
            os.close(fd)
            raise
        return PrivateDir(path, fd, what=self.what, setting=self.setting)

    def open_file(self, name: str, flags: int = os.O_RDONLY, mode: int = 0o600) -> int:
        """``os.open`` of ``name`` in this directory: never through a link, and only a
        regular file of this user's (else :class:`PermissionError`). Returns the fd."""
        fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=self.fd)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
                raise PermissionError(
                    f"{self.join(name)!r} is not a regular file of uid {os.getuid()} "
                    f"(uid {info.st_uid}, mode {stat.filemode(info.st_mode)}): remove it"
                )
        except BaseException:
            os.close(fd)
            raise
        return fd

    def open_private_file(self, name: str, flags: int = os.O_RDONLY, mode: int = 0o600) -> int:
        """Like :meth:`open_file`, and the file must have no group or other permission
        bits; any refusal is a :class:`ConfigError` naming the file and what is wrong
        (the same wording as the Node side's ``openPrivateFile``)."""
        path = self.join(name)
        try:
            fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=self.fd)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise ConfigError(file_link_message(path)) from err
            raise
        try:
            check_file(fd, path, private=True)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def create_temp(self, prefix: str, mode: int = 0o600) -> tuple[int, str]:
        """A new file with a random name (``O_EXCL``): ``(fd open for writing, name)``."""
        while True:
            name = f"{prefix}{secrets.token_hex(8)}"
            try:
                fd = os.open(
                    name,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    mode,
                    dir_fd=self.fd,
                )
            except FileExistsError:
                continue
            return fd, name

    def write_atomic(self, name: str, data: bytes, *, prefix: str = ".tmp-") -> None:
        """Replace ``name`` with a file holding ``data``: readers see the old or the new one."""
        fd, temp = self.create_temp(prefix)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            self.replace(temp, name)
        except BaseException:
            self.unlink(temp, missing_ok=True)
            raise

    def replace(self, src: str, dst: str) -> None:
        os.replace(src, dst, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def link(self, src: str, dst: str) -> None:
        os.link(src, dst, src_dir_fd=self.fd, dst_dir_fd=self.fd, follow_symlinks=False)

    def unlink(self, name: str, *, missing_ok: bool = False) -> None:
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def lstat(self, name: str) -> os.stat_result:
        return os.stat(name, dir_fd=self.fd, follow_symlinks=False)

    def listdir(self) -> list[str]:
        return os.listdir(self.fd)

    def remove_tree(self, name: str) -> int:
        """Remove the sub-directory ``name`` and all in it, never following a link;
        returns how many files (not folders) were removed."""
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=self.fd)
        except FileNotFoundError:
            return 0
        removed = 0
        with PrivateDir(self.join(name), fd, what=self.what, setting=self.setting) as sub:
            for entry in os.scandir(sub.fd):
                if entry.is_dir(follow_symlinks=False):
                    removed += sub.remove_tree(entry.name)
                else:
                    sub.unlink(entry.name, missing_ok=True)
                    removed += 1
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(name, dir_fd=self.fd)
        return removed


def _replace_fd(old: int, new: int) -> int:
    os.close(old)
    return new


# How often a folder that vanishes between mkdir and open is made again before
# giving up: a name someone else keeps removing is theirs to fight over, not ours.
_CREATE_ATTEMPTS = 5


def _open_dir(parent_fd: int, name: str, path: str, create: bool, *, what: str, setting: str) -> int:
    for _ in range(_CREATE_ATTEMPTS if create else 1):
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o700, dir_fd=parent_fd)
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        except FileNotFoundError:
            if not create:
                raise
        except OSError as err:
            _refuse(err, parent_fd, name, path, what=what, setting=setting)
    raise ConfigError(
        f"The {what} {path!r} keeps disappearing while js-host creates it (another user may be "
        f"removing it). Set {setting} to a directory under a folder of your own."
    )


def _refuse(err: OSError, parent_fd: int, name: str, path: str, *, what: str, setting: str) -> NoReturn:
    if err.errno not in (errno.ELOOP, errno.ENOTDIR):
        raise ConfigError(
            f"The {what} {path!r} cannot be opened ({err.strerror}). "
            f"Fix its permissions, or set {setting} to a directory of your own."
        ) from err
    try:
        kind = stat.filemode(os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode)
    except OSError:
        kind = "?"
    link = " a symbolic link" if kind.startswith("l") else f" not a directory ({kind})"
    raise ConfigError(
        f"The {what} {path!r} cannot be used: it is{link}, which js-host never follows "
        f"(another user may have made it). Remove it, or set {setting} to a directory of your own."
    ) from err
