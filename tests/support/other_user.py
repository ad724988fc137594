"""Another local user for the attack tests: processes that drop to uid ``nobody``.

The attacker runs the system Python (``/usr/bin/python3``, stdlib only) or
``node``: root's home, where pyenv's Python lives, is closed to other users.
Shared folders are made like ``/tmp`` (root-owned, mode 1777) so that both
users can reach them; ``tmp_path`` cannot serve, its parents are private.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import OwnedProcess

#: The untrusted local user.
OTHER_USER = "nobody"
#: A Python that the other user can run.
OTHER_PYTHON = "/usr/bin/python3"

requires_root = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists(OTHER_PYTHON),
    reason="playing another local user needs root (to drop to uid nobody) and /usr/bin/python3",
)


def other_uid() -> int:
    return pwd.getpwnam(OTHER_USER).pw_uid


def _drop_privileges() -> dict[str, Any]:
    entry = pwd.getpwnam(OTHER_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _env() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LANG": "C.UTF-8"}


def run_as_other(code: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` (argv[1:] = ``args``) as the other user; returns its result."""
    return subprocess.run(
        [OTHER_PYTHON, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
        env=_env(),
        **_drop_privileges(),  # type: ignore[arg-type]
    )


class OtherUserProcess(OwnedProcess):
    """A long-running Python ``code`` of the other user (a port squatter, a racer)."""

    def __init__(self, code: str, *args: str, log: Path) -> None:
        super().__init__([OTHER_PYTHON, "-c", code, *args], log=log, env=_env(), cwd=Path("/"))

    def popen_options(self) -> dict[str, Any]:
        return _drop_privileges()


@contextmanager
def shared_tmp() -> Iterator[Path]:
    """A fresh folder like ``/tmp`` (root-owned, world-writable, sticky), removed after."""
    path = Path(tempfile.mkdtemp(prefix="js-host-shared-", dir="/tmp"))
    try:
        path.chmod(0o1777)
        assert stat.S_IMODE(path.stat().st_mode) == 0o1777
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder both users reach (made like ``/tmp``), removed after the test."""
    with shared_tmp() as path:
        yield path
