"""The development manager, with both implementations: spawning, pooling by
config path, connections, the timed stop after the last disconnect, a crashed
host, stop/start/restart, and the manager secret."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from js_host.conf import settings
from js_host.endpoint import is_loopback
from js_host.exceptions import ConfigError, ConnectionError, ProcessError, WorkerDied  # noqa: A004
from js_host.function import Function
from js_host.host import JSHost
from js_host.manager import JSHostManager
from js_host.runtime import manager_secret, runtime_dir
from tests.support.client import config_port, host_of, pid_alive, write_config
from tests.support.processes import NPM_BIN, ROOT, free_port, kind_config, suite_processes
from tests.support.waiting import wait_for


@pytest.fixture(params=["bundled", "npm-0.11"])
def impl(request: pytest.FixtureRequest) -> str:
    """Both implementations of the manager. No "pool" kind here: the bundled manager's hosts
    already run a pool (of one worker, unless their config sets ``workers``)."""
    return request.param


def test_configure_spawns_the_manager_and_the_host(manager_env, impl) -> None:
    settings.configure(VERBOSITY=0, **manager_env["settings"])
    from js_host.host import host

    assert host.manager is not None and host.manager.is_running()
    assert host.manager.get_url() == f"http://127.0.0.1:{port_of(manager_env)}"
    assert host.connection
    assert host.is_running() and host.get_url() != host.manager.get_url()
    assert Function("hello_world").call(name="M") == "Hello, M!"
    assert host.logfile and wait_for(lambda: os.path.exists(host.logfile), 5)
    if impl == "bundled":  # read right after the answer: its lines are already there
        assert Function("echo").call(text="logged") == "logged"
        log = Path(host.logfile).read_text()
        assert "Host: calling function echo\n" in log and "Host: function echo completed\n" in log, log
    # The manager listens on the config's port: the runtime dir holds the secret.
    assert stat.S_IMODE(os.stat(manager_env["runtime"]).st_mode) == 0o700
    if impl == "npm-0.11":  # js-host 0.11's manager has no authentication: no secret is made for it
        assert not (manager_env["runtime"] / "manager.secret").exists()
        return
    secret = (manager_env["runtime"] / "manager.secret").read_text()
    assert len(secret) == 64 and int(secret, 16) >= 0
    assert stat.S_IMODE(os.stat(manager_env["runtime"] / "manager.secret").st_mode) == 0o600


def test_the_default_host_imported_before_configure_follows_the_settings(manager_env) -> None:
    settings.reset()
    from js_host.host import host  # bound before configure(), as an application module does

    settings.configure(VERBOSITY=0, **manager_env["settings"])
    assert host.manager is not None and host.use_manager
    first = int(Function("pid").call())
    assert host.restart() is not None
    assert int(Function("pid").call()) != first
    assert "default host" in repr(host) and str(manager_env["config"]) in repr(host)


def port_of(manager_env) -> int:
    from js_host.host import host

    return int(host.get_config_status()["config"]["port"])


def test_hosts_are_pooled_by_config_path(manager_env) -> None:
    settings.configure(VERBOSITY=0, **manager_env["settings"])
    from js_host.host import host

    other = JSHost(
        str(manager_env["config"]), use_manager=True, bin_path=manager_env["settings"].get("BIN_PATH")
    )
    other.connect()
    assert other.get_url() == host.get_url()
    assert other.connection != host.connection
    assert host_of(int(Function("pid", host=other).call())) == host_of(int(Function("pid").call()))


def test_host_stops_after_the_last_disconnect_and_the_manager_exits(manager_env, caplog) -> None:
    settings.configure(VERBOSITY=0, **manager_env["settings"])
    from js_host.host import host

    manager = host.manager
    host_pid = host_of(int(Function("pid").call()))
    host.disconnect()
    assert host.connection is None
    # disconnectTimeout is 300 ms in this config.
    assert wait_for(lambda: not pid_alive(host_pid)), "the host did not stop"
    assert wait_for(lambda: not manager.is_running()), "the manager did not exit"
    # Stopping a manager that exited on its own is nothing to do, not an error.
    with caplog.at_level("DEBUG", logger="js_host.manager"):
        manager.stop()
    assert "is not running: nothing to stop" in caplog.text


def test_a_one_millisecond_disconnect_timeout_still_serves_calls(manager_env, tmp_path) -> None:
    # The 2015 suites' config: disconnectTimeout 1. The host must wait for the client that
    # started it to connect (the timer runs from a disconnect only, as in js-host 0.11).
    config = write_config(tmp_path, name="quick.config.js", port=free_port(), disconnectTimeout=1)
    try:
        settings.configure(VERBOSITY=0, CONFIG_FILE=str(config), **manager_env["settings"])
        assert Function("hello_world").call(name="quick") == "Hello, quick!"
        from js_host.host import host

        host_pid = int(Function("pid").call())
        host.disconnect()
        assert wait_for(lambda: not pid_alive(host_pid)), "the host did not stop after its last disconnect"
    finally:
        settings.reset()
        with contextlib.suppress(Exception):
            manager = JSHostManager(str(config), bin_path=manager_env["settings"].get("BIN_PATH"))
            if manager.is_running():
                manager.stop()


def test_reconnecting_before_the_timeout_keeps_the_host(manager_env) -> None:
    settings.configure(VERBOSITY=0, **manager_env["settings"])
    from js_host.host import host

    host_pid = host_of(int(Function("pid").call()))
    host.disconnect()
    host.connect()
    assert host_of(int(Function("pid").call())) == host_pid


def test_a_crashed_host_raises_process_error_naming_its_logfile(manager_env) -> None:
    settings.configure(VERBOSITY=0, **manager_env["settings"])
    from js_host.host import host

    os.kill(host_of(int(Function("pid").call())), signal.SIGKILL)
    with pytest.raises(ProcessError) as info:
        wait_for(lambda: Function("echo").call(text="x") and False, 5)
    assert host.logfile in str(info.value)
    assert "Last lines" in str(info.value)


def test_a_function_throwing_later_fails_its_call_with_the_error_in_the_log(manager_env, impl) -> None:
    settings.configure(VERBOSITY=0, **manager_env["settings"])
    from js_host.host import host

    if impl != "npm-0.11":  # the project's managed hosts run a pool (1 worker unless the config says more):
        # the exception kills only the worker running the call, and the host lives on
        with pytest.raises(WorkerDied) as died:
            Function("crash").call()
        assert host.logfile in str(died.value) and "Crashed on purpose" in died.value.cause
        assert wait_for(lambda: "Crashed on purpose" in Path(host.logfile).read_text(), 5)
        assert Function("echo").call(text="x") == "x"
        return
    with pytest.raises(ProcessError) as info:  # js-host 0.11: the host goes down
        Function("crash").call()
    assert host.logfile in str(info.value)


def test_stop_start_restart(manager_env) -> None:
    settings.configure(VERBOSITY=0, **manager_env["settings"])
    from js_host.host import host

    first = int(Function("pid").call())
    host.restart()
    second = int(Function("pid").call())
    assert second != first
    assert wait_for(lambda: not pid_alive(first))
    host.stop()
    assert wait_for(lambda: not pid_alive(second))
    assert wait_for(lambda: not host.is_running())
    host.connect()  # starts it again through the manager
    assert Function("hello_world").call() == "Hello, World!"


def test_the_manager_survives_the_python_process_and_disconnects_at_exit(manager_env, tmp_path) -> None:
    # A separate Python process connects, calls and exits: atexit disconnects
    # it, so the host stops after disconnectTimeout and the manager exits.
    script = textwrap.dedent(
        f"""
        from js_host.conf import settings
        from js_host.function import Function
        settings.configure(VERBOSITY=0, **{manager_env["settings"]!r})
        from js_host.host import host
        print(Function("pid").call(), host.manager.get_url())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    pid_text, url = result.stdout.split()
    manager = JSHostManager(str(manager_env["config"]), bin_path=manager_env["settings"].get("BIN_PATH"))
    assert manager.get_url() == url
    assert wait_for(lambda: not pid_alive(int(pid_text))), "the host did not stop after the disconnect"
    assert wait_for(lambda: not manager.is_running())


