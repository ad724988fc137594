"""Another local user against the runtime dir: links and folders of hers are refused, never followed.

The default runtime dir is ``${TMPDIR:-/tmp}/js-host-<uid>``, in a folder that
every user can write to. The other user (uid ``nobody``) prepares the name (a
link, a folder of hers), plants links inside the victim's dir, or swaps a link
into place while the victim starts a manager and a host. Each time the victim
gets a clear error naming the path and the setting to use (or works in a safe
place), no file of the victim is written through a link, and the attacker's
folder receives nothing. The Python client and the Node side find the same
directory and refuse the same things with the same words.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from js_host import config_status, runtime
from js_host.conf import settings
from js_host.exceptions import ConfigError, JSHostError
from js_host.function import Function
from js_host.manager import JSHostManager
from tests.support.client import write_config
from tests.support.other_user import OtherUserProcess, other_uid, requires_root, run_as_other, shared_tmp
from tests.support.processes import (
    BUNDLED_BIN,
    ROOT,
    free_port,
    suite_processes,
    wait_for_new_processes_to_end,
)

RUNTIME_JS = ROOT / "js_host" / "node" / "lib" / "runtime.js"
UID = os.getuid()
SETTINGS_HINT = "set JS_HOST_RUNTIME_DIR (or XDG_RUNTIME_DIR) to a directory of your own"

NODE_SIDE = """
const runtime = require(process.argv[1]);
try {
  const dir = runtime.ensureRuntimeDir();
  runtime.getOrCreateSecret(dir);
  process.stdout.write(JSON.stringify({ dir }));
} catch (err) {
  process.stdout.write(JSON.stringify({ error: err.message }));
}
"""
PYTHON_SIDE = """
import hashlib
import json
from js_host.runtime import manager_secret, runtime_dir
from js_host.exceptions import ConfigError
try:
    manager_secret()
    print(json.dumps({"dir": runtime_dir()}))
except ConfigError as err:
    print(json.dumps({"error": str(err)}))
"""


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("JS_HOST_RUNTIME_DIR", "XDG_RUNTIME_DIR", "TMPDIR")
    }
    return {**env, **extra}


def both_sides(**env: str) -> dict[str, Any]:
    """What Python's ``manager_secret()`` and Node's ``getOrCreateSecret()`` do in ``env``:
    the same ``{"dir": ...}`` or the same ``{"error": message}`` (asserted); returns it."""
    full = clean_env(**env)
    python = subprocess.run(
        [sys.executable, "-c", PYTHON_SIDE], cwd=ROOT, env=full, capture_output=True, text=True, timeout=60
    )
    node = subprocess.run(
        ["node", "-e", NODE_SIDE, str(RUNTIME_JS)],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert python.returncode == 0 and node.returncode == 0, (python.stderr, node.stderr)
    outcome = json.loads(python.stdout)
    assert json.loads(node.stdout) == outcome
    return outcome


class Canary:
    """A file of the victim's (in a folder of hers) that must keep its content and mtime."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(mode=0o700)
        self.folder = folder
        self.file = folder / "precious"
        self.file.write_bytes(b"keep me\n")
        os.utime(self.file, (1_600_000_000, 1_600_000_000))

    def assert_untouched(self) -> None:
        assert self.file.read_bytes() == b"keep me\n"
        assert self.file.stat().st_mtime == 1_600_000_000
        assert sorted(p.name for p in self.folder.iterdir()) == ["precious"]


def attacker_dir(shared: Path) -> Path:
    """A folder of the other user's, open to everyone (so that a victim following a link could write)."""
    hers = shared / "hers"
    result = run_as_other("import os, sys; os.mkdir(sys.argv[1]); os.chmod(sys.argv[1], 0o777)", str(hers))
    assert result.returncode == 0, result.stderr
    return hers


