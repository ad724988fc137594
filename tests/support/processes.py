"""Real processes for the tests: Node hosts on free ports, owned and stopped.

Each process gets its own process group and writes to a log file (never to an
unread pipe); ``stop()`` sends SIGTERM to the group, waits, then SIGKILLs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
#: The host bundled in the Python package.
BUNDLED_BIN = ROOT / "js_host" / "node" / "bin" / "js-host.js"
#: js-host 0.11.7 from npm, the reference implementation (installed by scripts/install.sh).
NPM_BIN = ROOT / "tests" / "npm" / "node_modules" / "js-host" / "bin" / "js-host.js"

IMPLEMENTATIONS = {"bundled": BUNDLED_BIN, "npm-0.11": NPM_BIN}

# js-host 0.11 prints a deprecation warning on Node 20, which its own manager
# takes for a failed start.
NODE_ENV = {**os.environ, "NODE_NO_WARNINGS": "1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class NodeProcess:
    """``node <bin> <config> --json ...``: started, its status read, stopped."""

    def __init__(self, bin_path: Path | str, config: Path | str, *args: str, logdir: Path) -> None:
        self.cmd = ["node", str(bin_path), str(config), "--json", *args]
        self.output = logdir / f"node-{os.getpid()}-{time.monotonic_ns()}.out"
        self.process: subprocess.Popen[bytes] | None = None
        self.status: dict[str, Any] = {}

    def start(self, timeout: float = 10.0) -> NodeProcess:
        with self.output.open("wb") as out:
            self.process = subprocess.Popen(
                self.cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=NODE_ENV,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            first = self.output.read_text(errors="replace").split("\n", 1)
            if len(first) == 2:
                try:
                    self.status = json.loads(first[0])
                    return self
                except ValueError:
                    break
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.cmd} did not start:\n{self.output.read_text(errors='replace')}")

    @property
    def url(self) -> str:
        config = self.status["config"]
        return f"http://{config['address']}:{config['port']}"

    @property
    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        except ProcessLookupError:
            pass


def _is_suite_process(argv: list[bytes]) -> bool:
    """A process the suite may start: a Node host or manager, gunicorn, redis-server."""
    program = Path(argv[0].decode(errors="replace")).name
    args = b" ".join(argv)
    if program.startswith("node"):
        return b"js-host" in args or b"js_host" in args
    if program.startswith("python") or program == "gunicorn":
        return b"gunicorn" in args and b"pytest" not in args
    return program == "redis-server"


def node_processes() -> set[int]:
    """PIDs of the running Node hosts and managers, gunicorn and redis-server processes."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0] and _is_suite_process(argv):
            pids.add(int(entry.name))
    return pids
