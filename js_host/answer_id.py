"""Whether an answer is the one to the request sent: the ``X-Request-Id`` it carries back.

Framing alone cannot tell one answer from another. A function that writes a whole
response on ``this.res.socket`` after its own answer (from a ``setImmediate``, say)
puts bytes on the kept-alive connection that arrive after the checks of
:mod:`js_host.response` and of the pool's reuse ran: the next request on that
connection would read them as its answer, and every answer after it would be one
out of step. A host echoes the request's ``X-Request-Id`` on every answer to a
function call or a batch (``js_host/node/lib/server.js``), and every such request
carries an id of its own (a uuid4 per request from the client; the proxy's upstream
requests get theirs from ``js_host_proxy.request_id.upstream``), so both pools
(:mod:`js_host.transport`, :mod:`js_host.aio_transport`) check, before they return
an answer, that it carries the id sent. An answer with another id, or with none on
a connection whose earlier answers carried one, closes the connection and fails the
call with :class:`~js_host.exceptions.AnswerMismatch`. A host that never echoes an
id (js-host 0.11) is not checked: on a connection none of whose answers carried an
id, an answer without one is taken as it is.
"""

from __future__ import annotations

from typing import Protocol

from .connection import request_url
from .exceptions import AnswerMismatch
from .response import Response

#: The request's header line, ``%`` its id (checked by whoever made it: no CR or LF).
ID_LINE = b"X-Request-Id: %s\r\n"


class Echoing(Protocol):
    """A connection as the check sees it: whether one of its answers carried an id."""

    echoes: bool


def echoed_id(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The first ``X-Request-Id`` value of an answer's header fields (None: none)."""
    for name, value in headers:
        # The host writes the name as it is here; an intermediary may change its case.
        if len(name) == 12 and (name == b"X-Request-Id" or name.lower() == b"x-request-id"):
            return value
    return None


def mismatch(
    conn: Echoing, response: Response, sent: bytes, host: str, port: int, target: str
) -> AnswerMismatch | None:
    """None when ``response``, read on ``conn`` for the request to ``target`` at ``host:port``
    sent with the id ``sent``, is that request's answer (noting on ``conn`` that its answers
    carry ids); else the error to raise once ``conn`` is closed."""
    echoed = echoed_id(response.raw_headers)
    if echoed == sent:
        conn.echoes = True
        return None
    if echoed is None:
        if not conn.echoes:
            return None  # a host that never echoes an id (js-host 0.11)
        if response.status == 503 and not response.keep_alive:
            # A server in front refusing the request before it was routed (the proxy's
            # worker over its buffer budget): no output, never stored, the connection ends.
            return None
        said = "carries no X-Request-Id, which the earlier answers on this connection carried"
    else:
        said = f"carries the X-Request-Id {echoed.decode('latin-1')!r}"
    return AnswerMismatch(
        f"{request_url(host, port, target)}: the answer read is not the one to this request: it {said} "
        f"({sent.decode('latin-1')!r} was sent). Bytes that a function wrote on the connection "
        "after its own answer (through this.res.socket) cause this: most likely the function "
        "of the call before this one on it. The connection was closed; the call was not retried "
        "(the host may have run it)."
    )