def test_python_and_node_agree_on_the_runtime_dir(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir(mode=0o700)
    assert both_sides(TMPDIR=str(tmp)) == {"dir": str(tmp / f"js-host-{UID}")}
    assert both_sides(XDG_RUNTIME_DIR=str(tmp), TMPDIR="/nowhere") == {"dir": str(tmp / "js-host")}
    assert both_sides(JS_HOST_RUNTIME_DIR=str(tmp / "rt"), XDG_RUNTIME_DIR="/nowhere") == {
        "dir": str(tmp / "rt")
    }
    # Both made one secret, shared: no temporary file left.
    assert sorted(os.listdir(tmp / f"js-host-{UID}")) == ["manager.secret"]


def test_python_and_node_refuse_a_loose_runtime_dir_alike(tmp_path: Path) -> None:
    loose = tmp_path / "rt"
    loose.mkdir()
    loose.chmod(0o755)
    error = both_sides(JS_HOST_RUNTIME_DIR=str(loose))["error"]
    assert error == (
        f"The js-host runtime directory '{loose}' is accessible by other users (mode 755). Run `chmod 700 "
        f"{loose}`, remove it, or set JS_HOST_RUNTIME_DIR to a directory of your own."
    )
    assert os.listdir(loose) == []


@requires_root
@pytest.mark.parametrize("points_to", ["her folder", "a folder of the victim"])
def test_a_link_in_place_of_the_runtime_dir(tmp_path: Path, points_to: str) -> None:
    with shared_tmp() as shared:
        hers = attacker_dir(shared)
        canary = Canary(shared / "victims")
        target = hers if points_to == "her folder" else canary.folder
        name = shared / f"js-host-{UID}"
        result = run_as_other("import os, sys; os.symlink(sys.argv[1], sys.argv[2])", str(target), str(name))
        assert result.returncode == 0, result.stderr
        error = both_sides(TMPDIR=str(shared))["error"]
        assert error == (
            f"The js-host runtime directory '{name}' cannot be used: it is a symbolic link, which "
            f"js-host never follows (another user may have made it). Remove it, or {SETTINGS_HINT}."
        )
        assert list(hers.iterdir()) == []
        canary.assert_untouched()


@requires_root
@pytest.mark.parametrize("mode", [0o777, 0o700])
def test_a_folder_of_hers_in_place_of_the_runtime_dir(mode: int) -> None:
    with shared_tmp() as shared:
        name = shared / f"js-host-{UID}"
        result = run_as_other(
            f"import os, sys; os.mkdir(sys.argv[1]); os.chmod(sys.argv[1], {mode})", str(name)
        )
        assert result.returncode == 0, result.stderr
        error = both_sides(TMPDIR=str(shared))["error"]
        assert error == (
            f"The js-host runtime directory '{name}' belongs to uid {other_uid()}, not to you (uid {UID}). "
            f"Remove it, or {SETTINGS_HINT}."
        )
        assert list(name.iterdir()) == []


@requires_root
def test_a_tmpdir_of_hers_is_refused() -> None:
    with shared_tmp() as shared:
        hers = attacker_dir(shared)
        error = both_sides(TMPDIR=str(hers))["error"]
        assert f"the folder '{hers}' above it belongs to uid {other_uid()}" in error
        assert "JS_HOST_RUNTIME_DIR (or XDG_RUNTIME_DIR)" in error
        assert list(hers.iterdir()) == []


def plant_as_other(directory: Path, links: dict[str, Path], *, through: tuple[Path, ...] = ()) -> None:
    """The other user plants ``links`` (name: target) in ``directory``, which is open to her
    only meanwhile (as if it were shared; ``through``: folders to pass on the way): the point
    is that the victim never follows them."""
    for folder in (*through, directory):
        folder.chmod(0o777)
    try:
        code = "import os, sys\nfor i in range(1, len(sys.argv), 2): os.symlink(sys.argv[i + 1], sys.argv[i])"
        args = [str(a) for name, target in links.items() for a in (directory / name, target)]
        result = run_as_other(code, *args)
        assert result.returncode == 0, result.stderr
    finally:
        for folder in (*through, directory):
            folder.chmod(0o700)


@pytest.fixture
def victim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A config on a free port for the bundled manager; every manager started is stopped after."""
    if not BUNDLED_BIN.exists():
        pytest.skip(f"the bundled host {BUNDLED_BIN} does not exist yet")
    for name in ("JS_HOST_RUNTIME_DIR", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(runtime, "_cached", {})
    config_status.clear_cache()
    before = suite_processes()
    config = write_config(tmp_path, port=free_port(), disconnectTimeout=300)
    yield {
        "config": config,
        "settings": {"SOURCE_ROOT": str(tmp_path), "USE_MANAGER": True, "VERBOSITY": 0},
        "before": before,
    }
    stop_manager(config, before)


def stop_manager(config: Path, before: set[int]) -> None:
    """Stop the manager of ``config`` if one runs, and wait for its processes to be gone."""
    settings.reset()
    config_status.clear_cache()
    if not os.path.isdir(runtime.runtime_dir()):
        return  # gone with its shared folder (asking would make it again): stopped before
    try:
        manager = JSHostManager(str(config))
        if manager.is_running():
            manager.stop()
    except JSHostError:
        pass
    wait_for_new_processes_to_end(before)


def call_hello(victim: dict[str, Any]) -> str:
    runtime._cached.clear()
    config_status.clear_cache()
    settings.reset()
    settings.configure(**victim["settings"])
    return Function("hello_world").call()


def node_file_name(kind: str, directory: Path, config: Path) -> str:
    expr = (
        "managedHostLogfile(process.argv[2], process.argv[3])"
        if kind == "host"
        else "detachedOutputFile(process.argv[2], 'manager', process.argv[3])"
    )
    out = subprocess.run(
        [
            "node",
            "-e",
            f"process.stdout.write(require(process.argv[1]).{expr})",
            str(RUNTIME_JS),
            str(directory),
            str(config),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return os.path.basename(out)


@requires_root
def test_links_planted_in_the_runtime_dir_are_never_followed(
    monkeypatch: pytest.MonkeyPatch, victim: dict[str, Any]
) -> None:
    with shared_tmp() as shared:
        try:
            check_planted_links(shared, monkeypatch, victim)
        finally:
            # While its runtime dir still exists.
            stop_manager(victim["config"], victim["before"])


def check_planted_links(shared: Path, monkeypatch: pytest.MonkeyPatch, victim: dict[str, Any]) -> None:
    canary = Canary(shared / "victims")
    rt = shared / "rt"
    monkeypatch.setenv("JS_HOST_RUNTIME_DIR", str(rt))
    runtime.ensure_runtime_dir()
    config = victim["config"]
    host_log = node_file_name("host", rt, config)
    manager_log = node_file_name("manager", rt, config)

    # The secret: both sides refuse the link, with the same words.
    plant_as_other(rt, {"manager.secret": canary.file})
    error = both_sides(JS_HOST_RUNTIME_DIR=str(rt))["error"]
    assert error == (
        f"The file '{rt}/manager.secret' cannot be used: it is a symbolic link, which js-host never follows "
        "(another user may have made it). Remove it."
    )
    with pytest.raises(ConfigError, match=r"manager\.secret' cannot be used: it is a symbolic link"):
        call_hello(victim)
    canary.assert_untouched()

    # The output file of the detached manager: it does not start.
    (rt / "manager.secret").unlink()
    plant_as_other(rt, {manager_log: canary.file})
    with pytest.raises(
        JSHostError, match=rf"The file '{rt}/{manager_log}' cannot be used: it is a symbolic link"
    ):
        call_hello(victim)
    canary.assert_untouched()

    # The managed host's logfile: the host refuses it, the call fails naming it.
    (rt / manager_log).unlink()
    plant_as_other(rt, {host_log: canary.file})
    with pytest.raises(
        JSHostError, match=rf"The file '{rt}/{host_log}' cannot be used: it is a symbolic link"
    ):
        call_hello(victim)
    canary.assert_untouched()

    # Once the links are gone, all works, and the files are the victim's own.
    (rt / host_log).unlink()
    assert call_hello(victim) == "Hello, World!"
    for name in (host_log, manager_log, "manager.secret"):
        info = (rt / name).lstat()
        assert info.st_uid == UID and (info.st_mode & 0o077) == 0, name
    canary.assert_untouched()


@requires_root
def test_python_files_of_the_runtime_dir_refuse_planted_links(monkeypatch: pytest.MonkeyPatch) -> None:
    with shared_tmp() as shared:
        check_python_files(shared, monkeypatch)


def check_python_files(shared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    canary = Canary(shared / "victims")
    rt = shared / "rt"
    monkeypatch.setenv("JS_HOST_RUNTIME_DIR", str(rt))
    with runtime.open_runtime_dir() as directory:
        cache = directory.subdir(config_status.CACHE_DIRNAME)
        cache.close()
    config = "/some/host.config.js"
    key = hashlib.sha1(config.encode()).hexdigest()[:16]
    plant_as_other(rt, {f"host-start-{key}.lock": canary.file, f"middleware-{key}.json": canary.file})
    link = "cannot be used: it is a symbolic link"
    with pytest.raises(ConfigError, match=rf"host-start-.*\.lock' {link}"), runtime.host_start_lock(config):
        pass
    with (
        pytest.raises(ConfigError, match=rf"middleware-.*\.json' {link}"),
        runtime.MachineLock("middleware", config, record=True),
    ):
        pass
    # A status cache entry that is a link is not read, and writing replaces the link itself.
    entry = config_status._disk_cache_name(("k",))
    plant_as_other(rt / config_status.CACHE_DIRNAME, {entry: canary.file}, through=(rt,))
    assert config_status._read_disk_cache(("k",)) is None
    config_status._write_disk_cache(("k",), {"config": {"port": 1}})
    assert not (rt / config_status.CACHE_DIRNAME / entry).is_symlink()
    assert config_status._read_disk_cache(("k",)) == {"config": {"port": 1}}
    canary.assert_untouched()


# Swaps a link to her folder (or to one of the victim's) into place, and now
# and then leaves the name free, so that the victim may also win the race.
RACER = """
import os, sys, time
name, hers, victims, stop = sys.argv[1:5]
deadline = time.monotonic() + 60
i = 0
while time.monotonic() < deadline and not os.path.exists(stop):
    temp = f"{name}.{i % 2}"
    try:
        os.symlink(hers if i % 2 else victims, temp)
        os.rename(temp, name)
    except OSError:
        pass
    if i % 5 == 0:
        try:
            os.unlink(name)
        except OSError:
            pass
    i += 1
print("swaps", i, flush=True)
"""


@requires_root
@pytest.mark.timeout(240)
def test_a_link_swapped_into_place_during_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, victim: dict[str, Any]
) -> None:
    with shared_tmp() as shared:
        hers = attacker_dir(shared)
        canary = Canary(shared / "victims")
        name = shared / f"js-host-{UID}"
        stop = shared / "stop"
        monkeypatch.setenv("TMPDIR", str(shared))
        racer = OtherUserProcess(
            RACER, str(name), str(hers), str(canary.folder), str(stop), log=tmp_path / "racer.log"
        )
        outcomes = []
        try:
            racer.spawn()
            # The race starts with her link in place; the victim may get the name in a gap.
            racer.wait_until(name.is_symlink, timeout=30)
            for _ in range(4):
                try:
                    outcomes.append(call_hello(victim))
                except JSHostError as err:
                    # Refused: the message names the place and what to set instead.
                    message = str(err)
                    assert str(name) in message and "JS_HOST_RUNTIME_DIR" in message, message
                    outcomes.append("refused")
                # The Node side in the same race: a private dir of the victim's, or the same refusal.
                node = subprocess.run(
                    ["node", "-e", NODE_SIDE, str(RUNTIME_JS)],
                    env=clean_env(TMPDIR=str(shared)),
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                seen = json.loads(node.stdout)
                assert seen == {"dir": str(name)} or (
                    str(name) in seen["error"] and "JS_HOST_RUNTIME_DIR" in seen["error"]
                ), seen
        finally:
            stop.touch()
            racer.stop()
            # While the runtime dir (if the victim won it) still exists.
            stop_manager(victim["config"], victim["before"])
        assert set(outcomes) <= {"Hello, World!", "refused"}, outcomes
        assert list(hers.iterdir()) == []
        canary.assert_untouched()
        if name.is_dir() and not name.is_symlink():
            # The victim won the race: the folder is hers for good, private.
            info = name.lstat()
            assert info.st_uid == UID and (info.st_mode & 0o077) == 0
