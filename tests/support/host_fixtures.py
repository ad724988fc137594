"""The fixture that starts real Node hosts, for every group of tests.

A plugin: tests/conftest.py registers it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

from tests.support.processes import HOST_KINDS, NodeProcess, kind_args


@pytest.fixture
def start_host(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    """Start ``js-host <config> --json`` (the bundled one unless ``impl`` names another
    kind of ``HOST_KINDS``, e.g. "pool") on a free port; every host started is stopped
    after the test."""
    started: list[NodeProcess] = []

    def start(config: Path | str, *args: str, impl: str = "bundled") -> NodeProcess:
        if "--port" not in args and "-p" not in args:
            args = (*args, "--port", "0")
        proc = NodeProcess(HOST_KINDS[impl], config, *args, *kind_args(impl), logdir=tmp_path)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private runtime dir (mode 0700) for this test's managers and managed hosts."""
    path = tmp_path / "runtime"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("JS_HOST_RUNTIME_DIR", str(path))
    yield path
