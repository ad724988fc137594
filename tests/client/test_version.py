"""The version is defined once (``js_host.__version__``); what must repeat it agrees."""

from __future__ import annotations

import json
import subprocess

import js_host
from tests.support.processes import BUNDLED_BIN, ROOT


def test_the_npm_package_and_the_node_host_report_the_python_version() -> None:
    package = json.loads((ROOT / "package.json").read_text())
    assert package["version"] == js_host.__version__, "set package.json's version to js_host.__version__"
    assert "version" not in json.loads((ROOT / "js_host" / "node" / "package.json").read_text())
    done = subprocess.run(["node", str(BUNDLED_BIN), "--version"], capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == js_host.__version__


def test_the_wheel_takes_the_python_version() -> None:
    done = subprocess.run(
        ["python3", "setup.py", "--version"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip().splitlines()[-1] == js_host.__version__


def test_one_distribution_name_on_both_indexes_and_not_the_2015_one() -> None:
    # "js-host" is the 2015 client on the package index (0.2.0) and the 2015 host on npm (0.12).
    done = subprocess.run(
        ["python3", "setup.py", "--name"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    name = done.stdout.strip().splitlines()[-1]
    assert name == json.loads((ROOT / "package.json").read_text())["name"] == "js-host-server"
