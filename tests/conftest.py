"""Fixtures shared by the whole suite: real Node hosts, and a check that the
suite leaves no Node, gunicorn or redis-server process behind."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

from tests.support.processes import IMPLEMENTATIONS, SESSION_MARKER, NodeProcess, suite_processes

# The client's fixtures (settings reset, managers on free ports) serve several suites.
pytest_plugins = ["tests.client_fixtures"]


def pytest_sessionstart(session: pytest.Session) -> None:
    # Every process the suite starts inherits this marker (pytest-xdist workers
    # inherit the controller's); processes of other projects on the machine lack it.
    os.environ.setdefault(SESSION_MARKER, f"{os.getpid()}-{secrets.token_hex(8)}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    deadline = time.monotonic() + 8  # managed hosts stop a few seconds after their last disconnect
    left = suite_processes()
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = suite_processes()
    if left:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            f"FAILED: the suite left processes behind: {sorted(left)}", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def start_host(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    """Start ``js-host <config> --json`` (the bundled one unless ``impl`` says
    otherwise) on a free port; every host started is stopped after the test."""
    started: list[NodeProcess] = []

    def start(config: Path | str, *args: str, impl: str = "bundled") -> NodeProcess:
        if "--port" not in args and "-p" not in args:
            args = (*args, "--port", "0")
        proc = NodeProcess(IMPLEMENTATIONS[impl], config, *args, logdir=tmp_path)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()
