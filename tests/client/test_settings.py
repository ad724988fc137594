"""js_host.conf.settings: defaults, validation, BIN_PATH fallback, reconfiguring,
console output, and imports without side effects."""

from __future__ import annotations

import grp
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from js_host import verbosity
from js_host.conf import BUNDLED_BIN_PATH, Settings, settings
from js_host.exceptions import ConfigError
from tests.support.client import bin_setting, without_logging_config, write_config
from tests.support.processes import NPM_BIN, ROOT


def test_defaults() -> None:
    fresh = Settings()
    assert fresh.SOURCE_ROOT is None and fresh.source_root == os.getcwd()
    assert fresh.CONFIG_FILE == "host.config.js"
    assert fresh.USE_MANAGER is False
    assert fresh.PATH_TO_NODE == "node"
    assert os.path.join("node_modules", ".bin", "js-host") == fresh.BIN_PATH
    assert fresh.FUNCTION_TIMEOUT == 10.0
    assert fresh.CONNECT_ONCE_CONFIGURED is True
    assert fresh.URL_OVERRIDE is None
    assert fresh.VERBOSITY == verbosity.PROCESS_START
    assert fresh.LOCAL_CACHE_SIZE == 0 and fresh.LOCAL_CACHE_MAX_AGE == 60.0
    assert fresh.HOST_UIDS == ()
    assert fresh.configured is False


def configure_kw(tmp_path: Path, **kw):
    write_config(tmp_path, port=9)
    return {"SOURCE_ROOT": str(tmp_path), "CONNECT_ONCE_CONFIGURED": False, "BIN_PATH": str(NPM_BIN), **kw}


@pytest.mark.parametrize(
    ("kw", "names"),
    [
        ({"NOT_A_SETTING": 1}, ["'NOT_A_SETTING'", "Valid settings"]),
        ({"CONFIG_FILE": "missing.config.js"}, ["missing.config.js", "does not exist"]),
        ({"PATH_TO_NODE": "/nonexistent/node"}, ["'/nonexistent/node'", "PATH_TO_NODE"]),
        ({"URL_OVERRIDE": "http://127.0.0.1:9009/"}, ["'http://127.0.0.1:9009/'", "'http://127.0.0.1:9009'"]),
        ({"URL_OVERRIDE": "ftp://127.0.0.1:9009"}, ["'ftp://127.0.0.1:9009'", "http://"]),
        ({"URL_OVERRIDE": "127.0.0.1:9009"}, ["'127.0.0.1:9009'"]),
        ({"URL_OVERRIDE": "http://127.0.0.1:9", "USE_MANAGER": True}, ["URL_OVERRIDE", "USE_MANAGER"]),
        ({"BIN_PATH": "node_modules/nope/js-host.js"}, ["nope/js-host.js", "npm install"]),
        ({"SOURCE_ROOT": "/nonexistent/dir"}, ["'/nonexistent/dir'"]),
        ({"FUNCTION_TIMEOUT": 0}, ["FUNCTION_TIMEOUT", "0"]),
        ({"USE_MANAGER": "yes"}, ["USE_MANAGER", "'yes'"]),
        ({"LOCAL_CACHE_SIZE": -1}, ["LOCAL_CACHE_SIZE", "-1"]),
        ({"LOCAL_CACHE_SIZE": "1MB"}, ["LOCAL_CACHE_SIZE", "'1MB'", "int"]),
        ({"LOCAL_CACHE_MAX_AGE": 0}, ["LOCAL_CACHE_MAX_AGE", "0", "LOCAL_CACHE_SIZE=0"]),
        ({"LOCAL_CACHE_MAX_AGE": float("inf")}, ["LOCAL_CACHE_MAX_AGE", "inf", "finite"]),
        ({"HOST_UIDS": 999}, ["HOST_UIDS", "999", "id -u"]),
        ({"HOST_UIDS": ["999"]}, ["HOST_UIDS", "['999']"]),
        ({"HOST_UIDS": [True]}, ["HOST_UIDS", "[True]"]),
        ({"HOST_UIDS": [-1]}, ["HOST_UIDS", "[-1]"]),
    ],
)
def test_invalid_settings_name_the_value(tmp_path: Path, kw: dict, names: list[str]) -> None:
    before = (settings.CONFIG_FILE, settings.URL_OVERRIDE, settings.configured)
    with pytest.raises(ConfigError) as info:
        settings.configure(**configure_kw(tmp_path, **kw))
    for name in names:
        assert name in str(info.value)
    # Nothing was applied.
    assert (settings.CONFIG_FILE, settings.URL_OVERRIDE, settings.configured) == before


