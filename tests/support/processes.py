"""Real processes for the tests: Node hosts on free ports, owned and stopped.

Each process gets its own process group and writes to a log file (never to an
unread pipe); ``stop()`` sends SIGTERM to the group, waits, then SIGKILLs.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
#: The host bundled in the Python package.
BUNDLED_BIN = ROOT / "js_host" / "node" / "bin" / "js-host.js"
#: js-host 0.11.7 from npm, the reference implementation (installed by scripts/install.sh).
NPM_BIN = ROOT / "tests" / "npm" / "node_modules" / "js-host" / "bin" / "js-host.js"

IMPLEMENTATIONS = {"bundled": BUNDLED_BIN, "npm-0.11": NPM_BIN}
#: The kinds of host the client suite runs against: each implementation, and the bundled
#: host running its functions in a pool of POOL_WORKERS worker processes.
HOST_KINDS = {**IMPLEMENTATIONS, "pool": BUNDLED_BIN}
POOL_WORKERS = 2


def kind_args(kind: str) -> tuple[str, ...]:
    """The command-line options that make a host of ``kind`` (``--workers`` for a pool)."""
    return ("--workers", str(POOL_WORKERS)) if kind == "pool" else ()


def kind_config(kind: str) -> dict[str, Any]:
    """The config properties that make a host of ``kind`` (a managed host reads no options)."""
    return {"workers": POOL_WORKERS} if kind == "pool" else {}


# js-host 0.11 prints a deprecation warning on Node 20, which its own manager
# takes for a failed start.
NODE_ENV = {**os.environ, "NODE_NO_WARNINGS": "1"}


#: Ports handed out by free_port() in this process, never handed out twice.
_handed_out: set[int] = set()
#: Not the global ``random``: hypothesis seeds that one the same way in every test worker.
_random = random.SystemRandom()


def _ephemeral_ports_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on, for a server a test starts later.

    It is picked below the kernel's ephemeral range: a port found by binding port 0 is the
    kernel's to hand out again, and on a busy machine (other test workers, another project)
    another process's bind to port 0 or outgoing connection takes it before the test's server
    starts. A port below that range is only ever taken by an explicit bind.
    """
    start = _ephemeral_ports_start()
    for _ in range(100):
        port = _random.randrange(max(1024, start - 12000), start)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OwnedProcess:
    """A command in its own process group, its output appended to a log file.

    ``spawn()`` starts it; ``wait_until(ready)`` polls until ready() is true,
    failing at once (with the log) if the process exits first; ``stop()`` sends
    a signal to the group, waits, then SIGKILLs the group.
    """

    def __init__(
        self,
        cmd: list[str],
        *,
        log: Path,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
    ) -> None:
        self.cmd, self.log_path, self.env, self.cwd = cmd, log, env, cwd
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                self.cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                **self.popen_options(),
            )

    def popen_options(self) -> dict[str, Any]:
        """More keyword arguments for ``subprocess.Popen`` (e.g. another user to run as)."""
        return {}

    def wait_until(self, ready: Callable[[], bool], timeout: float, interval: float = 0.05) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"{self.cmd} exited during start-up:\n{self.log}")
            if ready():
                return
            time.sleep(interval)
        self.stop()
        raise RuntimeError(f"{self.cmd} did not start within {timeout} s:\n{self.log}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def send_signal(self, signum: int) -> None:
        os.killpg(self.pid, signum)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signum)
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        except ProcessLookupError:
            pass


class NodeProcess(OwnedProcess):
    """``node <bin> <config> --json ...``: started, its status line read, stopped."""

    def __init__(self, bin_path: Path | str, config: Path | str, *args: str, logdir: Path) -> None:
        output = logdir / f"node-{os.getpid()}-{time.monotonic_ns()}.out"
        super().__init__(["node", str(bin_path), str(config), "--json", *args], log=output, env=NODE_ENV)
        self.status: dict[str, Any] = {}

    def start(self, timeout: float = 10.0) -> NodeProcess:
        self.spawn()
        self.wait_until(self._read_status, timeout, interval=0.02)
        return self

    def _read_status(self) -> bool:
        first, newline, _ = self.log.partition("\n")
        if not newline:
            return False
        try:
            self.status = json.loads(first)
        except ValueError:
            self.stop()
            raise RuntimeError(f"{self.cmd} printed no status line:\n{self.log}") from None
        return True

    @property
    def url(self) -> str:
        config = self.status["config"]
        return f"http://{config['address']}:{config['port']}"


def process_stats() -> dict[int, list[str]]:
    """Every running process: pid -> the fields of /proc/<pid>/stat after ``(comm)``
    (state, ppid, pgrp, session, ...); comm may contain spaces and parentheses."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        stats[int(entry.name)] = stat.rsplit(")", 1)[1].split()
    return stats


#: Set in the environment of the test session (see tests/conftest.py) and so inherited
#: by every process it starts: the leftover check counts only those, not the node or
#: gunicorn processes of other projects running on the same machine.
SESSION_MARKER = "JS_HOST_TEST_SESSION"


def _is_suite_process(argv: list[bytes]) -> bool:
    """A process the suite may start: a Node host or manager, gunicorn, redis-server."""
    program = Path(argv[0].decode(errors="replace")).name
    args = b" ".join(argv)
    if program.startswith("node"):
        return b"js-host" in args or b"js_host" in args
    if program.startswith("python") or program == "gunicorn":
        return b"gunicorn" in args and b"pytest" not in args
    return program == "redis-server"


def _has_session_marker(entry: Path, marker: bytes, whole_session: bool) -> bool:
    try:
        variables = (entry / "environ").read_bytes().split(b"\0")
    except OSError:
        return False
    if whole_session:  # the controller's marker, or a pytest-xdist worker's (marker-gwN)
        return any(v == marker or v.startswith(marker + b"-") for v in variables)
    return marker in variables


def suite_processes(whole_session: bool = False) -> set[int]:
    """PIDs of the Node hosts and managers, gunicorn and redis-server processes that
    this test process started (all of them when no session marker is set); with
    ``whole_session``, also those of every pytest-xdist worker of the session."""
    value = os.environ.get(SESSION_MARKER)
    marker = f"{SESSION_MARKER}={value}".encode() if value else None
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not (argv and argv[0] and _is_suite_process(argv)):
            continue
        if marker is None or _has_session_marker(entry, marker, whole_session):
            pids.add(int(entry.name))
    return pids


def wait_for_new_processes_to_end(before: set[int], timeout: float = 10.0) -> None:
    """Wait up to ``timeout`` seconds for the suite processes not in ``before`` to be
    gone (a stopped manager's hosts take a moment); returns either way."""
    deadline = time.monotonic() + timeout
    while suite_processes() - before and time.monotonic() < deadline:
        time.sleep(0.05)
