"""``POST /purge``: the purge command over HTTP, for deploy scripts. Off unless
``JS_HOST_PROXY_PURGE_TOKEN`` is set.

The request names what to remove as ``js-host-proxy purge`` does, in a JSON body::

    curl -X POST http://127.0.0.1:9010/purge -H "Authorization: Bearer $TOKEN" \\
         -d '{"function": "render"}'
    # or {"version": V}, {"namespace": NS}, {"all": true}, {"expired": true}, combined

and gets ``{"removed": N}``. Every HTTP client is untrusted: without the setting the
route does not exist (404, as before), a missing or wrong token is a 401 (compared
in constant time, ``hmac.compare_digest``), and nothing in the answer says whether a
token is set. With the memory cache only the worker that answered is purged.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from js_host_proxy.cache.base import CacheBackend
from js_host_proxy.replies import Reply, text_reply

logger = logging.getLogger(__name__)

PATH = "/purge"
#: What the body may name, and the backend's argument for each.
FIELDS = {"namespace": "namespace", "version": "version", "function": "function"}


def authorized(environ: dict[str, Any], token: str) -> bool:
    given = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = given.partition(" ")
    # Both sides bytes: compare_digest refuses non-ASCII str, and must not raise here.
    return scheme.lower() == "bearer" and hmac.compare_digest(
        value.strip().encode("utf-8", "surrogateescape"), token.encode("utf-8", "surrogateescape")
    )


def purge(environ: dict[str, Any], body: bytes, backend: CacheBackend, token: str) -> Reply:
    """The answer to ``POST /purge`` with ``body``, after checking the token."""
    if not authorized(environ, token):
        return text_reply(
            401,
            "js-host-proxy: POST /purge needs the header Authorization: Bearer <JS_HOST_PROXY_PURGE_TOKEN>",
            [("WWW-Authenticate", 'Bearer realm="js-host-proxy"')],
        )
    try:
        asked = json.loads(body or b"{}")
        if not isinstance(asked, dict) or set(asked) - {*FIELDS, "all", "expired"}:
            raise ValueError("expected an object with namespace, version, function, all or expired")
        named = {FIELDS[k]: asked[k] for k in FIELDS if asked.get(k) is not None}
        if not all(isinstance(v, str) for v in named.values()):
            raise ValueError("namespace, version and function are strings")
        if not (named or asked.get("all") is True or asked.get("expired") is True):
            raise ValueError(
                'say what to remove: {"all": true}, {"expired": true}, a function, version or namespace'
            )
    except ValueError as err:
        return text_reply(400, f"js-host-proxy: POST /purge: {err}")
    except RecursionError:
        return text_reply(400, "js-host-proxy: POST /purge: the body is nested too deeply to be read as JSON")
    try:
        removed = backend.purge(**named, expired_only=asked.get("expired") is True)
    except Exception as err:  # e.g. Redis unreachable: say so
        logger.warning("POST /purge failed: %s", err)
        return text_reply(503, f"js-host-proxy: POST /purge failed: {err}")
    logger.info("POST /purge %s: removed %d entries", json.dumps(asked, sort_keys=True), removed)
    return Reply(
        200, [("Content-Type", "application/json")], json.dumps({"removed": removed}).encode() + b"\n"
    )