@pytest.mark.skipif(not os.path.isfile(BUNDLED_BIN_PATH), reason="the bundled host does not exist yet")
def test_bin_path_default_falls_back_to_the_bundled_host(tmp_path: Path, client_settings) -> None:
    write_config(tmp_path, port=9)
    client_settings(SOURCE_ROOT=str(tmp_path), CONNECT_ONCE_CONFIGURED=False)
    assert settings.get_path_to_bin() == BUNDLED_BIN_PATH


def test_bin_path_default_is_used_when_it_exists(tmp_path: Path, client_settings) -> None:
    write_config(tmp_path, port=9)
    local = tmp_path / "node_modules" / ".bin"
    local.mkdir(parents=True)
    (local / "js-host").symlink_to(NPM_BIN)
    client_settings(SOURCE_ROOT=str(tmp_path), CONNECT_ONCE_CONFIGURED=False)
    assert settings.get_path_to_bin() == str(local / "js-host")


def test_the_npm_installed_default_is_used(tmp_path: Path, client_settings) -> None:
    npm = ROOT / "tests" / "npm"
    config = write_config(tmp_path, port=9)
    client_settings(SOURCE_ROOT=str(npm), CONFIG_FILE=str(config), CONNECT_ONCE_CONFIGURED=False)
    assert settings.get_path_to_bin() == str(npm / "node_modules" / ".bin" / "js-host")


@pytest.mark.skipif(not os.path.isfile(BUNDLED_BIN_PATH), reason="the bundled host does not exist yet")
@pytest.mark.parametrize("loose", ["the .bin folder", "the file", "the link's target folder"])
def test_a_default_bin_other_users_can_change_is_not_run(
    tmp_path: Path, client_settings, caplog: pytest.LogCaptureFixture, loose: str
) -> None:
    """Group or others can write on the way to BIN_PATH's default: the bundled host, and a
    warning that names the file, its owner, what is wrong, and BIN_PATH."""
    write_config(tmp_path, port=9)
    local = tmp_path / "node_modules" / ".bin"
    local.mkdir(parents=True)
    planted = local / "js-host"
    if loose == "the link's target folder":
        elsewhere = tmp_path / "open"
        elsewhere.mkdir()
        elsewhere.chmod(0o777)
        (elsewhere / "js-host.js").write_text("// anyone could have written this\n")
        planted.symlink_to(elsewhere / "js-host.js")
        culprit = f"the folder '{elsewhere}' can be changed by other users (mode 777, not sticky)"
    elif loose == "the file":
        planted.write_text("// anyone could have written this\n")
        planted.chmod(0o757)
        culprit = f"'{planted}' can be changed by other users (mode 757)"
    else:
        planted.symlink_to(NPM_BIN)
        local.chmod(0o775)
        # A group other than this user's own (root may give the folder to any group).
        if os.geteuid() != 0:
            pytest.skip("giving a folder to another group needs root")
        os.chown(local, -1, grp.getgrnam("nogroup").gr_gid)
        culprit = f"the folder '{local}' can be changed by other users (mode 775, not sticky)"
    with caplog.at_level(logging.WARNING, logger="js_host"):
        client_settings(SOURCE_ROOT=str(tmp_path), CONNECT_ONCE_CONFIGURED=False)
        assert settings.get_path_to_bin() == BUNDLED_BIN_PATH
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # once, though the path is resolved at each use
    assert warnings[0].startswith(f"Not running '{planted}' (owner: uid {os.getuid()}")
    assert culprit in warnings[0] and "Set BIN_PATH" in warnings[0]
    # Set explicitly, the same file is the user's choice.
    client_settings(SOURCE_ROOT=str(tmp_path), CONNECT_ONCE_CONFIGURED=False, BIN_PATH=str(planted))
    assert settings.get_path_to_bin() == str(planted)


