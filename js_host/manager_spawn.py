"""Spawning the development manager: ``node <bin> <config> --manager --detached``.

The command's own process is an intermediate one: it starts the manager in a
session of its own (which outlives the Python process), waits until it listens,
and exits. :func:`spawn` runs it to its end and hands back its exit code and
output, for :meth:`js_host.manager.JSHostManager.start` to tell a started manager
from one that could not start (the port taken, a bad config) and say why.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from typing import NamedTuple

from .config_status import node_env
from .exceptions import ProcessError
from .runtime import runtime_dir


class Spawned(NamedTuple):
    """How the intermediate process ended: its command, exit code and output (stdout and stderr)."""

    command: list[str]
    code: int
    output: str


def spawn(path_to_node: str, bin_path: str, config_file: str, *, timeout: float) -> Spawned:
    """Run ``node <bin> <config> --manager --detached`` to its end (within ``timeout`` seconds:
    else a ProcessError, as when it cannot run at all)."""
    cmd = [path_to_node, bin_path, config_file, "--manager", "--detached"]
    # Node and Python must agree on the runtime dir (the secret lives there): a relative
    # JS_HOST_RUNTIME_DIR would resolve against the manager's own working directory.
    env = {**node_env(), "JS_HOST_RUNTIME_DIR": os.path.abspath(runtime_dir())}
    # The intermediate process exits once the detached manager listens; its
    # output goes to files (never to a pipe nobody reads once it has exited).
    with tempfile.TemporaryFile() as out:
        try:
            code = subprocess.call(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=os.path.dirname(config_file),
                start_new_session=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as err:
            raise ProcessError(f"{' '.join(cmd)} did not report within {timeout} s") from err
        except OSError as err:
            raise ProcessError(f"Cannot run {' '.join(cmd)}: {err}") from err
        out.seek(0)
        output = out.read().decode("utf-8", "replace").strip()
    return Spawned(cmd, code, output)
