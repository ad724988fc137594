"""Another local user against the manager's challenge-response, played for real (uid nobody).

(a) The victim's manager port is free (managers exit when idle): the other user
listens there, records everything the victim's client sends and answers like a
manager would. The client refuses it with a clear ProcessError and sends it
nothing derived from the secret. Once the squatter has gone, a real manager
starts there, and whatever the squatter recorded, replayed to it, starts nothing.

(b) A relay of the other user stands between the client and a real manager and
records a whole exchange: replayed, or re-aimed at ``/host/start`` with the
attacker's config, it starts nothing.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from js_host.conf import settings
from js_host.exceptions import ProcessError
from js_host.function import Function
from js_host.host import JSHost
from js_host.manager import JSHostManager
from js_host.runtime import manager_secret
from tests.support.client import config_port, write_config
from tests.support.other_user import OtherUserProcess, other_uid, requires_root, run_as_other
from tests.support.processes import free_port, suite_processes
from tests.support.waiting import wait_for

pytestmark = requires_root

# Both the squatter and the relay write what they received as JSON lines
# {"method", "path", "headers": [[name, value], ...], "body"} (latin-1 text).
READ_REQUESTS = r"""
import json

def read_request(stream):
    line = stream.readline()
    if not line.strip():
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers = []
    while True:
        header = stream.readline()
        if header in (b"\r\n", b"\n", b""):
            break
        name, _, value = header.decode("latin-1").partition(":")
        headers.append([name.strip(), value.strip()])
    length = int(next((v for n, v in headers if n.lower() == "content-length"), "0") or 0)
    body = stream.read(length) if length else b""
    return {"method": method, "path": path, "headers": headers, "body": body.decode("latin-1")}

def record(path, request):
    with open(path, "a") as out:
        out.write(json.dumps(request) + "\n")
"""

# argv: port, answer mode, recording file, ready file.
SQUATTER = (
    READ_REQUESTS
    + r"""
import socketserver, sys, threading
port, mode, recording, ready = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
lock = threading.Lock()
ANSWERS = {
    "200-manager": (200, "", json.dumps({"type": "Manager", "version": "9.9.9", "config": {}})),
    "401-no-proof": (401, 'WWW-Authenticate: Bearer realm="js-host manager"\r\n', "Unauthorized"),
    "401-bogus-proof": (
        401,
        'WWW-Authenticate: JSHost-HMAC nonce="%s", proof="%s"\r\n' % ("ab" * 32, "cd" * 32),
        "Unauthorized",
    ),
}

class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        while True:
            request = read_request(self.rfile)
            if request is None:
                return
            with lock:
                record(recording, request)
            if mode == "not-http":
                self.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n")
                return
            status, extra, text = ANSWERS[mode]
            data = text.encode()
            head = "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
            self.wfile.write((head % (status, len(data), extra)).encode() + data)
            self.wfile.flush()

socketserver.ThreadingTCPServer.daemon_threads = True
# As servers do (without it, its sockets in TIME_WAIT would keep the port from
# the victim's manager for a minute after it has gone).
socketserver.ThreadingTCPServer.allow_reuse_address = True
server = socketserver.ThreadingTCPServer(("127.0.0.1", port), Handler)
open(ready, "w").close()
server.serve_forever()
"""
)

# argv: listen port, manager port, recording file, ready file. Forwards both ways,
# records the client's requests.
RELAY = (
    READ_REQUESTS
    + r"""
import io, socket, sys, threading
port, target, recording, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
lock = threading.Lock()

def pump(source, sink, on_data):
    try:
        while True:
            chunk = source.recv(65536)
            if not chunk:
                break
            on_data(chunk)
            sink.sendall(chunk)
    except OSError:
        pass
    for sock in (source, sink):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

class Recorder:
    # Records each request of a connection as soon as all of it has passed.

    def __init__(self):
        self.buffer = b""

    def __call__(self, chunk):
        self.buffer += chunk
        while b"\r\n\r\n" in self.buffer:
            head = self.buffer.split(b"\r\n\r\n", 1)[0]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip() or 0)
            end = len(head) + 4 + length
            if len(self.buffer) < end:
                return
            request = read_request(io.BytesIO(self.buffer[:end]))
            self.buffer = self.buffer[end:]
            with lock:
                record(recording, request)

def serve(client):
    upstream = socket.create_connection(("127.0.0.1", target))
    back = threading.Thread(target=pump, args=(upstream, client, lambda chunk: None), daemon=True)
    back.start()
    pump(client, upstream, Recorder())
    back.join()

listener = socket.create_server(("127.0.0.1", port))
open(ready, "w").close()
while True:
    client, _ = listener.accept()
    threading.Thread(target=serve, args=(client,), daemon=True).start()
"""
)

# argv: manager port, recording file, the attacker's config. Replays every recorded
# request as it was, then with the attacker's config as body (its Authorization
# kept) on /host/start; prints the statuses.
REPLAY = r"""
import http.client, json, sys
port, recording, evil = int(sys.argv[1]), sys.argv[2], sys.argv[3]
requests = [json.loads(line) for line in open(recording)]
evil_body = json.dumps({"config": evil})
attempts = []
for request in requests:
    attempts.append((request["method"], request["path"], request["headers"], request["body"]))
    attempts.append(("POST", "/host/start", request["headers"], evil_body))
    attempts.append(("POST", request["path"], request["headers"], evil_body))
