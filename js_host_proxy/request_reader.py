"""One client request as its bytes arrive, and the limits a client must keep to.

The proxy's worker (:mod:`js_host_proxy.worker`) feeds a connection's bytes to a
:class:`RequestReader` in its event loop, without blocking; httptools (llhttp)
finds where the request ends, so that a thread gets the connection only once the
whole request is there. :class:`ClientLimits` are the deadlines and bounds, for the
requests and for their answers (``JS_HOST_PROXY_HEADER_TIMEOUT`` and the others, set in
``gunicorn_settings.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httptools

# What RequestReader.feed() found.
MORE, READY, READY_CLOSE, BAD = "more", "ready", "ready-close", "bad"


@dataclass(frozen=True)
class ClientLimits:
    """What a client may take to send a request and to take its answer, and how much of
    either is buffered."""

    # Seconds from a new connection (or a kept-alive one's first byte) to the end of the head.
    header_timeout: float = 10.0
    # Seconds from the end of the head to the end of the body; also the longest a thread waits
    # on the socket for a request gunicorn's parser finds unfinished.
    body_timeout: float = 30.0
    # Largest request head in bytes (then 431).
    max_head: int = 65536
    # Largest body buffered; a longer one goes to the app with what arrived, which answers
    # 413 (the proxy's JS_HOST_PROXY_MAX_BODY), and the connection is closed after it.
    max_body: int = 10 * 1024 * 1024
    # Body bytes one worker buffers for incomplete requests at once (then 503).
    max_buffered: int = 64 * 1024 * 1024
    # Seconds from an answer being ready to the client having taken all of it (then closed).
    send_timeout: float = 30.0
    # Bytes of answers one worker holds for clients that have not taken them, all together
    # (past it, the connections whose answers have waited longest are closed).
    max_unsent: int = 64 * 1024 * 1024


class RequestReader:
    """One request's bytes as they arrive; httptools (llhttp) finds where it ends.

    A request that arrives in one read (the usual case) costs one parse and one callback; the
    head is looked into only while a request is incomplete."""

    __slots__ = (
        "chunks",
        "complete",
        "declared",
        "error",
        "expects",
        "head_at",
        "head_size",
        "parser",
        "size",
        "started",
    )

    def __init__(self, now: float) -> None:
        self.parser = httptools.HttpRequestParser(self)
        self.chunks: list[bytes] = []
        self.size = 0
        self.started = now
        self.complete = False
        self.head_size = 0  # 0 until the head is complete
        self.head_at = 0.0
        self.declared = 0  # Content-Length
        self.expects = False  # Expect: 100-continue
        self.error = ""

    def reset(self, now: float) -> RequestReader:
        """Ready for the connection's next request (its parser is between two requests)."""
        self.chunks = []
        self.size = 0
        self.started = now
        self.complete = False
        self.head_size = 0
        self.declared = 0
        self.expects = False
        return self

    def on_message_complete(self) -> None:  # httptools' callback
        self.complete = True

    def deadline(self, limits: ClientLimits) -> float:
        if not self.head_size:
            return self.started + limits.header_timeout
        return self.head_at + limits.body_timeout

    def feed(self, data: bytes, limits: ClientLimits) -> str:
        """MORE, READY (the request is complete), READY_CLOSE (its body is over max_body: the
        app answers 413 from what arrived) or BAD (``self.error`` says why)."""
        self.chunks.append(data)
        self.size += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.error = "upgrade"  # not to be reused
            return READY  # the app refuses it; it is not read further here
        except httptools.HttpParserError as err:
            if self.complete:  # bytes after a complete request: the next one, dealt with then
                self.error = "after"
                return READY
            self.error = f"malformed request ({err})"
            return BAD
        if self.complete:
            return READY
        if not self.head_size:
            data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if self.size > limits.max_head:
                    self.error = "head"
                    return BAD
                return MORE
            self.head_size = end + 4
            self.head_at = time.monotonic()
            self._read_head(data[:end])
        if self.size - self.head_size > limits.max_body or self.declared > limits.max_body:
            return READY_CLOSE
        return MORE

    def _read_head(self, head: bytes) -> None:
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip()
            if name == b"content-length" and value.isdigit():
                self.declared = int(value)
            elif name == b"expect" and value.lower() == b"100-continue":
                self.expects = True

    def take(self) -> bytes:
        data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        self.chunks = []
        return data


def status_response(status: int, reason: str, text: str) -> bytes:
    body = text.encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body
