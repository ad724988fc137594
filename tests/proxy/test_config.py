"""Settings from the environment, and no side effects on import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from js_host.exceptions import ConfigError
from js_host_proxy.config import DEFAULT_UPSTREAM, ProxyConfig


def test_defaults():
    config = ProxyConfig.from_env({})
    assert config.upstreams == (DEFAULT_UPSTREAM,)
    assert config.cache_url.startswith("file:///") and "js-host-proxy-" in config.cache_url
    assert (config.ttl, config.namespace, config.allowed_hosts) == (300.0, "", ())
    assert config.lock_timeout == config.upstream_timeout + 5
    assert config.upstream_uids == ()
    assert ProxyConfig.from_env({"JS_HOST_PROXY_UPSTREAM_UIDS": "1001, 999,999"}).upstream_uids == (999, 1001)


def test_settings_from_the_environment():
    config = ProxyConfig.from_env(
        {
            "JS_HOST_PROXY_UPSTREAM": "http://a:1, http://b:2/",
            "JS_HOST_PROXY_CACHE": "redis://127.0.0.1:6379/2",
            "JS_HOST_PROXY_TTL": "60",
            "JS_HOST_PROXY_NAMESPACE": "v42",
            "JS_HOST_PROXY_MAX_BODY": "1000",
            "JS_HOST_PROXY_ALLOWED_HOSTS": " App.example, [FD00::7],",
        }
    )
    assert config.upstreams == ("http://a:1", "http://b:2")
    assert config.allowed_hosts == ("app.example", "[fd00::7]")
    assert (config.cache_url, config.ttl, config.namespace, config.max_body) == (
        "redis://127.0.0.1:6379/2",
        60.0,
        "v42",
        1000,
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("UPSTREAM", "127.0.0.1:9009", "not a host's base URL"),
        ("UPSTREAM", "http://h:1/function", "not a host's base URL"),
        ("TTL", "soon", "not a number"),
        ("TTL", "-1", "at least"),
        ("CACHE", "mongodb://x", "expected file:///path"),
        ("ALLOWED_HOSTS", "app.example:8000", "without a port"),
        ("ALLOWED_HOSTS", "a.example,http://b.example", "not a host name"),
        ("UPSTREAM_UIDS", "nobody", "not a list of user ids"),
        ("UPSTREAM_UIDS", "999;1001", "not a list of user ids"),
    ],
)
def test_bad_settings_say_what_is_wrong(name: str, value: str, message: str):
    with pytest.raises(ConfigError, match=message) as raised:
        ProxyConfig.from_env({f"JS_HOST_PROXY_{name}": value})
    assert f"JS_HOST_PROXY_{name}" in str(raised.value)


def test_importing_has_no_side_effects():
    code = (
        "import js_host_proxy, js_host_proxy.wsgi, js_host_proxy.app, js_host_proxy.__main__\n"
        "try:\n    js_host_proxy.wsgi.app\nexcept Exception as err:\n    print(type(err).__name__, err)\n"
    )
    env = {"JS_HOST_PROXY_CACHE": "bogus://", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 0, done.stderr
    # Only reading `app` reads the settings.
    assert done.stdout.startswith("ConfigError") and "JS_HOST_PROXY_CACHE" in done.stdout