def test_a_default_bin_of_the_users_own_group_is_run(tmp_path: Path, client_settings) -> None:
    """Under ``umask 002`` npm makes 775 folders of the user's own group, which nobody else is in:
    nobody else can change them, and BIN_PATH's default is used."""
    write_config(tmp_path, port=9)
    local = tmp_path / "node_modules" / ".bin"
    local.mkdir(parents=True)
    (local / "js-host").symlink_to(NPM_BIN)
    for folder in (tmp_path / "node_modules", local):
        folder.chmod(0o775)
        os.chown(folder, -1, os.getgid())
    if grp.getgrgid(os.getgid()).gr_mem:
        pytest.skip("this user's group has other members")
    client_settings(SOURCE_ROOT=str(tmp_path), CONNECT_ONCE_CONFIGURED=False)
    assert settings.get_path_to_bin() == str(local / "js-host")


def test_relative_paths_join_source_root(tmp_path: Path, client_settings) -> None:
    (tmp_path / "conf").mkdir()
    write_config(tmp_path / "conf", name="other.js", port=9)
    client_settings(
        SOURCE_ROOT=str(tmp_path),
        CONFIG_FILE="conf/other.js",
        CONNECT_ONCE_CONFIGURED=False,
        PATH_TO_NODE="node",
        BIN_PATH=str(NPM_BIN),
    )
    assert settings.get_config_file() == str(tmp_path / "conf" / "other.js")
    assert os.path.isabs(settings.get_path_to_node())


def test_reconfigure_drops_and_disconnects_the_old_host(
    configured, host_config, impl, client_settings
) -> None:
    from js_host.host import get_default_host, host

    first = get_default_host()
    assert first.has_connected
    client_settings(SOURCE_ROOT=str(host_config.parent), FUNCTION_TIMEOUT=3.0, **bin_setting(impl))
    second = get_default_host()
    assert second is not first and second.has_connected
    assert not first.has_connected
    assert settings.FUNCTION_TIMEOUT == 3.0
    # The name js_host.host.host means the new one.
    assert host.function_timeout == 3.0 and host.has_connected


def test_each_configure_starts_from_the_defaults(configured, host_config, impl, client_settings) -> None:
    client_settings(SOURCE_ROOT=str(host_config.parent), FUNCTION_TIMEOUT=3.0, **bin_setting(impl))
    client_settings(SOURCE_ROOT=str(host_config.parent), **bin_setting(impl))
    assert settings.FUNCTION_TIMEOUT == 10.0


def test_verbosity_decides_what_the_console_shows(
    configured, host_config, impl, client_settings, capsys
) -> None:
    capsys.readouterr()
    with without_logging_config():
        client_settings(SOURCE_ROOT=str(host_config.parent), VERBOSITY=verbosity.CONNECT, **bin_setting(impl))
        assert "Connected to Host" in capsys.readouterr().err
        client_settings(SOURCE_ROOT=str(host_config.parent), VERBOSITY=verbosity.SILENT, **bin_setting(impl))
        assert capsys.readouterr().err == ""


def test_the_console_handler_leaves_an_application_level_alone(
    tmp_path: Path, recording_server, client_settings, capsys
) -> None:
    server = recording_server()
    write_config(tmp_path, port=9)
    kw = {"SOURCE_ROOT": str(tmp_path), "BIN_PATH": str(NPM_BIN), "URL_OVERRIDE": server.url}
    js_logger = logging.getLogger("js_host")
    with without_logging_config():
        client_settings(VERBOSITY=verbosity.CONNECT, **kw)
        assert capsys.readouterr().err.count("js_host: Connected to") == 1
        assert js_logger.level == logging.INFO
        js_logger.setLevel(logging.WARNING)  # the application's choice
        try:
            client_settings(VERBOSITY=verbosity.FUNCTION_CALL, **kw)
            assert js_logger.level == logging.WARNING
            assert capsys.readouterr().err == ""
        finally:
            js_logger.setLevel(logging.NOTSET)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("where", ["root", "js_host"])
