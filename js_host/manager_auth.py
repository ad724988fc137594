"""The manager's challenge-response: nothing replayable is ever sent.

A manager is authenticated before the client sends anything derived from the
secret, and every request is signed for one use only (the Node side is
``js_host/node/lib/security.js``; its status announces :data:`AUTH_NAME`):

1. the request goes out with ``X-JS-Host-Challenge: <client nonce>``, without a
   body and without any secret;
2. the manager answers ``401`` with ``WWW-Authenticate: JSHost-HMAC nonce="<server
   nonce>", proof="<mac(proof, client nonce, server nonce)>"``; the client checks
   the proof (in constant time): a listener that cannot give it is not the
   user's manager, and it has learnt nothing but a random nonce;
3. the request is repeated with ``Authorization: JSHost-HMAC nonce="<server
   nonce>", mac="<mac(request, server nonce, method, target, sha256(body))>"``:
   the manager takes each server nonce once, within seconds, so a recorded
   header serves nothing, and the MAC binds it to this request;
4. the answer carries ``Authentication-Info: nextnonce="<next>", mac="<mac(response,
   server nonce, status, sha256(body), next)>"`` (RFC 7615), so that a relay cannot
   change it; the next request to that manager is signed with ``next`` at once
   (one round trip instead of two), and starts over at 1. if that gets a 401.

``mac(label, *fields)`` is HMAC-SHA256 with the secret as key over the netstrings
``<bytes>:<field>,`` of the label and the fields: each message has its own label
and the fields are length-prefixed, so that no MAC can stand for another message.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from typing import NamedTuple

from .endpoint import request, split_url
from .exceptions import UnexpectedResponse
from .peer_owner import proves_itself
from .transport import Response, pool

#: The scheme a manager announces in its status (``"auth"``) when it needs this exchange.
AUTH_NAME = "js-host-hmac-1"
SCHEME = "JSHost-HMAC"
CHALLENGE_HEADER = "X-JS-Host-Challenge"

_PROOF = "js-host manager proof"
_REQUEST = "js-host client request"
_RESPONSE = "js-host manager response"
_NONCE = re.compile(r"[0-9a-f]{32,128}")
_HEX_MAC = re.compile(r"[0-9a-f]{64}")
_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"([^"\\]*)"|([^\s,"]*))\s*(?:,|$)')
#: A new handshake after a nonce the manager no longer knows (a flood of challenges
#: may push it out): once, never more.
_ATTEMPTS = 2


class NotTheManager(Exception):
    """The listener could not prove that it knows the secret: ``str()`` says how it failed."""


def mac(secret: str, label: str, *fields: str) -> str:
    """HMAC-SHA256 (hex) of the netstrings of ``label`` and ``fields``, keyed with ``secret``."""
    digest = hmac.new(secret.encode(), digestmod=hashlib.sha256)
    for field in (label, *fields):
        data = field.encode()
        digest.update(b"%d:%s," % (len(data), data))
    return digest.hexdigest()


def manager_proof(secret: str, client_nonce: str, server_nonce: str) -> str:
    return mac(secret, _PROOF, client_nonce, server_nonce)


def request_mac(secret: str, server_nonce: str, method: str, target: str, body: bytes) -> str:
    return mac(secret, _REQUEST, server_nonce, method, target, hashlib.sha256(body).hexdigest())


def response_mac(secret: str, server_nonce: str, status: int, body: bytes, next_nonce: str) -> str:
    return mac(secret, _RESPONSE, server_nonce, str(status), hashlib.sha256(body).hexdigest(), next_nonce)


def parse_auth_params(value: str | None) -> tuple[str, dict[str, str]] | None:
    """(scheme, parameters) of ``Scheme k="v", k2=v2`` (RFC 9110, section 11.4), or None."""
    if not value:
        return None
    scheme, _, rest = value.strip().partition(" ")
    params: dict[str, str] = {}
    position = 0
    while position < len(rest):
        found = _PARAM.match(rest, position)
        if found is None or found.end() == position:
            return None
        params[found.group(1).lower()] = found.group(2) if found.group(2) is not None else found.group(3)
        position = found.end()
    return scheme, params


def _equal(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def check_challenge(response: Response, secret: str, client_nonce: str) -> str:
    """The server nonce of the manager's 401, once its proof is checked; else NotTheManager."""
    if response.status != 401:
        raise NotTheManager(f"it answered {response.status} to a request without credentials")
    parsed = parse_auth_params(response.headers.get("www-authenticate"))
    if parsed is None or parsed[0].lower() != SCHEME.lower() or "proof" not in parsed[1]:
        raise NotTheManager("it answered 401 without the proof of a js-host manager")
    nonce, proof = parsed[1].get("nonce", ""), parsed[1]["proof"]
    if not _NONCE.fullmatch(nonce) or not _equal(proof, manager_proof(secret, client_nonce, nonce)):
        raise NotTheManager("its proof is wrong")
    return nonce


def _stale(response: Response) -> bool:
    parsed = parse_auth_params(response.headers.get("www-authenticate"))
    return parsed is not None and parsed[1].get("stale", "").lower() == "true"


