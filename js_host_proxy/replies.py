"""The answers the proxy sends: a status, header fields, a body and what it is.

``X-Cache`` says what an answer is (``HIT``, ``MISS``, ``BYPASS``, ``STALE``),
``Cache-Status`` how the proxy handled it (RFC 9211, ``cache_status.py``), and
``Content-Length`` is the body's; nothing else is added to the host's fields.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Callable

from werkzeug.http import HTTP_STATUS_CODES

from js_host_proxy.cache_status import FIELD as CACHE_STATUS

StartResponse = Callable[..., Any]


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    # May requests waiting for the same call take this answer? Only a stored (or storable)
    # one: an error, or what a shared cache must not store, is for its own request.
    shareable: bool = False
    # X-Cache: HIT | MISS | BYPASS | STALE (None: not a cacheable request).
    state: str | None = None
    # The proxy's Cache-Status member (None: an answer of the proxy's own, RFC 9211 §2).
    cache_status: str | None = None

    def send(
        self, start_response: StartResponse, state: str | None = None, cache_status: str | None = None
    ) -> list[bytes]:
        """Send it; ``state`` and ``cache_status`` replace its own (a shared answer's)."""
        headers = list(self.headers)
        state = state or self.state
        if state == "HIT" and self.state == "MISS" and not any(k.lower() == "age" for k, _ in headers):
            headers.append(("Age", "0"))  # another request's answer, just stored (RFC 9111 §5.1)
        if state is not None:
            headers.append(("X-Cache", state))
        cache_status = cache_status or self.cache_status
        if cache_status is not None:
            headers.append((CACHE_STATUS, cache_status))
        headers.append(("Content-Length", str(len(self.body))))
        start_response(status_line(self.status), headers)
        return [self.body]


def status_line(status: int) -> str:
    return f"{status} {HTTP_STATUS_CODES.get(status, 'Unknown')}"


def text_reply(status: int, message: str, extra: Iterable[tuple[str, str]] = ()) -> Reply:
    """A plain-text answer of the proxy's own (an error, a refusal)."""
    return Reply(status, [("Content-Type", "text/plain; charset=utf-8"), *extra], message.encode() + b"\n")
