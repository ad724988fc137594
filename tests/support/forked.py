"""Run a check in a forked child of the test process, as a pre-fork server's worker would."""

from __future__ import annotations

import json
import os
from typing import Any, Callable


def run_in_fork(check: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Fork, run ``check`` in the child and return what it returned (JSON-able). The child
    exits at once with ``os._exit`` (no atexit, no cleanup of what it inherited); an
    exception in it fails the test here, with its repr."""
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            report = check()
        except BaseException as err:
            report = {"error": repr(err)}
        os.write(write_fd, json.dumps(report).encode())
        os._exit(0)
    os.close(write_fd)
    _, status = os.waitpid(child, 0)
    with os.fdopen(read_fd) as fh:
        report = json.loads(fh.read())
    assert status == 0 and "error" not in report, report
    return report
