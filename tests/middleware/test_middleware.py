"""JSHostMiddleware under real gunicorn (2 workers; sync and gthread; with and
without --preload) in front of real js-host processes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.support.processes import BUNDLED_BIN, NodeProcess, free_port
from tests.support.servers import (
    assert_down_page,
    base_env,
    get,
    gunicorn,
    hit_all_workers,
    reap,
    replies_of_every_worker,
    wait_for_every_worker_to_recover,
)
from tests.support.waiting import wait_for
from tests.support.wsgi_app import HOST_BIN, write_test_config

pytestmark = pytest.mark.timeout(120)

APP = "tests.support.wsgi_app:application"
MODES = [("sync", False), ("sync", True), ("gthread", False), ("gthread", True)]
MODE_IDS = [f"{cls}{'-preload' if preload else ''}" for cls, preload in MODES]


def start_host(config: Path, port: int, tmp_path: Path) -> NodeProcess:
    return NodeProcess(HOST_BIN, config, "--port", str(port), logdir=tmp_path).start()


@pytest.mark.parametrize(("worker_class", "preload"), MODES, ids=MODE_IDS)
def test_production_every_worker_answers_then_503_then_recovers(
    tmp_path: Path, worker_class: str, preload: bool
) -> None:
    host_port, app_port = free_port(), free_port()
    config = write_test_config(tmp_path / "host.config.js", port=host_port)
    host = start_host(config, host_port, tmp_path)
    env = base_env(
        JS_HOST_TEST_MODE="production",
        JS_HOST_TEST_CONFIG=str(config),
        JS_HOST_TEST_URL=f"http://127.0.0.1:{host_port}",
        JS_HOST_BIN_PATH=str(HOST_BIN),
    )
    server = gunicorn(
        APP, app_port, worker_class=worker_class, preload=preload, env=env, log=tmp_path / "gunicorn.log"
    )
    base = f"http://127.0.0.1:{app_port}"
    try:
        server.start(f"{base}/health")
        replies = hit_all_workers(f"{base}/slow", 2)
        assert len(replies) == 2, replies
        for pid, reply in replies.items():
            assert reply.status == 200
            assert reply.body == f"{pid} answer-v1"

        host.stop()
        assert_down_page(base)
        host = start_host(config, host_port, tmp_path)
        wait_for_every_worker_to_recover(base, 2)
    finally:
        server.stop()
        host.stop()


DEV_MODES = [("sync", False), ("gthread", True)]


@pytest.mark.parametrize(("worker_class", "preload"), DEV_MODES, ids=["sync", "gthread-preload"])
def test_development_restart_on_edit_crash_page_and_no_process_left(
    tmp_path: Path, runtime_dir: Path, worker_class: str, preload: bool
) -> None:
    manager_port, app_port = free_port(), free_port()
    # A single-process host: its crash is the host's (a pooled one's is a worker's, replaced by
    # the host: test_middleware_pool.py).
    config = write_test_config(tmp_path / "host.config.js", port=manager_port, workers=0)
    watched = tmp_path / "component.js"  # e.g. a module the config requires
    watched.write_text("// v1\n")
    env = base_env(
        JS_HOST_TEST_MODE="development",
        JS_HOST_TEST_CONFIG=str(config),
        JS_HOST_BIN_PATH=str(HOST_BIN),
        JS_HOST_RUNTIME_DIR=str(runtime_dir),
        JS_HOST_TEST_WATCH=str(watched),
    )
    server = gunicorn(
        APP, app_port, worker_class=worker_class, preload=preload, env=env, log=tmp_path / "gunicorn.log"
    )
    base = f"http://127.0.0.1:{app_port}"
    try:
        server.start(f"{base}/health")
        replies = hit_all_workers(f"{base}/slow", 2)
        assert len(replies) == 2, (replies, server.log)
        assert all(reply.body.endswith(" answer-v1") for reply in replies.values()), replies

        # An edit of the config file restarts the host before the next request.
        write_test_config(config, port=manager_port, answer="answer-v2", workers=0)
        bump_mtime(config)
        replies = hit_all_workers(f"{base}/slow", 2)
        assert len(replies) == 2
        assert all(reply.body.endswith(" answer-v2") for reply in replies.values()), replies

        # So does a change of a file given in watch=[...].
        before = get(f"{base}/pid").body.split()[1]
        watched.write_text("// v2\n")
        bump_mtime(watched)
        after = {reply.body.split()[1] for reply in hit_all_workers(f"{base}/pid", 2).values()}
        assert after and before not in after, (before, after)

        # A crash during a call: 500 page naming the logfile, with its last lines (escaped), and
        # how the host ended; shown once: the next request, in every worker, starts the host again.
        crashed = get(f"{base}/crash")
        assert crashed.status == 500, crashed
        assert crashed.headers["content-type"].startswith("text/html")
        assert "Logfile:" in crashed.body and '<pre id="log">' in crashed.body, crashed.body
        assert "boom from the crash function" in crashed.body, crashed.body
        # js-host 0.11's manager does not say how a host ended (JS_HOST_TEST_IMPL=npm-0.11), nor
        # which host process crashed: each worker may show the crash once then.
        if HOST_BIN == BUNDLED_BIN:
            assert "The host process ended: exit code 1." in crashed.body, crashed.body
            assert_every_worker_answers(f"{base}/slow", "answer-v2")

            # A crash between requests (here SIGKILL): the next request gets the page, once.
            os.kill(int(get(f"{base}/pid").body.split()[1]), signal.SIGKILL)
            killed = get(f"{base}/")
            assert killed.status == 500, killed
            assert "signal SIGKILL" in killed.body and '<pre id="log">' in killed.body, killed.body
            assert_every_worker_answers(f"{base}/slow", "answer-v2")
        else:
            wait_for(lambda: all_workers_answer(f"{base}/slow", "answer-v2"), what="every worker")

        if worker_class == "sync":
            # A broken config: the page shows the error; the fix works on the next request.
            config.write_text("module.exports = {functions: {answer: function(data, cb) { cb(null, 'x') }};")
            bump_mtime(config)
            broken = get(f"{base}/")
            assert broken.status == 500 and "text/html" in broken.headers["content-type"], broken
            assert "SyntaxError" in broken.body or "Unexpected" in broken.body, broken.body
            write_test_config(config, port=manager_port, answer="answer-v3", workers=0)
            bump_mtime(config)
            fixed = wait_for(lambda: get(f"{base}/slow").body.endswith("answer-v3") and True, what="fixed")
            assert fixed
    finally:
        server.stop()
    left = reap(str(config))
    assert not left, f"processes left after gunicorn stopped: {left}\n{server.log}"


def all_workers_answer(url: str, answer: str) -> bool:
    """Whether every reply is the answer, to requests sent until each worker has answered."""
    return not wrong_replies(url, answer)


def assert_every_worker_answers(url: str, answer: str) -> None:
    wrong = wrong_replies(url, answer)
    assert not wrong, wrong


def wrong_replies(url: str, answer: str) -> list:
    replies = replies_of_every_worker(url, 2)
    return [reply for reply in replies if reply.status != 200 or not reply.body.endswith(f" {answer}")]


def bump_mtime(path: Path) -> None:
    """Make the edit visible whatever the filesystem's mtime resolution."""
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 2_000_000_000))