def test_no_console_handler_when_the_application_configured_logging(
    tmp_path: Path, recording_server, client_settings, capsys, where: str
) -> None:
    server = recording_server()
    write_config(tmp_path, port=9)
    kw = {"SOURCE_ROOT": str(tmp_path), "BIN_PATH": str(NPM_BIN), "URL_OVERRIDE": server.url}
    js_logger = logging.getLogger("js_host")
    with without_logging_config() as root:
        client_settings(VERBOSITY=verbosity.SILENT, **kw)  # not configured yet: js_host's handler
        assert js_logger.handlers
        # The application configures logging (e.g. logging.basicConfig(level=logging.INFO)).
        app_handler = _Collect()
        logger = root if where == "root" else js_logger
        logger.addHandler(app_handler)
        root.setLevel(logging.INFO)
        try:
            client_settings(VERBOSITY=verbosity.CONNECT, **kw)
            assert js_logger.handlers == ([] if where == "root" else [app_handler])
            assert js_logger.level == logging.NOTSET  # the application's levels decide
            assert capsys.readouterr().err == ""  # shown once, by the application's handler
            connected = [m for m in app_handler.messages if m.startswith("Connected to")]
            assert len(connected) == 1 and server.url in connected[0], app_handler.messages
        finally:
            logger.removeHandler(app_handler)


def test_importing_has_no_side_effects() -> None:
    code = (
        "import sys, js_host, js_host.conf, js_host.function, js_host.host, js_host.manager\n"
        "import js_host.transport\n"
        "assert 'django' not in sys.modules, 'django imported'\n"
        "assert js_host.host._default is None, 'host created'\n"
        "assert not js_host.conf.settings.configured\n"
        "import os; print(len(os.listdir('/proc/self/fd')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_the_default_host_is_created_on_first_use(tmp_path: Path, client_settings) -> None:
    import js_host.host

    write_config(tmp_path, port=9)
    client_settings(SOURCE_ROOT=str(tmp_path), CONNECT_ONCE_CONFIGURED=False, BIN_PATH=str(NPM_BIN))
    assert js_host.host._default is None
    host = js_host.host.host
    assert host is js_host.host.host
    assert host.get_path_to_config_file() == str(tmp_path / "host.config.js")
    assert host.get_path_to_bin() == str(NPM_BIN)
    assert host.get_url() == "http://127.0.0.1:9"
    assert host.manager is None and host.logfile is None
    assert not host.is_running() and host.request_status() is None


def test_url_override_does_not_require_node_or_the_config_file(tmp_path: Path, client_settings) -> None:
    import js_host.host

    client_settings(
        SOURCE_ROOT=str(tmp_path),
        URL_OVERRIDE="http://127.0.0.1:9",
        PATH_TO_NODE="/nonexistent/node",
        BIN_PATH="nope/js-host.js",
        CONFIG_FILE="missing.config.js",
        CONNECT_ONCE_CONFIGURED=False,
    )
    host = js_host.host.host
    assert host.get_url() == "http://127.0.0.1:9"
    assert host.config_file == str(tmp_path / "missing.config.js")
    assert host.path_to_node == "/nonexistent/node"
    assert not host.is_running()
    # The values must still be paths.
    for name in ("PATH_TO_NODE", "CONFIG_FILE", "BIN_PATH"):
        with pytest.raises(ConfigError) as info:
            settings.configure(SOURCE_ROOT=str(tmp_path), URL_OVERRIDE="http://127.0.0.1:9", **{name: 3})
        assert name in str(info.value) and "3" in str(info.value)
