"""The client's side of the manager's challenge-response (js_host.manager_auth), against
the real Node manager: the same MACs as Node's, one round trip per request once a
manager has answered, and a fresh handshake when that manager has gone."""

from __future__ import annotations

import json
import subprocess

import pytest

from js_host import manager_auth, transport
from js_host.conf import settings
from js_host.manager import JSHostManager
from tests.support.processes import ROOT

SECURITY_JS = ROOT / "js_host" / "node" / "lib" / "security.js"


def test_the_macs_are_those_of_the_node_manager() -> None:
    script = f"""
        const s = require({json.dumps(str(SECURITY_JS))});
        const key = 'ab'.repeat(32);
        console.log(JSON.stringify([
          s.managerProof(key, 'c1', 's1'),
          s.requestMac(key, 's1', 'POST', '/host/start', Buffer.from('{{"config": "/x é"}}')),
          s.responseMac(key, 's1', 200, Buffer.from('ok'), 'n2'),
        ]));
    """
    output = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True).stdout
    key = "ab" * 32
    assert json.loads(output) == [
        manager_auth.manager_proof(key, "c1", "s1"),
        manager_auth.request_mac(key, "s1", "POST", "/host/start", '{"config": "/x é"}'.encode()),
        manager_auth.response_mac(key, "s1", 200, b"ok", "n2"),
    ]
    # Labels and framing: no MAC stands for another message.
    assert manager_auth.mac(key, "a", "bc") != manager_auth.mac(key, "ab", "c")
    assert manager_auth.manager_proof(key, "x", "y") != manager_auth.mac(
        key, "js-host client request", "x", "y"
    )


def test_parse_auth_params() -> None:
    assert manager_auth.parse_auth_params('JSHost-HMAC nonce="ab", proof="cd"') == (
        "JSHost-HMAC",
        {"nonce": "ab", "proof": "cd"},
    )
    assert manager_auth.parse_auth_params("x stale=true") == ("x", {"stale": "true"})
    assert manager_auth.parse_auth_params("Bearer abc") is None
    assert manager_auth.parse_auth_params('JSHost-HMAC nonce="ab') is None
    assert manager_auth.parse_auth_params("") is None


def test_one_round_trip_per_request_and_a_new_handshake_after_a_restart(
    manager_env, monkeypatch, impl
) -> None:
    if impl == "npm-0.11":
        pytest.skip("js-host 0.11's manager has no authentication (plain requests: test_manager.py)")
    settings.configure(VERBOSITY=0, CONNECT_ONCE_CONFIGURED=False, **manager_env["settings"])
    manager = JSHostManager(str(manager_env["config"])).start()
    sent: list[tuple[str, bool]] = []
    real_request = transport.pool.request

    def spy(host, port, method, target, body=b"", *, headers=b"", timeout=None):
        sent.append((target, b"X-JS-Host-Challenge" in headers))
        return real_request(host, port, method, target, body, headers=headers, timeout=timeout)

    monkeypatch.setattr(transport.pool, "request", spy)
    for _ in range(3):
        assert manager.is_running()
    assert sent == [("/status", False)] * 3  # the nonce of each answer signs the next request
    manager.stop()
    sent.clear()
    manager.start()  # a new manager on the same port: it never gave that nonce
    assert manager.is_running()
    assert ("/status", True) in sent
    assert manager.request_host_status(str(manager_env["config"])) == {"started": False}
