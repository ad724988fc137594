"""The pytest plugin for users (js_host/testing.py): a small sample project's own pytest run, in a
subprocess, with js_host installed from this checkout (so the plugin comes from its pytest11 entry
point), uses the fixtures to call its functions; no host is left behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.processes import ROOT
from tests.support.servers import pids_with

pytestmark = pytest.mark.timeout(300)

SAMPLE_TESTS = """
import js_host.testing
from js_host.conf import settings
from js_host.function import Function


def test_the_plugin_comes_from_the_entry_point(request):
    assert request.config.pluginmanager.get_plugin("js_host") is js_host.testing


def test_render(js_host):
    assert Function("render").call(name="World") == "<p>Hello, World!</p>"


def test_another_config(js_host_server, tmp_path):
    config = tmp_path / "other.config.js"
    config.write_text("module.exports = {functions: {twice: (data, cb) => cb(null, data.n * 2)}};")
    host = js_host_server(config, FUNCTION_TIMEOUT=5.0)
    assert settings.URL_OVERRIDE == host.get_url()
    assert Function("twice").call(n=21) == "42"
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of this checkout with its metadata (``setup.py egg_info``, as a develop install makes
    it): on the path, its entry points are what an installed js_host declares."""
    source = tmp_path_factory.mktemp("source")
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("node_modules", "__pycache__", "test")
    for package in ("js_host", "js_host_proxy"):
        shutil.copytree(ROOT / package, source / package, ignore=ignore)
    result = subprocess.run(
        [sys.executable, "setup.py", "--quiet", "egg_info"],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (entry_points,) = source.glob("*.egg-info/entry_points.txt")
    assert "[pytest11]" in entry_points.read_text()
    return source


def test_a_sample_project_uses_the_fixtures(installed: Path, tmp_path: Path) -> None:
    project = tmp_path / "sample"
    project.mkdir()
    config = project / "host.config.js"
    config.write_text(
        "module.exports = {functions: {\n"
        "  render: (data, cb) => cb(null, '<p>Hello, ' + data.name + '!</p>'),\n"
        "}};\n"
    )
    (project / "pytest.ini").write_text("[pytest]\njs_host_config = host.config.js\n")
    (project / "test_sample.py").write_text(textwrap.dedent(SAMPLE_TESTS))
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env["PYTHONPATH"] = str(installed)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout, result.stdout
    assert not pids_with(str(config)) and not pids_with("other.config.js"), "a host was left running"


def test_importing_the_plugin_starts_nothing_and_reads_no_settings() -> None:
    code = textwrap.dedent(
        """
        import sys
        import js_host, pytest
        before = set(sys.modules)
        import js_host.testing
        from js_host.conf import settings
        assert not settings.configured
        loaded = sorted(name for name in set(sys.modules) - before if name.startswith("js_host"))
        assert loaded == ["js_host.testing"], loaded
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
