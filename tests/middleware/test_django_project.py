"""A real small Django project in a temp dir, set up as the README's Django section says, run by
``manage.py``: runserver picks up edits of the config and of a module it loads (made before the
server started, too; also with the polling watcher), management commands start no host, and the
production recipe answers 503 while the host is down, then recovers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from js_host.host import JSHost
from tests.support.processes import BUNDLED_BIN, NodeProcess, free_port
from tests.support.servers import Server, base_env, get, pids_with, reap
from tests.support.waiting import wait_for

pytest.importorskip("django")
pytestmark = pytest.mark.timeout(180)

CONFIG = """\
'use strict';
const component = require('./component');
module.exports = {
  port: %(port)d,
  disconnectTimeout: 300,
  functions: {
    answer: function(data, cb) { cb(null, %(prefix)s + component.text); }
  }
};
"""

SETTINGS = """\
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "test"
DEBUG = os.environ.get("DJANGO_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"
INSTALLED_APPS = ["js_host"]

JS_HOST = {
    "SOURCE_ROOT": str(BASE_DIR),
    "USE_MANAGER": DEBUG,
}
"""

# The README's production additions.
PRODUCTION_SETTINGS = """
if not DEBUG:
    JS_HOST["URL_OVERRIDE"] = os.environ["JS_HOST_URL"]
MIDDLEWARE = ["js_host.django.ReportErrorsMiddleware"]
"""

URLS = """\
from django.http import HttpResponse
from django.urls import path

from js_host.function import Function

answer = Function("answer")

urlpatterns = [path("", lambda request: HttpResponse(answer.call(), content_type="text/plain"))]
"""

# As `django-admin startproject` writes it.
WSGI = """\
import os
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
application = get_wsgi_application()
"""

# The README's production wsgi.py.
WRAPPED_WSGI = """\
import os
from django.core.wsgi import get_wsgi_application
from js_host.middleware import JSHostMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
application = JSHostMiddleware(get_wsgi_application())
"""

MANAGE = """\
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""


def write_project(root: Path, *, port: int, production_recipe: bool = False) -> Path:
    (root / "mysite").mkdir(parents=True)
    (root / "manage.py").write_text(MANAGE)
    (root / "mysite" / "__init__.py").write_text("")
    (root / "mysite" / "settings.py").write_text(
        SETTINGS + (PRODUCTION_SETTINGS if production_recipe else "")
    )
    (root / "mysite" / "urls.py").write_text(URLS)
    (root / "mysite" / "wsgi.py").write_text(WRAPPED_WSGI if production_recipe else WSGI)
    (root / "component.js").write_text("module.exports = {text: 'v1'};\n")
    return write_config(root, port=port, prefix="a-")


def write_config(root: Path, *, port: int, prefix: str) -> Path:
    config = root / "host.config.js"
    config.write_text(CONFIG % {"port": port, "prefix": repr(prefix)})
    return config


def edit(path: Path, text: str) -> None:
    """Write ``text`` and make the change visible whatever the filesystem's mtime resolution."""
    path.write_text(text)
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 2_000_000_000))


def project_env(root: Path, **extra: str) -> dict[str, str]:
    # The project imports js_host from this checkout, like an installed package.
    checkout = str(Path(__file__).resolve().parents[2])
    return base_env(PYTHONPATH=os.pathsep.join([str(root), checkout]), **extra)


def manage(root: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )


def runserver(root: Path, port: int, env: dict[str, str], *extra: str) -> Server:
    cmd = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", *extra]
    return Server(cmd, env=env, log=root / f"runserver-{port}.log", cwd=root)


def start_runserver(root: Path, port: int, env: dict[str, str], *extra: str) -> Server:
    def listening() -> bool:
        try:
            get(f"http://127.0.0.1:{port}/favicon.ico", timeout=5)  # 404: no function called
        except OSError:
            return False
        return True

    server = runserver(root, port, env, *extra)
    server.spawn()
    server.wait_until(listening, 60, interval=0.2)
    return server


