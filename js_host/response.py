"""One HTTP/1.1 response read off a kept-alive socket, parsed by ``httptools`` (llhttp).

An answer reaches only the call that asked for it, so this module decides which
bytes are the answer to the request just sent:

- Interim answers (1xx other than 101) are skipped, headers and all, and the
  final answer is read from the same socket, as many of them as the server sends
  (RFC 9110, section 15.2). A host function may send them through Node's
  ``res.writeEarlyHints()``, ``writeProcessing()`` or ``writeContinue()``.
- ``101 Switching Protocols`` answers only a request that asked for an
  ``Upgrade`` (RFC 9110, section 15.2.2); the client never asks, so it is an error.
- A 1xx with Content-Length or Transfer-Encoding is invalid (RFC 9110, section
  8.6; RFC 9112, section 6.1): its "content" would be the next answer's bytes.
- Bytes after the end of the final answer (a second answer nobody asked for,
  garbage after the Content-Length bytes) stop the parser there; the answer is
  complete and returned, and :attr:`ResponseParser.extra` tells the pool not to
  reuse the socket. Empty lines between messages are skipped by llhttp without
  a trace: they cannot carry an answer.
"""

from __future__ import annotations

import httptools


class Response:
    """A complete HTTP response: status code, headers and body bytes."""

    __slots__ = ("_headers", "_raw_headers", "body", "keep_alive", "status")

    def __init__(
        self, status: int, raw_headers: list[tuple[bytes, bytes]], body: bytes, keep_alive: bool
    ) -> None:
        self.status = status
        self._raw_headers = raw_headers
        self._headers: dict[str, str] | None = None
        self.body = body
        self.keep_alive = keep_alive

    @property
    def headers(self) -> dict[str, str]:
        """Lowercase names to values (decoded on first use: most calls never look)."""
        if self._headers is None:
            self._headers = {
                name.decode("latin-1").lower(): value.decode("latin-1") for name, value in self._raw_headers
            }
        return self._headers

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The header fields as they came: (name, value) bytes, in order, repeats included."""
        return self._raw_headers

    def header_values(self, name: bytes) -> list[str]:
        """Every value of the field ``name`` (lower case), in order: a repeated field such as
        Cache-Control counts as its values joined by commas (RFC 9110, section 5.3)."""
        return [value.decode("latin-1") for key, value in self._raw_headers if key.lower() == name]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"


class BadResponse(Exception):
    """The bytes are not an acceptable answer; the message says why (the caller
    adds the URL and closes the socket)."""


class _Stop(Exception):
    """Raised in a parser callback to stop llhttp at that point (feed_data then
    raises HttpParserCallbackError)."""


class ResponseParser:
    """httptools callbacks collecting one final response; one parser per socket
    (llhttp is ready for the next response once one completes)."""

    __slots__ = (
        "body",
        "complete",
        "extra",
        "headers",
        "headers_complete",
        "keep_alive",
        "parser",
        "problem",
        "status",
    )

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.reset()

    def reset(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.complete = False
        self.headers_complete = False
        self.keep_alive = False
        self.status = 0
        self.extra = False  # bytes followed the final answer: the socket must not be reused
        self.problem = ""  # why the bytes are not an acceptable answer

    def feed(self, data: bytes) -> None:
        """Parse ``data``; raises :class:`BadResponse` unless it is (part of) one answer."""
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as err:
            if self.complete:
                # The answer was whole; what follows it (a message, garbage, data after
                # "Connection: close") is nobody's answer.
                self.extra = True
                return
            raise BadResponse(self.problem or f"sent an invalid HTTP response ({err})") from None

    def on_message_begin(self) -> None:
        if self.complete:
            # A second message after the final answer, in the same read.
            raise _Stop()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = status = self.parser.get_status_code()
        if status >= 200:
            self.headers_complete = True
            return
        if status == 101:
            self.problem = (
                "answered 101 Switching Protocols to a request that did not ask for an Upgrade "
                "(RFC 9110, section 15.2.2)"
            )
            raise _Stop()
        if self.has_framing():
            self.problem = (
                f"sent an interim {status} answer with Content-Length or Transfer-Encoding, "
                "which a 1xx never has (RFC 9110, section 8.6)"
            )
            raise _Stop()

    def has_framing(self) -> bool:
        """Whether the headers have Content-Length or Transfer-Encoding."""
        for name, _ in self.headers:
            name = name.lower()
            if name == b"content-length" or name == b"transfer-encoding":
                return True
        return False

    def is_close_delimited(self) -> bool:
        """Whether the body ends with the connection: neither Content-Length nor a
        chunked Transfer-Encoding (RFC 9112, section 6.3, rule 8)."""
        for name, value in self.headers:
            name = name.lower()
            if name == b"content-length":
                return False
            # Chunked is the final coding when present (RFC 9112, section 6.3, rule 4).
            if name == b"transfer-encoding" and value.rsplit(b",", 1)[-1].strip().lower() == b"chunked":
                return False
        return True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.status < 200:
            # An interim answer (RFC 9110, section 15.2): dropped, the final one follows.
            self.headers = []
            return
        # Read now: llhttp resets its state once the message is complete.
        self.keep_alive = self.parser.should_keep_alive()
        self.complete = True

    def response(self) -> Response:
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        return Response(self.status, self.headers, body, self.complete and self.keep_alive and not self.extra)
