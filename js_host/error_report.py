"""How an app hands a "host unavailable" error to :class:`~js_host.middleware.JSHostMiddleware`.

Frameworks that render exceptions themselves (Flask's error handlers, Django's
500 page) catch them before a WSGI middleware sees them: :func:`report_error`
puts the error in the request's environ, where the middleware finds it and
answers with its own page. Used by :mod:`js_host.middleware` and
:mod:`js_host.django`.
"""

from __future__ import annotations

from typing import Any

from .exceptions import ConnectionError, ProcessError, WorkerDied  # noqa: A004 - the spec's name

#: environ key of the middleware handling the request.
ENVIRON_MIDDLEWARE = "js_host.middleware"
#: environ key where :func:`report_error` puts an error raised by the app.
ENVIRON_ERROR = "js_host.middleware.error"
#: The errors that mean "host unavailable" and get the middleware's pages; others propagate.
UNAVAILABLE_ERRORS = (ConnectionError, ProcessError)
#: The errors worth handing over: those, and a pooled worker's death (the development page shows it).
REPORTED_ERRORS = (*UNAVAILABLE_ERRORS, WorkerDied)


def report_error(environ: dict[str, Any], exc: BaseException) -> None:
    """Let :class:`JSHostMiddleware` answer for ``exc``, raised while handling this request.

    For apps that catch exceptions themselves, e.g. a Flask error handler::

        @app.errorhandler(js_host.exceptions.ConnectionError)
        @app.errorhandler(js_host.exceptions.ProcessError)
        def js_host_unavailable(exc):
            report_error(flask.request.environ, exc)
            return "JavaScript host unavailable", 503

    The middleware replaces the app's response with its own error page.
    """
    environ[ENVIRON_ERROR] = exc