def test_runserver_shows_each_edit_and_commands_start_no_host(tmp_path: Path, runtime_dir: Path) -> None:
    manager_port, app_port = free_port(), free_port()
    root = tmp_path / "project"
    config = write_project(root, port=manager_port)
    base = f"http://127.0.0.1:{app_port}/"

    # Management commands call no function: no host, in development and in production (no host up).
    for debug in ("0", "1"):
        checked = manage(root, "check", env=project_env(root, DJANGO_DEBUG=debug))
        assert checked.returncode == 0, checked.stderr
        assert "System check identified no issues" in checked.stdout, checked.stdout
        assert not pids_with(str(config)), "manage.py check started a js-host process"

    # A host running the old code outlives the Python processes (another one holds a connection):
    # an edit made before runserver started is seen at its first request.
    shell = JSHost(str(config), use_manager=True, bin_path=str(BUNDLED_BIN)).connect()
    server = None
    try:
        edit(root / "component.js", "module.exports = {text: 'v2'};\n")
        server = start_runserver(root, app_port, project_env(root, DJANGO_DEBUG="1"))
        first = get(base)
        assert (first.status, first.body) == (200, "a-v2"), (first, server.log)

        # An edit of a module the config loads, then of the config itself: the next request.
        edit(root / "component.js", "module.exports = {text: 'v3'};\n")
        assert get(base).body == "a-v3", server.log
        write_config(root, port=manager_port, prefix="b-")
        edit(config, config.read_text())
        assert get(base).body == "b-v3", server.log
    finally:
        if server is not None:
            server.stop(signal.SIGINT)  # Ctrl-C: the server process closes its connection at exit
        shell.disconnect()
    left = reap(str(config))
    assert not left, f"processes left after runserver stopped: {left}"


def test_runserver_with_a_polling_watcher_shows_an_edit(tmp_path: Path, runtime_dir: Path) -> None:
    # JS_HOST_WATCH_POLLING=1 (what a bind mount without file events needs): the watcher's thread
    # sees the edit of the module the config requires within a pass; no watch= names it.
    manager_port, app_port = free_port(), free_port()
    root = tmp_path / "project"
    config = write_project(root, port=manager_port)
    base = f"http://127.0.0.1:{app_port}/"
    env = project_env(root, DJANGO_DEBUG="1", JS_HOST_WATCH_POLLING="1")
    server = start_runserver(root, app_port, env, "--noreload")
    try:
        assert get(base).body == "a-v1", server.log
        edit(root / "component.js", "module.exports = {text: 'v2'};\n")
        wait_for(lambda: get(base).body == "a-v2", what="the edit under runserver")
    finally:
        server.stop(signal.SIGINT)
    left = reap(str(config))
    assert not left, f"processes left after runserver stopped: {left}"


def test_production_recipe_answers_503_then_recovers(tmp_path: Path, runtime_dir: Path) -> None:
    host_port, app_port = free_port(), free_port()
    root = tmp_path / "project"
    config = write_project(root, port=host_port, production_recipe=True)
    env = project_env(root, DJANGO_DEBUG="0", JS_HOST_URL=f"http://127.0.0.1:{host_port}")
    base = f"http://127.0.0.1:{app_port}/"
    server = start_runserver(root, app_port, env, "--noreload")
    host = None
    try:
        down = get(base)
        assert down.status == 503, (down, server.log)
        assert down.headers["retry-after"].isdigit()
        assert "JavaScript host is not reachable" in down.body

        host = NodeProcess(BUNDLED_BIN, config, "--port", str(host_port), logdir=tmp_path).start()
        # Back within about a second (probe_interval), well before Retry-After's 5 s on a calm machine:
        # not timed here; the point is that it recovers by itself.
        recovered = wait_for(lambda: get(base).status == 200 or None, what="recovery after the host is back")
        assert recovered
        assert get(base).body == "a-v1"
    finally:
        server.stop()
        if host is not None:
            host.stop()


def test_development_recipe_shows_a_crash_once(tmp_path: Path, runtime_dir: Path) -> None:
    manager_port, app_port = free_port(), free_port()
    root = tmp_path / "project"
    config = write_project(root, port=manager_port, production_recipe=True)
    server = start_runserver(root, app_port, project_env(root, DJANGO_DEBUG="1"), "--noreload")
    base = f"http://127.0.0.1:{app_port}/"
    try:
        assert get(base).body == "a-v1", server.log
        # A crash between requests: the page, once, with the signal; then the host is back.
        for pid in pids_with(str(config)):
            if "--manager" not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                os.kill(pid, 9)
        crashed = get(base)
        assert crashed.status == 500 and "signal SIGKILL" in crashed.body, (crashed, server.log)
        assert '<pre id="log">' in crashed.body
        assert get(base).body == "a-v1", server.log
    finally:
        server.stop(signal.SIGINT)
    left = reap(str(config))
    assert not left, f"processes left after runserver stopped: {left}"
