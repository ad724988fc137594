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
    "tests.support.other_user",
]


def pytest_sessionstart(session: pytest.Session) -> None:
    # Every process the suite starts inherits this marker; processes of other projects
    # on the machine lack it. A pytest-xdist worker inherits the controller's and adds
    # its own name, so a test that waits for "its" processes sees only its worker's.
    os.environ.setdefault(SESSION_MARKER, f"{os.getpid()}-{secrets.token_hex(8)}")
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker and not os.environ[SESSION_MARKER].endswith(f"-{worker}"):
        os.environ[SESSION_MARKER] += f"-{worker}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # the controller checks once for every worker, after they all finished
    deadline = time.monotonic() + 8  # managed hosts stop a few seconds after their last disconnect
    left = suite_processes(whole_session=True)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = suite_processes(whole_session=True)
    if left:
        session.config.pluginmanager.get_plugin("terminalreporter").write_line(
            f"FAILED: the suite left processes behind: {sorted(left)}", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