def exchange(
    url: str,
    method: str,
    path: str,
    body: bytes,
    *,
    secret: str,
    headers: bytes = b"",
    timeout: float,
    challenge_timeout: float,
) -> Response:
    """Send one request to the manager at ``url`` with the whole exchange; its answer.

    Raises NotTheManager when the listener fails a step, FunctionTimeout when it
    does not answer the challenge within ``challenge_timeout`` seconds, and
    ConnectionError when nothing listens.
    """
    address, port, prefix = split_url(url)
    call = _Call(url, prefix + path, method, path, body, secret, headers, timeout)
    try:
        # Its connections skip the check of their listener's owner: the proof is what keeps
        # another user out here, a relay of hers in front of the real manager included.
        with proves_itself():
            return _exchange(call, challenge_timeout)
    except NotTheManager:
        # Not kept for later: the next request starts afresh, e.g. to a manager started
        # once that process has gone (its port would stay held by our socket meanwhile).
        pool.discard(address, port)
        raise


class _Call(NamedTuple):
    """One request to the manager, as sent: ``target`` is what the MAC covers."""

    url: str
    target: str
    method: str
    path: str
    body: bytes
    secret: str
    headers: bytes
    timeout: float


def _exchange(call: _Call, challenge_timeout: float) -> Response:
    key = (call.url, call.secret)
    given = _next_nonces.take(key)
    if given is not None:
        # A nonce from an answer of this manager: one round trip. A 401 means that the
        # manager that gave it has gone or forgotten it: start over with a challenge.
        response = _signed_request(call, given)
        if response.status != 401:
            return _checked_answer(response, key, given)
    for _ in range(_ATTEMPTS):
        client_nonce = secrets.token_hex(32)
        try:
            challenged = request(
                call.url,
                call.method,
                call.path,
                headers=f"{CHALLENGE_HEADER}: {client_nonce}\r\n".encode(),
                timeout=min(call.timeout, challenge_timeout),
            )
        except UnexpectedResponse as err:
            raise NotTheManager(f"its answer is not HTTP ({err})") from err
        server_nonce = check_challenge(challenged, call.secret, client_nonce)
        response = _signed_request(call, server_nonce)
        if response.status == 401 and _stale(response):
            continue  # our nonce was pushed out or expired: once more from the start
        if response.status == 401:
            raise NotTheManager("it refused a request signed with the secret")
        return _checked_answer(response, key, server_nonce)
    raise NotTheManager("it refused the nonces it had just given")


def _signed_request(call: _Call, server_nonce: str) -> Response:
    signature = request_mac(call.secret, server_nonce, call.method, call.target, call.body)
    authorization = f'Authorization: {SCHEME} nonce="{server_nonce}", mac="{signature}"\r\n'.encode()
    try:
        headers = call.headers + authorization
        return request(call.url, call.method, call.path, call.body, headers=headers, timeout=call.timeout)
    except UnexpectedResponse as err:
        raise NotTheManager(f"its answer is not HTTP ({err})") from err


def _checked_answer(response: Response, key: tuple[str, str], server_nonce: str) -> Response:
    """``response`` once its MAC is checked; its next nonce is kept for the next request."""
    parsed = parse_auth_params("x " + response.headers.get("authentication-info", ""))
    params = parsed[1] if parsed is not None else {}
    given, next_nonce = params.get("mac"), params.get("nextnonce", "")
    if given is None or not _HEX_MAC.fullmatch(given):
        raise NotTheManager(f"its {response.status} answer carries no MAC")
    expected = response_mac(key[1], server_nonce, response.status, response.body, next_nonce)
    if not _equal(given, expected):
        raise NotTheManager(f"the MAC of its {response.status} answer is wrong")
    if _NONCE.fullmatch(next_nonce):
        _next_nonces.put(key, next_nonce)
    return response


class _NextNonces:
    """Nonces that a manager gave in its answers, per (URL, secret), each used once."""

    #: Younger than the manager's lifetime of a nonce (10 s): an older one would get a 401.
    MAX_AGE = 8.0
    #: Per manager: threads that send at the same time each need their own.
    MAX_KEPT = 8

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nonces: dict[tuple[str, str], list[tuple[float, str]]] = {}
        if hasattr(os, "register_at_fork"):
            # A nonce must not serve both the parent and a forked child.
            os.register_at_fork(after_in_child=self._nonces.clear)

    def take(self, key: tuple[str, str]) -> str | None:
        now = time.monotonic()
        with self._lock:
            kept = self._nonces.get(key, [])
            while kept:
                given_at, nonce = kept.pop()
                if now - given_at < self.MAX_AGE:
                    return nonce
        return None

    def put(self, key: tuple[str, str], nonce: str) -> None:
        with self._lock:
            kept = self._nonces.setdefault(key, [])
            kept.append((time.monotonic(), nonce))
            del kept[: -self.MAX_KEPT]


_next_nonces = _NextNonces()


__all__ = [
    "AUTH_NAME",
    "CHALLENGE_HEADER",
    "SCHEME",
    "NotTheManager",
    "check_challenge",
    "exchange",
    "mac",
    "manager_proof",
    "parse_auth_params",
    "request_mac",
    "response_mac",
]
