"""Another local user's js-host, planted where BIN_PATH's default looks, never runs.

BIN_PATH's default, ``node_modules/.bin/js-host``, is joined to SOURCE_ROOT, the current folder
unless set. The victim runs their app from a folder every user can write (root-owned, mode 1777,
like ``/tmp``), with CONFIG_FILE elsewhere and BIN_PATH unset, after uid ``nobody`` has made
``node_modules/.bin/js-host`` there: a script that would write a marker file, or a link to a
real js-host. The victim's call is answered by the bundled host (through a manager it starts),
the marker never appears, and a warning names the file, its owner and BIN_PATH.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest

from js_host import config_status
from js_host.conf import BUNDLED_BIN_PATH, settings
from js_host.exceptions import JSHostError
from js_host.function import Function
from tests.support.other_user import OTHER_USER, other_uid, requires_root, run_as_other, shared_tmp
from tests.support.processes import NPM_BIN

pytestmark = [requires_root, pytest.mark.timeout(90)]

PLANT = r"""
import os, sys
root, marker, target = sys.argv[1:]
folder = os.path.join(root, "node_modules", ".bin")
os.makedirs(folder)
path = os.path.join(folder, "js-host")
if target:
    os.symlink(target, path)
else:
    with open(path, "w") as f:
        f.write("#!/usr/bin/env node\n")
        f.write("require('fs').writeFileSync(%r, 'ran as uid ' + process.getuid());\n" % marker)
    os.chmod(path, 0o755)
"""


@pytest.fixture
def impl() -> str:
    return "bundled"


@pytest.mark.parametrize("planted", ["a script", "a link to a real js-host"])
def test_a_js_host_planted_in_the_current_folder_never_runs(
    planted: str,
    manager_env: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if not os.path.isfile(BUNDLED_BIN_PATH):
        pytest.skip("the bundled host does not exist yet")
    with shared_tmp() as shared:
        marker = shared / "ran"
        target = str(NPM_BIN) if planted.startswith("a link") else ""
        done = run_as_other(PLANT, str(shared), str(marker), target)
        assert done.returncode == 0, done.stderr
        bin_path = shared / "node_modules" / ".bin" / "js-host"
        assert (shared / "node_modules").stat().st_uid == other_uid()
        config_status.clear_cache()
        with monkeypatch.context() as inside, caplog.at_level(logging.WARNING, logger="js_host"):
            inside.chdir(shared)  # SOURCE_ROOT: the current folder
            settings.reset()
            settings.configure(
                CONFIG_FILE=str(manager_env["config"]),
                USE_MANAGER=True,
                VERBOSITY=0,
                CONNECT_ONCE_CONFIGURED=False,
            )
            try:
                answer: object = Function("hello_world").call()
            except JSHostError as err:
                answer = err
            used = settings.get_path_to_bin()
            settings.reset()
        assert not marker.exists(), marker.read_text()
        assert (answer, used) == ("Hello, World!", BUNDLED_BIN_PATH)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any(
            w.startswith(f"Not running '{bin_path}' (owner: ")
            and f"'{shared / 'node_modules'}' belongs to uid {other_uid()} ({OTHER_USER})" in w
            and "BIN_PATH" in w
            for w in warnings
        ), warnings


def test_a_folder_of_the_victims_below_the_shared_one_is_trusted(
    manager_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A sticky shared folder above is fine when the folders below it are the user's."""
    with shared_tmp() as shared:
        app = shared / "app"
        (app / "node_modules" / ".bin").mkdir(parents=True)
        (app / "node_modules" / ".bin" / "js-host").symlink_to(NPM_BIN)
        with monkeypatch.context() as inside:
            inside.chdir(app)
            settings.reset()
            settings.configure(
                CONFIG_FILE=str(manager_env["config"]), VERBOSITY=0, CONNECT_ONCE_CONFIGURED=False
            )
            assert settings.get_path_to_bin() == str(app / "node_modules" / ".bin" / "js-host")
            settings.reset()
