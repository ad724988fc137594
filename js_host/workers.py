"""What a host running its functions in a pool of workers reports to Python.

A host started with ``workers: N`` (or ``--workers N``) adds a ``workers`` section to
its ``GET /status``; :class:`WorkerPool` is that section, typed
(:meth:`js_host.host.JSHost.get_workers` reads it live). When a worker dies while it
runs a call (an uncaught exception, ``process.exit()``, its heap exhausted, a signal),
the host answers that call 500 with a message naming the cause;
:func:`worker_death` recognises it, and :class:`js_host.function.Function` raises
:class:`~js_host.exceptions.WorkerDied` for it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .exceptions import UnexpectedResponse


@dataclass(frozen=True)
class WorkerPool:
    """The ``workers`` section of a pooled host's ``GET /status``."""

    #: Workers the pool keeps (``workers``; ``'auto'``: the machine's available parallelism).
    size: int
    #: Workers started and able to take a call.
    ready: int
    #: Workers running a call now.
    busy: int
    #: Calls waiting for a worker (at most ``maxQueue``; one more is answered 503).
    queue: int
    #: Workers replaced since the host started, by cause: ``timeout``, ``uncaughtException``,
    #: ``unhandledRejection``, ``exit``, ``outOfMemory``, ``signal`` (killed),
    #: ``maxCallsPerWorker``, ``maxWorkerMemory``, ``reload``, ``startFailure``.
    restarts: Mapping[str, int] = field(default_factory=dict)
    #: When the workers' code was loaded (as the host reports it), None if not said.
    loaded_at: str | None = None
    #: The version of the code the workers run, None if not said.
    code_version: str | None = None

    @classmethod
    def from_status(cls, status: Mapping[str, Any], where: str = "the host") -> WorkerPool | None:
        """The pool in ``status`` (a ``GET /status`` answer); None when the host runs without
        one (``workers`` unset, or js-host 0.11). A section of the wrong shape raises
        UnexpectedResponse naming the field and ``where`` the status came from."""
        section = status.get("workers")
        if section is None:
            return None
        if not isinstance(section, Mapping):
            raise UnexpectedResponse(f"{where}: 'workers' in the status is not an object: {section!r}")

        def count(key: str) -> int:
            value = section.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UnexpectedResponse(f"{where}: workers.{key} is not a count: {value!r}")
            return value

        restarts = section.get("restarts") or {}
        if not isinstance(restarts, Mapping) or not all(
            isinstance(n, int) and not isinstance(n, bool) for n in restarts.values()
        ):
            raise UnexpectedResponse(f"{where}: workers.restarts is not an object of counts: {restarts!r}")
        loaded_at, code_version = section.get("loadedAt"), section.get("codeVersion")
        return cls(
            size=count("size"),
            ready=count("ready"),
            busy=count("busy"),
            queue=count("queue"),
            restarts=dict(restarts),
            loaded_at=None if loaded_at is None else str(loaded_at),
            code_version=None if code_version is None else str(code_version),
        )

    @property
    def total_restarts(self) -> int:
        """Workers replaced since the host started, whatever the cause."""
        return sum(self.restarts.values())


# The pool's answer for a call whose worker died: 'Function "<name>" failed: the worker
# running it <cause>. It was replaced; the details are in <the host's log(file)>.'
_DEATH = re.compile(
    r'^Function "(?P<name>.*?)" failed: the worker running it (?P<cause>.+?)\. '
    r"It was replaced; the details are in (?P<log>.+?)\.?\s*$",
    re.S,
)


@dataclass(frozen=True)
class WorkerDeath:
    """Why the worker running a call died, as the host said in its 500."""

    #: What happened to the worker, e.g. "threw an uncaught exception: Error: boom",
    #: "exited with code 3 (process.exit() in a function?)", "ran out of memory (...)".
    cause: str
    #: Where the host logged the details ("the host's logfile /path", or "the host's log").
    log: str


def worker_death(text: str) -> WorkerDeath | None:
    """The death described by a 500's body, or None when the function itself failed."""
    found = _DEATH.match(text.strip())
    if found is None:
        return None
    return WorkerDeath(cause=found.group("cause"), log=found.group("log"))