def test_start_without_a_manager_is_a_config_error(manager_env) -> None:
    host = JSHost(str(manager_env["config"]), use_manager=False)
    with pytest.raises(ConfigError):
        host.restart()


def test_runtime_dir_must_be_private(tmp_path, monkeypatch) -> None:
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    monkeypatch.setenv("JS_HOST_RUNTIME_DIR", str(loose))
    assert runtime_dir() == str(loose)
    with pytest.raises(ConfigError) as info:
        manager_secret()
    assert str(loose) in str(info.value) and "chmod 700" in str(info.value)


def test_runtime_dir_defaults(monkeypatch) -> None:
    monkeypatch.delenv("JS_HOST_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1")
    assert runtime_dir() == "/run/user/1/js-host"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setenv("TMPDIR", "/var/tmp")
    assert runtime_dir() == f"/var/tmp/js-host-{os.getuid()}"
    monkeypatch.setenv("TMPDIR", "")
    assert runtime_dir() == f"/tmp/js-host-{os.getuid()}"


def test_a_relative_runtime_dir_is_made_absolute(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JS_HOST_RUNTIME_DIR", "rt")
    assert runtime_dir() == str(tmp_path / "rt")
    assert manager_secret() == (tmp_path / "rt" / "manager.secret").read_text()
    monkeypatch.delenv("JS_HOST_RUNTIME_DIR")
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", "tmp")
    assert runtime_dir() == str(tmp_path / "tmp" / f"js-host-{os.getuid()}")


def test_the_secret_is_read_without_surrounding_whitespace(tmp_path, monkeypatch) -> None:
    runtime = tmp_path / "rt"
    runtime.mkdir(mode=0o700)
    (runtime / "manager.secret").write_text("ab" * 32 + "\n")
    os.chmod(runtime / "manager.secret", 0o600)  # a secret others can read is refused
    monkeypatch.setenv("JS_HOST_RUNTIME_DIR", str(runtime))
    assert manager_secret() == "ab" * 32


def test_the_config_status_cache_is_read_only_from_private_files(tmp_path, monkeypatch, caplog) -> None:
    # A cached status decides where calls go: another user must not be able to plant one.
    import logging

    from js_host import config_status

    runtime = tmp_path / "rt"
    monkeypatch.setenv("JS_HOST_RUNTIME_DIR", str(runtime))
    config = write_config(tmp_path, port=9)
    runs: list[str] = []

    def run_config(path_to_node, bin_path, config_file, manager):
        runs.append(config_file)
        return {"config": {"port": 9}}

    monkeypatch.setattr(config_status, "_run_config", run_config)

    def port_read() -> int:  # as a new process reads it: from disk
        config_status.clear_cache()
        return config_status.read_config_status("node", str(NPM_BIN), str(config))["config"]["port"]

    try:
        assert port_read() == 9 and len(runs) == 1
        (cache,) = (runtime / "config-status").iterdir()

        def plant(mode: int = 0o600, uid: int = -1) -> None:
            cache.write_text(json.dumps({"config": {"port": 6666}}))
            os.chmod(cache, mode)
            os.chown(cache, uid, -1)

        plant()
        assert port_read() == 6666 and len(runs) == 1  # ours: used
        for mode in (0o620, 0o602):
            plant(mode)
            assert port_read() == 9, oct(mode)
        assert len(runs) == 3
        if os.getuid() == 0:
            plant(uid=os.getuid() + 4242)
            assert port_read() == 9 and len(runs) == 4
        # A runtime dir that others can enter is not read (nor written) at all.
        plant()
        os.chmod(runtime, 0o755)
        caplog.set_level(logging.DEBUG, logger="js_host.config_status")
        count = len(runs)
        assert port_read() == 9 and len(runs) == count + 1
        assert any(str(runtime) in r.getMessage() and "chmod 700" in r.getMessage() for r in caplog.records)
    finally:
        config_status.clear_cache()


def test_secret_get_or_create_agrees_between_processes(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("JS_HOST_RUNTIME_DIR", str(tmp_path / "rt"))
    code = "from js_host.runtime import manager_secret; print(manager_secret())"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    secrets = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(secrets) == 1
    assert secrets == {manager_secret()}
    assert os.listdir(tmp_path / "rt") == ["manager.secret"]


def host_connections(host) -> list[str]:
    data = host.manager.request_host_status(host.config_file)
    assert data["started"], data
    return data["host"]["connections"]


@pytest.mark.parametrize("how", ["start", "restart"])
def test_after_a_crash_start_and_restart_open_a_new_connection(manager_env, how) -> None:
    # The new host process knows nothing of the old connection: the client must open
    # a new one, or the manager never stops the new host.
    settings.configure(VERBOSITY=0, **manager_env["settings"])
    from js_host.host import host

    old_connection = host.connection
    crashed = host_of(int(Function("pid").call()))
    os.kill(crashed, signal.SIGKILL)
    assert wait_for(lambda: not host.manager.request_host_status(host.config_file)["started"])
    getattr(host, how)()
    new_pid = host_of(int(Function("pid").call()))
    assert new_pid != crashed
    assert host.connection and host.connection != old_connection
    assert host_connections(host) == [host.connection]
    host.disconnect()  # the last connection: the manager stops the new host
    assert wait_for(lambda: not pid_alive(new_pid)), "the host started after the crash was not stopped"


FORK_SCRIPT = """
import json, os, sys
from js_host.conf import settings
from js_host.function import Function

settings.configure(VERBOSITY=0, CONNECT_ONCE_CONFIGURED={connect_in_parent}, **{settings!r})
from js_host.host import host

def fork_worker():
    # A gunicorn worker: connects on its first call, exits normally (atexit runs).
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        Function("pid").call()
        os.write(write_fd, host.connection.encode())
        sys.exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as fh:
        connection = fh.read()
    assert os.waitpid(pid, 0)[1] == 0
    return connection

report = {{"parent": host.connection, "workers": [fork_worker(), fork_worker()]}}
report["after"] = host.manager.request_host_status(host.config_file)["host"]["connections"]
report["host_pid"] = int(Function("pid").call())  # the parent is connected from here on
print(json.dumps(report))
"""


@pytest.mark.parametrize("connect_in_parent", [True, False], ids=["parent-connected", "parent-not-connected"])
def test_forked_workers_each_close_their_own_connection_at_exit(manager_env, connect_in_parent) -> None:
    # gunicorn --preload: the master imports the app (and maybe connects), then forks workers.
    # The manager listens on the fixture config's port; a longer disconnectTimeout keeps the
    # host running between the workers' exits.
    port = config_port(manager_env["config"])
    write_config(manager_env["config"].parent, name="fork.config.js", port=port, disconnectTimeout=3000)
    fork_settings = {**manager_env["settings"], "CONFIG_FILE": "fork.config.js"}
    script = FORK_SCRIPT.format(connect_in_parent=connect_in_parent, settings=fork_settings)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    workers, parent = report["workers"], report["parent"]
    assert all(workers) and len(set(workers)) == 2 and parent not in workers, report
    assert bool(parent) == connect_in_parent
    # Each worker closed its own connection when it exited, and only its own.
    assert report["after"] == ([parent] if connect_in_parent else []), report
    # The parent closed its connection at exit: the host stops.
    assert wait_for(lambda: not pid_alive(report["host_pid"])), "the host was not stopped"


CONCURRENT_START_SCRIPT = """
import os, time
from js_host.conf import settings
settings.configure(VERBOSITY=0, CONNECT_ONCE_CONFIGURED=False, **{settings!r})
from js_host.host import host
host.manager.start()
open(os.path.join({directory!r}, "ready-%d" % os.getpid()), "w").close()
while not os.path.exists(os.path.join({directory!r}, "go")):
    time.sleep(0.002)
host.start()
print(host.get_url())
"""


def test_concurrent_starts_run_one_host(manager_env, tmp_path, impl) -> None:
    # js-host 0.11's manager spawns one host per concurrent /host/start (and forgets
    # all but the last): the client starts hosts one process at a time.
    directory = tmp_path / "start"
    directory.mkdir()
    script = CONCURRENT_START_SCRIPT.format(settings=manager_env["settings"], directory=str(directory))
    config = str(manager_env["config"])
    # The scripts open no connection: a host they started is stopped disconnectTimeout after
    # it started, which must not pass before the count below (the fixture stops it anyway).
    write_config(
        manager_env["config"].parent,
        port=config_port(manager_env["config"]),
        disconnectTimeout=20_000,
        **kind_config(impl),
    )
    manager = JSHostManager(config, bin_path=manager_env["settings"].get("BIN_PATH"))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        assert wait_for(lambda: len(list(directory.glob("ready-*"))) == 4, 60), "the processes did not start"
        (directory / "go").touch()
        outputs = [proc.communicate(timeout=60) for proc in procs]
        assert all(proc.returncode == 0 for proc in procs), [err for _, err in outputs]
        assert len({out.strip() for out, _ in outputs}) == 1, outputs
        assert len(host_processes(config)) == 1, host_processes(config)
        assert os.listdir(manager_env["runtime"]).count(f"host-start-{lock_key(config)}.lock") == 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if manager.is_running():
            manager.stop()
        # A host that the manager lost track of would outlive it: stop the ones this test caused.
        with contextlib.suppress(AssertionError):  # still there after 5 s: killed below
            wait_for(lambda: not host_processes(config), 5)
        for pid in host_processes(config):
            os.kill(pid, signal.SIGKILL)


def lock_key(config: str) -> str:
    return hashlib.sha1(config.encode()).hexdigest()[:16]


def host_processes(config: str) -> set[int]:
    """PIDs of the hosts (not the manager) running ``config``."""
    return config_processes(config, managers=False)


def test_looking_at_a_managed_host_starts_nothing(manager_env) -> None:
    settings.configure(VERBOSITY=0, CONNECT_ONCE_CONFIGURED=False, **manager_env["settings"])
    from js_host.host import host

    assert not host.is_running()
    assert host.request_status() is None
    assert "not started" in host.get_name()
    assert str(manager_env["config"]) in repr(host.manager)
    with pytest.raises(ConnectionError) as info:
        host.get_url()
    assert "not started" in str(info.value)
    assert not host.manager.is_running()
    assert config_processes(str(manager_env["config"])) == set()
    # Once started, the same calls describe it; once stopped, "not started" again.
    host.connect()
    assert host.is_running() and host.get_url() in host.get_name()
    host.stop()
    assert wait_for(lambda: not host.is_running())
    assert "not started" in host.get_name()


def hanging_listener() -> socket.socket:
    """A port held by a process that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def test_a_port_that_never_answers_is_a_process_error(manager_env, monkeypatch) -> None:
    from js_host import manager as manager_module

    monkeypatch.setattr(manager_module, "STATUS_TIMEOUT", 0.2)
    with hanging_listener() as sock:
        port = sock.getsockname()[1]
        write_config(manager_env["config"].parent, port=port, disconnectTimeout=300)
        manager = JSHostManager(str(manager_env["config"]), bin_path=manager_env["settings"].get("BIN_PATH"))
        assert manager.request_status() is None and not manager.is_running()
        with pytest.raises(ProcessError) as info:
            settings.configure(VERBOSITY=0, **manager_env["settings"])
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "Stop that process" in message


@pytest.mark.parametrize("address", ["10.1.2.3", "0.0.0.0", "example.com"])
def test_the_secret_is_never_sent_to_a_non_loopback_manager(manager_env, monkeypatch, address) -> None:
    from js_host import transport

    sent = []
    real_request = transport.pool.request

    def spy(*args, **kwargs):
        sent.append(args)
        return real_request(*args, **kwargs)

    write_config(manager_env["config"].parent, port=free_port(), address=address)
    manager = JSHostManager(str(manager_env["config"]), bin_path=manager_env["settings"].get("BIN_PATH"))
    monkeypatch.setattr(transport.pool, "request", spy)
    for look in (manager.is_running, manager.start):
        with pytest.raises(ConfigError) as info:
            look()
        # Refused by js_host, or already by the bundled manager reading its config.
        assert address in str(info.value) and "loopback" in str(info.value)
    assert sent == []


def test_is_loopback() -> None:
    for address in ("127.0.0.1", "127.3.2.1", "::1", "[::1]", "localhost", "LOCALHOST", "::ffff:127.0.0.1"):
        assert is_loopback(address), address
    for address in ("0.0.0.0", "10.0.0.1", "::", "192.168.1.1", "localhost.example.com", "128.0.0.1", ""):
        assert not is_loopback(address), address


def test_a_manager_refusing_the_secret_is_a_process_error(manager_env, monkeypatch, impl, caplog) -> None:
    if impl == "npm-0.11":
        pytest.skip("js-host 0.11 has no authentication")
    settings.configure(VERBOSITY=0, **manager_env["settings"])
    other = manager_env["runtime"].parent / "other-runtime"
    monkeypatch.setenv("JS_HOST_RUNTIME_DIR", str(other))  # another secret
    try:
        manager = JSHostManager(str(manager_env["config"]), bin_path=manager_env["settings"].get("BIN_PATH"))
        for _ in range(2):
            with pytest.raises(ProcessError) as info:
                manager.start()
            message = str(info.value)
            assert str(other / "manager.secret") in message and "stop that process" in message
        logged = [record for record in caplog.records if "could not prove" in record.getMessage()]
        assert len(logged) == 1
    finally:
        monkeypatch.setenv("JS_HOST_RUNTIME_DIR", str(manager_env["runtime"]))


def test_a_relative_runtime_dir_is_the_same_for_node(manager_env, monkeypatch, tmp_path, impl) -> None:
    if impl == "npm-0.11":
        pytest.skip("js-host 0.11 has no runtime dir")
    cwd = tmp_path / "cwd"  # not the config's directory, where the manager runs
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("JS_HOST_RUNTIME_DIR", "rt")
    settings.configure(VERBOSITY=0, **manager_env["settings"])
    assert Function("hello_world").call() == "Hello, World!"
    assert (cwd / "rt" / "manager.secret").exists()
    assert not (tmp_path / "rt").exists()


def config_processes(config: str, *, managers: bool = True) -> set[int]:
    """PIDs of the managers (unless ``managers`` is false) and hosts running ``config``
    (a pooled host's worker processes are not hosts)."""
    pids = set()
    for pid in suite_processes():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(arg.endswith(b"worker_main.js") for arg in argv):
            continue  # a worker of a pooled host, not a host
        if config.encode() in argv and (managers or b"--manager" not in argv):
            pids.add(pid)
    return pids
