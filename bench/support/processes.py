"""Processes the benchmarks own: started in their own process group, output to a log
file, stopped with SIGTERM to the group and then SIGKILL.

Stdlib only: bench/compare_legacy.py imports this in the 2015 stack's venv.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from . import NODE_ENV, ROOT

T = TypeVar("T")


def exit_on_sigterm() -> None:
    """Stopped with SIGTERM (e.g. by ``timeout``), exit through ``sys.exit``: the script's
    ``finally`` blocks still stop every process it started."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))


def free_port() -> int:
    """A TCP port nothing listens on at the moment, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fresh_log(folder: Path, stem: str) -> Path:
    """A log file name in ``folder`` that no other process of this run writes to."""
    taken = len(list(folder.iterdir()))
    return folder / f"{stem}-{taken}.log"


def stop_group(leader: int, wait: Callable[[float], object] | None = None, timeout: float = 10.0) -> None:
    """SIGTERM to the process group of ``leader``; SIGKILL if it is still there after
    ``timeout`` s. ``wait(seconds)`` reaps a child of ours; without it, the group is
    polled (a process started by another one that has already exited)."""
    wait = wait or (lambda seconds: _gone(leader, seconds))
    try:
        os.killpg(leader, signal.SIGTERM)
        wait(timeout)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(leader, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            wait(5)


def _gone(leader: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(leader, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    raise subprocess.TimeoutExpired(f"process group {leader}", timeout)


class OwnedProcess:
    """``cmd`` started at once in a new session (its own process group, so that stop()
    reaches its children too), stdin closed, output appended to ``log``."""

    def __init__(self, cmd: list[str], log: Path, *, env: dict[str, str] | None = None, cwd: Path = ROOT):
        self.cmd, self.log = [str(part) for part in cmd], log
        with log.open("ab") as out:
            options: dict[str, Any] = {"stdout": out, "stderr": subprocess.STDOUT, "env": env, "cwd": cwd}
            self.popen = subprocess.Popen(
                self.cmd, stdin=subprocess.DEVNULL, start_new_session=True, **options
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def wait_until(
        self, ready: Callable[[], T | None], *, timeout: float = 15.0, interval: float = 0.02
    ) -> T:
        """Poll ``ready()`` until it returns something other than None, and return that.
        Fails at once, with the end of the log, if the process exits first."""
        deadline = time.monotonic() + timeout
        while self.popen.poll() is None and time.monotonic() < deadline:
            value = ready()
            if value is not None:
                return value
            time.sleep(interval)
        code = self.popen.poll()
        why = f"did not start within {timeout:g} s" if code is None else f"exited with {code} during start-up"
        self.stop()
        raise RuntimeError(f"{self.cmd} {why}; the end of {self.log}:\n{self.log_tail()}")

    def wait_port(self, port: int, timeout: float = 15.0) -> OwnedProcess:
        """Wait until something accepts connections on 127.0.0.1:``port``; returns self."""

        def accepting() -> bool | None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            except OSError:
                return None
            return True

        self.wait_until(accepting, timeout=timeout, interval=0.05)
        return self

    def group_cpu_seconds(self) -> float:
        """User + system CPU time used so far by the process group: every process still in
        it (a pool's workers, a cluster's children) and the children it has reaped."""
        total = 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            if int(fields[2]) == self.pid:
                total += int(fields[11]) + int(fields[12])
                if stat.parent.name == str(self.pid):  # cutime, cstime: reaped children
                    total += int(fields[13]) + int(fields[14])
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.popen.poll() is None:
            stop_group(self.popen.pid, self.popen.wait)


class NodeServer(OwnedProcess):
    """A node process that prints its port on its first line: a bare number,
    ``{"port": N}`` (the floors) or a host's status JSON (``--json``)."""

    def __init__(
        self, cmd: list[str], log: Path, *, timeout: float = 15.0, env: dict[str, str] | None = None
    ) -> None:
        super().__init__(cmd, log, env=env or NODE_ENV)
        self.port: int = self.wait_until(self._port_line, timeout=timeout)

    def _port_line(self) -> int | None:
        line, newline, _ = self.log.read_text(errors="replace").partition("\n")
        if not newline:
            return None
        if line.isdigit():
            return int(line)
        status = json.loads(line)
        return int(status["port"] if "port" in status else status["config"]["port"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far (/proc/<pid>/stat)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_python(
    code: str, env: dict[str, str], *, python: str = sys.executable, cwd: Path = ROOT, timeout: float = 120
) -> dict[str, Any]:
    """Run ``code`` in a new Python process; the JSON object on its last line of output."""
    done = subprocess.run(
        [python, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{python} -c ... failed with {done.returncode}: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
