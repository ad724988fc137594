"""Which header fields cross the proxy, in each direction.

To the host: the client's end-to-end fields, less those the proxy decides itself
(its cache policy, the body's encoding) and, on cached calls, less the client's
credentials; plus ``Via`` and ``X-Forwarded-For``. To the client: the host's
end-to-end fields (a live answer's or a stored one's), never a connection's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

VIA = "1.1 js-host-proxy"  # sent to the host (RFC 9110 §7.6.3), not added to answers

# RFC 9110 §7.6.1: connection-specific fields are never forwarded (nor those named
# in Connection). Content-Length is recomputed for the body actually sent.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
        "trailer",
        "proxy-authenticate",
        "proxy-authorization",
        "content-length",
    }
)
# Request fields the proxy decides itself: the cache policy is the proxy's, the
# body encoding is negotiated per hop.
NOT_FORWARDED = HOP_BY_HOP | {"host", "cache-control", "pragma", "accept-encoding", "expect"}
# Nor, on cached calls, the client's credentials: the key is the body alone, so the
# answer stored must not depend on who asked (RFC 9111 §3.5; a function that reads
# them could otherwise personalize an answer that every client then gets).
NOT_FORWARDED_CACHED = NOT_FORWARDED | {"cookie", "authorization"}
# requests decodes bodies, so a live response's Content-Encoding would lie. The host's
# X-Request-Id is replaced by the request's own (observe.py): a stored one is another's.
NOT_RETURNED_LIVE = HOP_BY_HOP | {"content-encoding", "x-request-id"}
# A stored answer's Age is replaced by the one computed when it is sent (RFC 9111 §5.1).
NOT_RETURNED_STORED = HOP_BY_HOP | {"age", "x-request-id"}


def end_to_end(fields: Iterable[tuple[str, str]], dropped: frozenset[str]) -> list[tuple[str, str]]:
    """``fields`` without those in ``dropped`` (lower-case names) or named in ``Connection``."""
    fields = list(fields)
    named = {f.strip().lower() for k, v in fields if k.lower() == "connection" for f in v.split(",")}
    return [(k, v) for k, v in fields if k.lower() not in dropped and k.lower() not in named]


def forwarded_headers(environ: dict[str, Any], *, cached: bool = False) -> dict[str, str]:
    """The request fields sent to the host (``cached``: for a call whose answer may be stored)."""
    not_forwarded = NOT_FORWARDED_CACHED if cached else NOT_FORWARDED
    connection_fields = {f.strip().lower() for f in environ.get("HTTP_CONNECTION", "").split(",")}
    headers = {"Accept-Encoding": "identity", "Via": VIA}
    if environ.get("CONTENT_TYPE"):
        headers["Content-Type"] = environ["CONTENT_TYPE"]
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:].replace("_", "-").lower()
            if name not in not_forwarded and name not in connection_fields and name != "via":
                headers[name.title()] = value
    client = environ.get("REMOTE_ADDR")
    if client:
        prior = environ.get("HTTP_X_FORWARDED_FOR")
        headers["X-Forwarded-For"] = f"{prior}, {client}" if prior else client
    return headers
