"""The suite's root: registers the fixture plugins of tests/support (once, for every
group), and checks that the suite leaves no Node, gunicorn or redis-server process
behind."""

from __future__ import annotations

import os
import secrets
import time

import pytest

from tests.support.processes import SESSION_MARKER, suite_processes

# Fixtures used by more than one group; a group's own fixtures are in its conftest.py.
pytest_plugins = [
    "tests.support.host_fixtures",
    "tests.support.client_fixtures",
    "tests.support.proxy_fixtures",
]


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
