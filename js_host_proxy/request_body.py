"""A request's body, read whole within a limit, and the answers that refuse one.

The proxy hashes and forwards bodies whole, so each is read at once: up to its
``Content-Length``, or, when the server ends the stream (a chunked body,
``wsgi.input_terminated``), up to one byte past the limit to notice a larger one. A body
over its limit is refused before a byte of it is read when its length is known (413), one
that cannot be read with a 400.
"""

from __future__ import annotations

from typing import Any

from js_host_proxy.replies import Reply, text_reply


def read_body(environ: dict[str, Any], limit: int) -> bytes | None:
    """The request body, or None when it is larger than ``limit`` bytes."""
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        if not length.isdigit():
            raise ValueError(f"invalid Content-Length {length!r}")
        if int(length) > limit:
            return None  # refused before reading a byte of it
        return stream.read(int(length))
    if environ.get("wsgi.input_terminated"):
        # Chunked: the server ends the stream; read one byte past the limit to notice.
        body = stream.read(limit + 1)
        return None if len(body) > limit else body
    return b""


def body_or_refusal(environ: dict[str, Any], max_body: int, what: str, advice: str = "") -> bytes | Reply:
    """The request's body, or the refusal to send: 400 when it cannot be read, 413 over
    ``max_body`` (JS_HOST_PROXY_MAX_BODY; ``what`` names the body, ``advice`` ends the
    413's text)."""
    try:
        body = read_body(environ, max_body)
    except ValueError as err:
        return text_reply(400, f"js-host-proxy: {err}")
    if body is None:
        return text_reply(
            413,
            f"js-host-proxy: {what} larger than {max_body} bytes (JS_HOST_PROXY_MAX_BODY){advice}",
        )
    return body
