"""One exception tree for the whole library, rooted in :class:`JSHostError`.

Low-level errors (sockets, HTTP, subprocesses) are converted where they enter the
library, so callers only ever need to catch these.
"""

from __future__ import annotations


class JSHostError(Exception):
    """Base class of every error raised by js_host."""


class ConfigError(JSHostError):
    """A setting or config file is invalid; the message names it and the fix."""


class ConnectionError(JSHostError):  # noqa: A001 - the spec's public name
    """The host (or manager) could not be reached."""


class ProcessError(JSHostError):
    """A host or manager process failed to start or has crashed."""


class UnexpectedResponse(JSHostError):
    """The host answered with something the protocol does not allow."""


class AnswerMismatch(UnexpectedResponse):
    """The answer read is not the one to the request sent: it carries another request's
    ``X-Request-Id``, or none on a connection whose answers carry one (a function that
    writes a response of its own on its socket after its answer causes this). The
    connection was closed and the call not retried: the host may have run it."""


class FunctionError(JSHostError):
    """The JavaScript function reported an error.

    ``js_message`` is the JavaScript error's message and ``js_stack`` its stack.
    """

    def __init__(self, message: str, *, js_message: str = "", js_stack: str = "") -> None:
        super().__init__(message)
        self.js_message = js_message
        self.js_stack = js_stack


class FunctionTimeout(JSHostError):
    """The function did not answer within its timeout."""


class WorkerDied(FunctionError):
    """The worker of a pooled host died while it ran the call (an uncaught exception,
    ``process.exit()``, its heap exhausted, a signal). The host replaced it: the next
    call is served. ``cause`` is what happened to the worker, as the host said it."""

    def __init__(self, message: str, *, cause: str, js_message: str = "", js_stack: str = "") -> None:
        super().__init__(message, js_message=js_message, js_stack=js_stack)
        self.cause = cause
