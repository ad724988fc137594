"""Whether a js-host binary found where BIN_PATH's default looks can be trusted.

BIN_PATH's default, ``node_modules/.bin/js-host``, is joined to SOURCE_ROOT (the current
folder unless set), so it can name a file in a folder another user can write: an app run from
under ``/tmp`` or from a shared checkout would run as the user whatever she put there. A file
found there is used only when no other user could have put it there or can change it now:

- every folder on the way to it, and to its target when it is a link (npm makes
  ``.bin/js-host`` one, to ``../js-host/bin/js-host.js``), is owned by root or this user and
  not writable by other users, unless it is sticky (like ``/tmp``: others cannot rename or
  remove what is ours in it);
- every entry passed on the way (folders, links, the file) is owned by root or this user;
- the file is a regular file not writable by other users.

"Writable by other users": by others, or by a group with another member. A group-writable file
of this user's own group (no other member: the user private groups of a ``umask 002`` system,
where npm makes every folder 775) is fine, as OpenSSH's StrictModes has it.

These are :mod:`js_host.private_dir`'s rules for a private dir's ancestors, applied to each
component as the kernel resolves it (links followed by hand): once nothing on the way can be
changed by another user, the path keeps naming the file that was checked when node opens it.
A BIN_PATH the user set is used as it is: that file is their choice.
"""

from __future__ import annotations

import functools
import grp
import os
import pwd
import stat

# As the kernel's limit on links followed in one path (MAXSYMLINKS).
_MAX_LINKS = 40


def owner_of(uid: int) -> str:
    """``uid 65534 (nobody)``, for messages."""
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


@functools.lru_cache(maxsize=16)
def _group_of_this_user_alone(gid: int) -> bool:
    """Whether nobody but this user is in group ``gid`` (its primary group, no other member)."""
    if gid != os.getgid():
        return False
    try:
        members = set(grp.getgrgid(gid).gr_mem)
        name = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return False
    return members <= {name}


def _writable_by_others(info: os.stat_result) -> bool:
    if info.st_mode & stat.S_IWOTH:
        return True
    return bool(info.st_mode & stat.S_IWGRP) and not _group_of_this_user_alone(info.st_gid)


def untrusted_because(path: str) -> str | None:
    """Why another user could have put or could change the file at ``path`` (absolute),
    or None when nobody but root and this user can (the rules are in the module doc)."""
    trusted = (0, os.getuid())
    pending = [part for part in path.split("/") if part]
    current = "/"  # resolved: no link in it, so its parent is os.path.dirname(current)
    links = 0
    try:
        info = os.lstat(current)
        while True:  # `info` is current's: check it, then take the next component
            if info.st_uid not in trusted:
                return f"{current!r} belongs to {owner_of(info.st_uid)}"
            mode = stat.S_IMODE(info.st_mode)
            if not pending:
                if not stat.S_ISREG(info.st_mode):
                    return f"{current!r} is not a regular file"
                if _writable_by_others(info):
                    return f"{current!r} can be changed by other users (mode {mode:o})"
                return None
            if not stat.S_ISDIR(info.st_mode):
                return f"{current!r} is not a folder"
            if _writable_by_others(info) and not mode & stat.S_ISVTX:
                return f"the folder {current!r} can be changed by other users (mode {mode:o}, not sticky)"
            part = pending.pop(0)
            if part == ".":
                continue  # current again: `info` is still its
            child = os.path.dirname(current) if part == ".." else os.path.join(current, part)
            info = os.lstat(child)
            if not stat.S_ISLNK(info.st_mode):
                current = child
                continue
            # A link in a folder nobody else can change: its target is walked like the rest,
            # from that folder (or from / for an absolute one).
            if info.st_uid not in trusted:
                return f"the link {child!r} belongs to {owner_of(info.st_uid)}"
            links += 1
            if links > _MAX_LINKS:
                return f"{path!r} goes through more than {_MAX_LINKS} links"
            target = os.readlink(child)
            pending[:0] = [p for p in target.split("/") if p]
            if target.startswith("/"):
                current = "/"
            info = os.lstat(current)
    except OSError as err:
        return f"{path!r} cannot be checked ({err.strerror})"
