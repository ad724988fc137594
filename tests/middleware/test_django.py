"""Django start-up: INSTALLED_APPS += ('js_host',) and JS_HOST = {...} configure js_host when
django.setup() runs (in a fresh process); the first call connects, or start-up when asked."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.support.client import bin_setting
from tests.support.processes import ROOT

pytest.importorskip("django")


def run_django(tmp_path, js_host_settings: dict, code: str) -> subprocess.CompletedProcess:
    (tmp_path / "djsettings.py").write_text(
        textwrap.dedent(
            f"""
            SECRET_KEY = "test"
            INSTALLED_APPS = ["django.contrib.contenttypes", "js_host"]
            JS_HOST = {js_host_settings!r}
            """
        )
    )
    script = "import django\ndjango.setup()\n" + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={
            **__import__("os").environ,
            "DJANGO_SETTINGS_MODULE": "djsettings",
            "PYTHONPATH": f"{tmp_path}:{ROOT}",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_django_setup_configures_and_the_first_call_connects(
    tmp_path, running_host, host_config, impl
) -> None:
    js_host_settings = {"SOURCE_ROOT": str(host_config.parent), "VERBOSITY": 0, **bin_setting(impl)}
    result = run_django(
        tmp_path,
        js_host_settings,
        """
        import js_host.host
        from js_host.conf import settings
        from js_host.function import Function
        # Nothing connects at start-up (management commands need no host) ...
        assert settings.configured and not js_host.host.host.has_connected
        print(Function("hello_world").call(name="Django"))
        # ... the first call does.
        assert js_host.host.host.has_connected
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Hello, Django!"


def test_django_setup_connects_when_asked_to(tmp_path, running_host, host_config, impl) -> None:
    js_host_settings = {
        "SOURCE_ROOT": str(host_config.parent),
        "VERBOSITY": 0,
        "CONNECT_ONCE_CONFIGURED": True,
        **bin_setting(impl),
    }
    result = run_django(
        tmp_path,
        js_host_settings,
        """
        import js_host.host
        assert js_host.host.host.has_connected
        """,
    )
    assert result.returncode == 0, result.stderr


def test_django_setup_raises_config_errors(tmp_path) -> None:
    result = run_django(tmp_path, {"SOURCE_ROOT": str(tmp_path), "NOT_A_SETTING": 1}, "")
    assert result.returncode != 0
    assert "ConfigError" in result.stderr and "'NOT_A_SETTING'" in result.stderr
