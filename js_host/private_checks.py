"""Whether an open folder or file is safe from other users: the checks
:class:`~js_host.private_dir.PrivateDir` makes on each descriptor it opens (the rules are
in :mod:`js_host.private_dir`'s doc), each refusal a :class:`ConfigError` that names the
path, what is wrong and what to do (the same wording as the Node side's).

They look at the descriptor (``os.fstat``), never at the path again, so what was checked
is what gets used.
"""

from __future__ import annotations

import os
import stat

from .exceptions import ConfigError


def check_ancestor(fd: int, path: str, *, what: str, setting: str, target: str) -> None:
    """Raise :class:`ConfigError` unless the folder ``fd`` (``path``, above ``target``) is
    owned by root or this user, and not writable by others unless it is sticky."""
    info = os.fstat(fd)
    mode = stat.S_IMODE(info.st_mode)
    owner_ok = info.st_uid in (0, os.getuid())
    writable_by_others = bool(mode & 0o022)
    if owner_ok and (not writable_by_others or mode & stat.S_ISVTX):
        return
    reason = (
        f"belongs to uid {info.st_uid}"
        if not owner_ok
        else f"can be changed by other users (mode {mode:o}, not sticky)"
    )
    raise ConfigError(
        f"The {what} {target!r} is not private: the folder {path!r} above it {reason}, so another "
        f"user could replace what it holds. Set {setting} to a directory under a folder of your own."
    )


def check_private(fd: int, path: str, *, what: str, setting: str) -> None:
    """Raise :class:`ConfigError` unless the directory ``fd`` (``path``) is this user's,
    with no group or other permission bits."""
    info = os.fstat(fd)
    if info.st_uid != os.getuid():
        raise ConfigError(
            f"The {what} {path!r} belongs to uid {info.st_uid}, not to you (uid {os.getuid()}). "
            f"Remove it, or set {setting} to a directory of your own."
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"The {what} {path!r} is accessible by other users (mode {mode:o}). "
            f"Run `chmod 700 {path}`, remove it, or set {setting} to a directory of your own."
        )


def check_file(fd: int, path: str, *, private: bool = False, single_link: bool = False) -> None:
    """Raise :class:`ConfigError` unless ``fd`` is a regular file of this user's (with
    ``private``, also without group or other permission bits; with ``single_link``,
    also not hard-linked elsewhere, where someone else may have linked it)."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(
            f"The file {path!r} cannot be used: it is not a regular file "
            f"({stat.filemode(info.st_mode)}). Remove it."
        )
    if info.st_uid != os.getuid():
        raise ConfigError(
            f"The file {path!r} belongs to uid {info.st_uid}, not to you (uid {os.getuid()}). Remove it."
        )
    if single_link and info.st_nlink != 1:
        raise ConfigError(
            f"The file {path!r} cannot be used: it has {info.st_nlink} hard links, "
            "so it may be a file of yours linked by another user. Remove it."
        )
    mode = stat.S_IMODE(info.st_mode)
    if private and mode & 0o077:
        raise ConfigError(
            f"The file {path!r} is accessible by other users (mode {mode:o}). "
            f"Run `chmod 600 {path}`, or remove it."
        )


def file_link_message(path: str) -> str:
    """The refusal of a file ``path`` that is a symbolic link (its open failed with ``ELOOP``)."""
    return (
        f"The file {path!r} cannot be used: it is a symbolic link, which js-host never follows "
        "(another user may have made it). Remove it."
    )
