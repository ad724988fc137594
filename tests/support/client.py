"""Helpers for the Python client tests: config files with the test functions, the
client settings for a host implementation, and process and logging checks. (Their
fixtures are in tests/support/client_fixtures.py.)"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.processes import IMPLEMENTATIONS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "client"
FUNCTIONS_JS = FIXTURES / "host.config.js"


def bin_setting(impl: str) -> dict[str, Any]:
    """BIN_PATH for ``impl``: the npm one explicitly, the bundled one through the fallback."""
    return {} if impl == "bundled" else {"BIN_PATH": str(IMPLEMENTATIONS[impl])}


def write_config(directory: Path, *, name: str = "host.config.js", **props: Any) -> Path:
    """A config file with the test functions and ``props`` (e.g. port) in ``directory``."""
    source = FUNCTIONS_JS.read_text()
    extra = "".join(f"  {key}: {json.dumps(value)},\n" for key, value in props.items())
    path = directory / name
    path.write_text(source.replace("module.exports = {\n", "module.exports = {\n" + extra, 1))
    return path


def config_port(config: Path) -> int:
    for line in config.read_text().splitlines():
        if line.strip().startswith("port:"):
            return int(line.split(":")[1].strip(" ,"))
    raise ValueError(f"{config} has no port")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def without_logging_config() -> Iterator[logging.Logger]:
    """Logging as in a program that has not configured it: the root logger without
    handlers (pytest adds its own to it) at its default level. Yields the root logger;
    its handlers and level are restored afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers.clear()
    root.setLevel(logging.WARNING)
    try:
        yield root
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
