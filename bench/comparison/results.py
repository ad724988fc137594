"""Every figure of one bench/compare.py run (its subjects named in ``names``), and the JSON of them."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from typing import Any

#: payload -> thread count (a string: the JSON keys) -> one figure per round.
Figures = dict[str, dict[str, list[float]]]


def add(figures: Figures, payload: str, threads: int, value: float) -> None:
    figures.setdefault(payload, {}).setdefault(str(threads), []).append(value)


@dataclass
class Subject:
    """The figures of one subject; what was not measured stays None (and out of the JSON)."""

    error: str | None = None  # why it could not be installed, started or measured
    calls: Figures | None = None  # seconds per call
    ratios: Figures | None = None  # each measurement over the floor's measured just before it
    cold: list[float] | None = None  # seconds from nothing to the first answer, per round
    warm: list[float] | None = None  # seconds to the first answer of a new client, per round
    note: str | None = None
    cold_manager: list[float] | None = None  # cold, with USE_MANAGER=True

    def median_call(self, payload: str, threads: int) -> float | None:
        runs = (self.calls or {}).get(payload, {}).get(str(threads))
        return statistics.median(runs) if runs else None

    def to_json(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


def machine() -> dict[str, Any]:
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "node": node,
        "platform": platform.platform(),
        # Other work on the machine weighs on every figure: the load when the run started.
        "load": os.getloadavg()[0],
    }


@dataclass
class Results:
    """The run's settings, the machine it ran on, and each subject's figures."""

    machine: dict[str, Any]
    seconds: float
    rounds: int
    subjects: dict[str, Subject] = field(default_factory=dict)
    table: list[list[str]] | None = None  # the table as printed, once reported

    def subject(self, name: str) -> Subject:
        return self.subjects.setdefault(name, Subject())

    def fail(self, name: str, reason: str) -> None:
        self.subjects[name] = Subject(error=reason[:300])

    def failed(self, name: str) -> bool:
        """No figures to take: the subject is missing, or it failed."""
        return name not in self.subjects or self.subjects[name].error is not None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"machine": self.machine, "seconds": self.seconds, "rounds": self.rounds}
        out["subjects"] = {name: subject.to_json() for name, subject in self.subjects.items()}
        if self.table is not None:
            out["table"] = self.table
        return out
