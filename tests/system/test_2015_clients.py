"""The 2015 Python clients against the bundled host: PyPI js-host 0.1.4 (which wants a host that
announces js-host 0.11) and 0.2.0 (0.12), each installed from the package index in a fresh venv.

The host announces the js-host protocol it speaks as /status's ``version`` (0.11.7 by default,
a config's ``protocolVersion`` for the other), and its own release as ``packageVersion``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.processes import BUNDLED_BIN, NodeProcess, free_port

#: Each 2015 client, and the protocol version it accepts (its ``supported_version``).
CLIENTS = {"0.1.4": "0.11", "0.2.0": "0.12"}

CLIENT_SCRIPT = """
import sys
from js_host.conf import settings
from js_host.function import Function
settings.configure(PATH_TO_BIN=sys.argv[1], SOURCE_ROOT=sys.argv[2], VERBOSITY=0)
print(Function('hello_world').call(name='2015'))
"""


@pytest.fixture(scope="module", params=sorted(CLIENTS))
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """(the client's version, the python of a venv with it installed from the package index)."""
    version = request.param
    venv = tmp_path_factory.mktemp(f"js-host-{version}") / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=120)
    python = venv / "bin" / "python"
    done = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", f"js-host=={version}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return version, python


def run_client(python: Path, app: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-c", CLIENT_SCRIPT, str(BUNDLED_BIN), str(app)],
        cwd=app,
        capture_output=True,
        text=True,
        timeout=60,
    )


def write_app(tmp_path: Path, protocol: str | None) -> tuple[Path, int]:
    """A folder with a host.config.js on a free port (announcing ``protocol``, if given)."""
    app = tmp_path / "app"
    app.mkdir(exist_ok=True)
    props = {"port": free_port()}
    if protocol is not None:
        props["protocolVersion"] = protocol
    extra = "".join(f"  {key}: {json.dumps(value)},\n" for key, value in props.items())
    (app / "host.config.js").write_text(
        "module.exports = {\n" + extra + "  functions: {\n"
        "    hello_world: function(data, cb) { cb(null, 'Hello, ' + (data.name || 'World') + '!'); }\n"
        "  }\n};\n"
    )
    return app, props["port"]


@pytest.mark.timeout(900)
def test_a_2015_client_calls_the_bundled_host_announcing_its_protocol(
    client: tuple[str, Path], tmp_path: Path, start_host: Callable[..., NodeProcess]
) -> None:
    version, python = client
    wanted = CLIENTS[version]
    # The default announces 0.11; the 0.2.0 client's users set protocolVersion: '0.12.0'.
    app, port = write_app(tmp_path, None if wanted == "0.11" else "0.12.0")
    # On the config's port: the 2015 clients compare the live status with the config's.
    host = start_host(app / "host.config.js", "--port", str(port))
    assert host.status["version"].startswith(wanted + ".")
    done = run_client(python, app)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "Hello, 2015!"


@pytest.mark.timeout(900)
def test_a_2015_client_names_the_protocol_it_wants_from_a_host_announcing_another(
    client: tuple[str, Path], tmp_path: Path, start_host: Callable[..., NodeProcess]
) -> None:
    version, python = client
    other = "0.12.0" if CLIENTS[version] == "0.11" else None  # None: the default, 0.11.7
    app, port = write_app(tmp_path, other)
    start_host(app / "host.config.js", "--port", str(port))
    done = run_client(python, app)
    assert done.returncode != 0
    assert f"Version {CLIENTS[version]} of the js-host JavaScript library is supported" in done.stderr
