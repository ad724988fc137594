"""The pages :class:`~js_host.middleware.JSHostMiddleware` answers with when the host is unavailable.

Development: a 500 HTML page naming the config file and the host's logfile,
with the last lines of it (everything escaped: a logfile may hold anything); for a
call whose pool worker died (:class:`~js_host.exceptions.WorkerDied`), the cause.
Production: a plain 503 with ``Retry-After``, which says nothing about the
machine.
"""

from __future__ import annotations

import html

from .exceptions import WorkerDied
from .runtime import tail

Headers = list[tuple[str, str]]


def development_page(
    err: BaseException, *, config_file: str, logfile: str | None, log_lines: int, ended: str | None = None
) -> bytes:
    """The HTML page for ``err``; ``logfile`` None: the host has not been started; ``ended``: how
    the host process ended when it crashed (``exit code 1``, ``signal SIGKILL``)."""
    if logfile:
        log = (
            f"<p>Logfile: <code>{html.escape(logfile)}</code></p>\n"
            f"<h2>Last {log_lines} lines of the logfile</h2>\n"
            f'<pre id="log">{html.escape(tail(logfile, log_lines))}</pre>\n'
        )
    else:
        log = "<p>The host has no logfile yet: it has not been started.</p>\n"
    ended_line = f'<p id="ended">The host process ended: {html.escape(ended)}.</p>\n' if ended else ""
    if isinstance(err, WorkerDied):
        cause = (
            "<h2>The worker running the call died</h2>\n"
            f'<p id="cause">It {html.escape(err.cause.rstrip("."))}.</p>\n'
            "<p>The host has replaced it: fix the function (or its input) and reload this page.</p>\n"
        )
        advice = ""
    else:
        cause = ""
        advice = "<p>Fix the cause and reload this page: the host is started again on the next request.</p>\n"
    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>JavaScript host error</title></head><body>\n"
        "<h1>JavaScript host error</h1>\n"
        f"<p>Config file: <code>{html.escape(config_file)}</code></p>\n"
        f'<pre id="error">{html.escape(type(err).__name__)}: {html.escape(str(err))}</pre>\n'
        f"{ended_line}{cause}{log}{advice}"
        "</body></html>\n"
    )
    return page.encode()


def development_response(page: bytes) -> tuple[str, Headers, bytes]:
    """Development: the 500 status, headers and body of ``page`` (see :func:`development_page`)."""
    return "500 Internal Server Error", _headers("text/html; charset=utf-8", page), page


def unavailable_response(retry_after: int) -> tuple[str, Headers, bytes]:
    """Production: the 503 status, headers and body asking the client to retry in ``retry_after`` s."""
    body = (
        "503 Service Unavailable\n\nThe JavaScript host is not reachable at the moment. "
        f"Please retry in {retry_after} seconds.\n"
    ).encode()
    headers = [("Retry-After", str(retry_after)), *_headers("text/plain; charset=utf-8", body)]
    return "503 Service Unavailable", headers, body


def _headers(content_type: str, body: bytes) -> Headers:
    # Never cached: the page describes a moment, and the next request may work.
    return [("Cache-Control", "no-store"), ("Content-Type", content_type), ("Content-Length", str(len(body)))]
