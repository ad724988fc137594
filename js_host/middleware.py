"""WSGI middleware that keeps each worker process connected to its js-host.

Wrap any WSGI application (Django's ``get_wsgi_application()``, Flask, plain
WSGI) once js_host is configured::

    from js_host.conf import settings
    from js_host.middleware import JSHostMiddleware

    settings.configure(SOURCE_ROOT=..., URL_OVERRIDE="http://127.0.0.1:9010", CONNECT_ONCE_CONFIGURED=False)
    application = JSHostMiddleware(application)

In each process (each gunicorn worker) the middleware connects to the host once
and keeps the connection; after ``fork()`` (gunicorn ``--preload``) the child
connects again. js_host closes each process's manager connection when that
process exits, so that a manager can stop hosts nobody uses.

Development (``USE_MANAGER=True``): the manager and the host are started when
needed; when a file the host loaded (the config file, any module it required;
``node_modules`` out), or a file in ``watch``, changes, the host is restarted
before the next request is handled (also for an edit made while no server ran).
Each worker watches those files off the request path (inotify, or a polling
thread: see :mod:`js_host.file_watch`); before a request it only reads what
the watcher found and checks that the host process is alive. A host that has crashed gives a 500 page
naming its logfile with the last lines of it and how it ended (exit code or
signal), once: the next request, in any worker, starts it again (see
:mod:`js_host.reloader`).

Production (``URL_OVERRIDE`` or no manager): when the host, or the proxy in
front of it, cannot be reached the answer is a 503 with ``Retry-After``, and the
worker reconnects by itself once it is back. After a failed connect, function
calls fail at once (503) rather than every request waiting for a host that
hangs, and pages that call no function are served as usual; one request every
``probe_interval`` seconds tries to connect again (waiting at most
``PROBE_TIMEOUT`` for the host's status), so a worker recovers within about a
second of the host's return. One thread reconnects; the others do not wait
for it.

Only js_host's "host unavailable" errors become these pages: ``ConnectionError``
(which is also what a proxy's 502/503 in front of a host that is down raises)
and ``ProcessError``; in development also ``WorkerDied`` (a pooled host's worker
died running the call: the page shows the cause, the host has already replaced
the worker). Every other exception propagates.
Frameworks that turn exceptions into their own error page before a WSGI
middleware sees them can hand the error over with :func:`report_error` from
their error handler (Flask), or with
:class:`js_host.django.ReportErrorsMiddleware` (Django).

This module is the WSGI call; what it shares with the ASGI middleware
(connecting, the reloader's checks, which page answers which error) is
:mod:`js_host.middleware_core`, the development reloader is
:mod:`js_host.reloader` and the error pages are :mod:`js_host.error_page`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Callable

from .django import ReportErrorsMiddleware  # its home is beside the Django app; first documented here
from .error_report import ENVIRON_ERROR, ENVIRON_MIDDLEWARE, REPORTED_ERRORS, UNAVAILABLE_ERRORS, report_error
from .exceptions import JSHostError
from .middleware_core import PROBE_TIMEOUT, MiddlewareCore, MiddlewareOptions, check_options
from .start_response import DeferredStartResponse, StartResponse

if sys.version_info >= (3, 11):
    from typing import Unpack  # also at run time: typing.get_type_hints() reads the signature
elif TYPE_CHECKING:
    from typing_extensions import Unpack

logger = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class JSHostMiddleware(MiddlewareCore):
    """Connect each worker to the js-host, and answer clearly when it is unavailable.

    ``options`` are :class:`~js_host.middleware_core.MiddlewareOptions`: ``host`` (default
    ``js_host.host.host``, built from ``js_host.conf.settings``), ``watch``, ``watch_interval``,
    ``retry_after``, ``probe_interval``, ``status_timeout``, ``log_lines``.
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        # Connect (and, with a manager, start the host) now rather than on the first request.
        connect_on_init: bool = True,
        **options: Unpack[MiddlewareOptions],
    ) -> None:
        check_options(type(self).__name__, options, "connect_on_init")
        super().__init__(**options)
        self.app = app
        if connect_on_init:
            try:
                self.prepare(show_crash=False)
            except JSHostError as err:
                logger.warning("js-host not available yet (%s): %s", self._next_try(), err)

    # WSGI

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        environ[ENVIRON_MIDDLEWARE] = self
        try:
            self.prepare()
        except JSHostError as err:
            if self.development:
                return self._error_response(err, start_response)
            # Production: pages that call no function still work; calls raise and get the 503.
            logger.debug("js-host not available (%s): %s", self._next_try(), err)

        deferred = DeferredStartResponse(start_response)
        try:
            app_iter = self.app(environ, deferred)
        except REPORTED_ERRORS as err:
            # Once the app's headers went out (legacy write()), the response cannot be replaced.
            if deferred.flushed or not self.answers_for(err):
                raise
            return self._error_response(err, start_response, during_call=True)

        reported = environ.get(ENVIRON_ERROR)
        if reported is not None and self.answers_for(reported) and not deferred.flushed:
            if hasattr(app_iter, "close"):
                app_iter.close()
            return self._error_response(reported, start_response, during_call=True)
        deferred.flush()
        return app_iter

    def _error_response(
        self, err: BaseException, start_response: StartResponse, *, during_call: bool = False
    ) -> list[bytes]:
        """``during_call``: raised by a function call of the app (not while connecting)."""
        status, headers, body = self.error_page(err, during_call=during_call)
        start_response(status, headers)
        return [body]


__all__ = [
    "ENVIRON_ERROR",
    "ENVIRON_MIDDLEWARE",
    "PROBE_TIMEOUT",
    "UNAVAILABLE_ERRORS",
    "JSHostMiddleware",
    "ReportErrorsMiddleware",
    "report_error",
]