statuses = []
for method, path, headers, body in attempts:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    names = {"content-length", "host", "connection", "transfer-encoding"}
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", "127.0.0.1:%d" % port)
    for name, value in headers:
        if name.lower() not in names:
            conn.putheader(name, value)
    data = body.encode("latin-1")
    conn.putheader("Content-Length", str(len(data)))
    conn.endheaders(data)
    response = conn.getresponse()
    response.read()
    statuses.append([method, path, response.status])
    conn.close()
print(json.dumps(statuses))
"""


@pytest.fixture
def impl() -> str:
    """Only the project's manager authenticates (npm js-host 0.11's has no secret)."""
    return "bundled"


def evil_config(shared: Path) -> Path:
    """The attacker's config: loading it leaves a file naming the uid that ran it."""
    path = shared / "evil.config.js"
    path.write_text(
        "require('fs').writeFileSync(__dirname + '/ran-' + process.pid, String(process.getuid()));\n"
        "module.exports = {functions: {}, port: 0};\n"
    )
    os.chown(path, other_uid(), -1)
    return path


def start_other(code: str, *args: str, shared: Path, name: str) -> OtherUserProcess:
    ready = shared / f"{name}.ready"
    process = OtherUserProcess(code, *args, str(ready), log=shared / f"{name}.log")
    process.spawn()
    process.wait_until(ready.exists, timeout=20)
    return process


def recorded(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def replay(recording: Path, port: int, evil: Path) -> list[list]:
    result = run_as_other(REPLAY, str(port), str(recording), str(evil), timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_nothing_ran(evil: Path, shared: Path, runtime: Path, manager: JSHostManager) -> None:
    """No host for the attacker's config, no process of it ever, no trace in the manager's files."""
    assert manager.request_host_status(str(evil))["started"] is False
    assert not list(shared.glob("ran-*")), "the attacker's config was loaded"
    for pid in suite_processes():
        try:
            assert str(evil).encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
    for file in runtime.rglob("*"):
        if file.is_file():
            assert str(evil) not in file.read_text(errors="replace"), file


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["200-manager", "401-no-proof", "401-bogus-proof", "not-http"])
def test_a_port_squatter_gets_nothing_replayable(manager_env: dict, shared: Path, mode: str) -> None:
    config = manager_env["config"]
    port = config_port(config)
    recording = shared / "recording.jsonl"
    evil = evil_config(shared)
    secret = manager_secret()  # the victim's, made before the squat

    squatter = start_other(SQUATTER, str(port), mode, str(recording), shared=shared, name="squatter")
    try:
        for _ in range(2):  # a second try is refused the same way: nothing is started, nothing loops
            with pytest.raises(ProcessError) as info:
                settings.configure(VERBOSITY=0, **manager_env["settings"])
            message = str(info.value)
            assert f"127.0.0.1:{port}" in message and str(config) in message, message
            assert "not your js-host manager" in message and "stop that process" in message
            assert str(manager_env["runtime"] / "manager.secret") in message
            settings.reset()
        assert not any(str(config).encode() in _cmdline(pid) for pid in suite_processes()), (
            "a manager was started while the port was held"
        )
    finally:
        squatter.stop()
    requests = recorded(recording)
    assert requests, "the client sent nothing to the squatter"
    for request in requests:
        assert all(name.lower() != "authorization" for name, _ in request["headers"]), request
        assert secret not in json.dumps(request), request
        assert request["body"] == "", request  # only the challenge went out
    assert wait_for(lambda: port_free(port), 10)

    # The squatter has gone: the victim's call works through a real manager.
    settings.configure(VERBOSITY=0, **manager_env["settings"])
    assert Function("hello_world").call(name="victim") == "Hello, victim!"
    from js_host.host import host

    assert host.manager is not None
    # The squatter replays what it recorded, and aims it at /host/start with its config.
    statuses = replay(recording, port, evil)
    assert statuses and all(status == 401 for _, _, status in statuses), statuses
    assert_nothing_ran(evil, shared, manager_env["runtime"], host.manager)
    assert Function("hello_world").call(name="again") == "Hello, again!"
    assert manager_secret() == secret and (manager_env["runtime"] / "manager.secret").read_text() == secret


@pytest.mark.timeout(120)
def test_an_exchange_recorded_by_a_relay_cannot_be_replayed(manager_env: dict, shared: Path) -> None:
    # The victim's manager runs on its config's port...
    settings.configure(VERBOSITY=0, **manager_env["settings"])
    from js_host.host import host

    manager_port = config_port(manager_env["config"])
    assert Function("hello_world").call() == "Hello, World!"
    # ... and a second config of the victim names a port where the other user relays to it.
    relay_port = free_port()
    other_dir = manager_env["config"].parent / "second"
    other_dir.mkdir()
    second = write_config(other_dir, port=relay_port, disconnectTimeout=300)
    recording = shared / "relayed.jsonl"
    evil = evil_config(shared)
    relay = start_other(
        RELAY, str(relay_port), str(manager_port), str(recording), shared=shared, name="relay"
    )
    try:
        through_relay = JSHost(str(second), use_manager=True)
        through_relay.connect()
        assert Function("hello_world", host=through_relay).call(name="relayed") == "Hello, relayed!"
        through_relay.disconnect()
    finally:
        relay.stop()
    requests = recorded(recording)
    signed = [r for r in requests if any(name.lower() == "authorization" for name, _ in r["headers"])]
    assert any(r["path"] == "/host/start" for r in signed), requests
    assert all(manager_secret() not in json.dumps(r) for r in requests)

    statuses = replay(recording, manager_port, evil)
    assert statuses and all(status == 401 for _, _, status in statuses), statuses
    assert host.manager is not None
    assert_nothing_ran(evil, shared, manager_env["runtime"], host.manager)
    assert Function("hello_world").call(name="after") == "Hello, after!"


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
