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

from tests.support.processes import BUNDLED_BIN, HOST_KINDS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "client"
FUNCTIONS_JS = FIXTURES / "host.config.js"


def bin_setting(impl: str) -> dict[str, Any]:
    """BIN_PATH for the host kind ``impl``: the npm one explicitly, the bundled one (also
    the pool's) through the fallback."""
    return {} if HOST_KINDS[impl] == BUNDLED_BIN else {"BIN_PATH": str(HOST_KINDS[impl])}


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


def host_of(reported: int) -> int:
    """The host process behind the pid a function reported (``process.pid``): that pid, or,
    when it is a worker process of a pooled host, the host that forked it."""
    try:
        argv = Path(f"/proc/{reported}/cmdline").read_bytes().split(b"\0")
        if any(arg.endswith(b"worker_main.js") for arg in argv):
            return int(Path(f"/proc/{reported}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        pass
    return reported


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
