"""``CallRecord``: what one ``Function.call`` reports once it ends.

Each call ends with one DEBUG record on the ``js_host.function`` logger (shown on the
console at ``VERBOSITY`` ``FUNCTION_CALL``) and, when ``prometheus_client`` is
installed, in the client's metrics (:mod:`js_host.metrics`). The record's message
reads::

    Function 'render' (hash 3f2a9c01): 200 in 12.3 ms, cache HIT, request id 5d41402abc4b2a76b9719d911017c592

and its ``extra`` fields, for a JSON formatter, are ``function``, ``hash``,
``duration_ms``, ``status`` (the HTTP status, None when no answer came), ``cache``
(``"local"`` for a local cache hit, the proxy's ``X-Cache``, else None),
``request_id`` (the ``X-Request-Id`` sent, which the proxy and the host log too; None
when nothing was sent), ``outcome`` (``ok``, ``error``, ``fallback``) and ``error``
(the exception's class name, or None).
"""

from __future__ import annotations

import logging
import time

from . import metrics, verbosity
from .response import Response

logger = logging.getLogger("js_host.function")


class CallRecord:
    """One call of ``function``, filled in as it goes (``Function._call`` sets the fields)."""

    __slots__ = ("cache", "function", "hash", "request_id", "response", "started", "status")

    def __init__(self, function: str) -> None:
        self.function = function
        self.hash: str | None = None
        self.status: int | None = None
        self.cache: str | None = None
        self.request_id: str | None = None
        #: The host's (or proxy's) answer, once one came: its status and X-Cache are read
        #: from it only when the record is logged.
        self.response: Response | None = None
        self.started = time.perf_counter()

    def finished(self, error: BaseException | None = None, *, fallback: bool = False) -> None:
        """The call ended: returned (``error`` None), raised ``error``, or answered with its
        fallback instead of ``error``."""
        seconds = time.perf_counter() - self.started
        outcome = "ok" if error is None else "fallback" if fallback else "error"
        error_name = None if error is None else type(error).__name__
        metrics.record_call(self.function, outcome, seconds, error_name, self.cache == "local")
        if logger.isEnabledFor(logging.DEBUG):
            self._log(seconds, outcome, error_name)

    def _log(self, seconds: float, outcome: str, error_name: str | None) -> None:
        status, cache, response = self.status, self.cache, self.response
        if response is not None:
            status = response.status
            found = response.header_values(b"x-cache")
            cache = found[0] if found else None
        result = str(status) if error_name is None else error_name
        if error_name is not None and status is not None:
            result += f" (status {status})"
        if outcome == "fallback":
            result += ", fallback returned"
        duration_ms = round(seconds * 1000, 3)
        logger.debug(
            "Function %r (hash %s): %s in %.1f ms, cache %s, request id %s",
            self.function,
            (self.hash or "-")[:8],
            result if cache != "local" else "local cache hit",
            duration_ms,
            cache or "none",
            self.request_id or "none",
            extra={
                "verbosity": verbosity.FUNCTION_CALL,
                "function": self.function,
                "hash": self.hash,
                "duration_ms": duration_ms,
                "status": status,
                "cache": cache,
                "request_id": self.request_id,
                "outcome": outcome,
                "error": error_name,
            },
        )
