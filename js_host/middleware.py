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

This module is the WSGI core; the development reloader is
:mod:`js_host.reloader` and the error pages are :mod:`js_host.error_page`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from typing import Any, Callable

from . import error_page
from .conf import config_file_path, settings
from .django import ReportErrorsMiddleware  # its home is beside the Django app; first documented here
from .error_report import ENVIRON_ERROR, ENVIRON_MIDDLEWARE, REPORTED_ERRORS, UNAVAILABLE_ERRORS, report_error
from .exceptions import JSHostError, WorkerDied
from .host import JSHost, get_default_host, get_default_host_if_built
from .reloader import Reloader
from .start_response import DeferredStartResponse, StartResponse

logger = logging.getLogger(__name__)

#: Production: the longest a connect attempt made while the host is down waits for its status.
PROBE_TIMEOUT = 0.5

WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class JSHostMiddleware:
    """Connect each worker to the js-host, and answer clearly when it is unavailable.

    ``host`` defaults to ``js_host.host.host`` (built from ``js_host.conf.settings``).
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        # The JSHost to keep connected; None: the default host of the settings.
        host: JSHost | None = None,
        # Development: more files whose change restarts the host (the files the host loaded,
        # the config file among them, always do).
        watch: Sequence[str | os.PathLike[str]] = (),
        # Development: seconds between two checks for changed code or a crashed host (0: before
        # every request, so that an edit shows at the next one; a check costs microseconds).
        watch_interval: float = 0.0,
        # Production: the Retry-After header (seconds) of the 503 page.
        retry_after: int = 5,
        # Production: while the host is down, seconds between two connect attempts of a worker
        # (function calls fail at once in between).
        probe_interval: float = 1.0,
        # Seconds to wait for the host's GET /status when (re)connecting.
        status_timeout: float = 2.0,
        # Development: how many lines of the host's logfile the error page shows.
        log_lines: int = 40,
        # Connect (and, with a manager, start the host) now rather than on the first request.
        connect_on_init: bool = True,
    ) -> None:
        self.app = app
        self._host = host
        #: Development: restarts the host when watched files change.
        self.reloader = Reloader(watch, watch_interval)
        self.retry_after = retry_after
        self.probe_interval = probe_interval
        self._down = False  # production: the last connect failed
        self.status_timeout = status_timeout
        self.log_lines = log_lines
        self._lock = threading.RLock()
        self._pid: int | None = None  # the process that connected
        self._ready = False  # connected, and no unavailable error seen since
        self._connected_host: JSHost | None = None
        if connect_on_init:
            try:
                self.prepare(show_crash=False)
            except JSHostError as err:
                logger.warning("js-host not available yet (%s): %s", self._next_try(), err)

    @property
    def host(self) -> JSHost:
        # Looked up each time: settings.configure() replaces the default host.
        return self._host if self._host is not None else get_default_host()

    def _built_host(self) -> JSHost | None:
        """The host if it exists already: never built here (building it may raise, e.g. a
        ConfigError for a missing config file, and this is used to report errors)."""
        return self._host if self._host is not None else get_default_host_if_built()

    @property
    def development(self) -> bool:
        """True when a manager runs the host (``USE_MANAGER``)."""
        host = self._built_host()
        return host.manager is not None if host is not None else settings.USE_MANAGER

    # The watch and watch_interval options, kept by the reloader.

    @property
    def watch(self) -> list[str]:
        return self.reloader.watch

    @watch.setter
    def watch(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        self.reloader.watch = paths

    @property
    def watch_interval(self) -> float:
        return self.reloader.interval

    @watch_interval.setter
    def watch_interval(self, seconds: float) -> None:
        self.reloader.interval = seconds

    def watched_files(self) -> list[str]:
        return self.reloader.watched_files(self.host)

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
            if deferred.flushed or not self._answers_for(err):
                raise
            return self._error_response(err, start_response, during_call=True)

        reported = environ.get(ENVIRON_ERROR)
        if reported is not None and self._answers_for(reported) and not deferred.flushed:
            if hasattr(app_iter, "close"):
                app_iter.close()
            return self._error_response(reported, start_response, during_call=True)
        deferred.flush()
        return app_iter

    # Connection

    def prepare(self, *, show_crash: bool = True) -> None:
        """Connect this process (again after fork or failure); in development, restart the host if
        watched files changed and reconnect if it was restarted or has gone.

        ``show_crash`` False (at start-up, with no request to show it to): a crash not shown yet
        raises its ProcessError but stays to be shown, and the host is not started again.
        """
        pid = os.getpid()
        host = self.host
        if self._up_to_date(host, pid):
            return
        reloader = self.reloader
        if host.manager is None:
            self._prepare_production(host, pid)
            return
        with self._lock:
            self._forget_if_changed(host, pid)
            # Another thread may have restarted the host and reconnected meanwhile.
            if reloader.due() and (not self._ready or reloader.changed()):
                connected, self._ready = self._ready, False  # until the check says otherwise
                self._ready = reloader.check(host, connected=connected, show_crash=show_crash)
            if not self._ready:
                self._connect(host)

    def needs_prepare(self) -> bool:
        """Whether :meth:`prepare` has anything to do (connect, or in development check the host
        and its files). Cheap and never blocks: an async server can call it on its event loop,
        and :meth:`prepare` (which may block) in a thread only when it says so."""
        return not self._up_to_date(self.host, os.getpid())

    def _up_to_date(self, host: JSHost, pid: int) -> bool:
        reloader = self.reloader
        return (
            self._ready
            and self._pid == pid
            and host is self._connected_host
            # Development: a few microseconds, however many files the host loaded (see reloader).
            and (host.manager is None or not reloader.due() or not reloader.changed())
        )

    def _prepare_production(self, host: JSHost, pid: int) -> None:
        if host.retry_wait() > 0:
            return  # a connect failed less than probe_interval ago: function calls fail at once
        # Another thread is connecting: this request goes on (its calls wait for that connect).
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._forget_if_changed(host, pid)
            if not self._ready:
                # While the host is down, a try must not hold its request up for long.
                timeout = min(self.status_timeout, PROBE_TIMEOUT) if self._down else None
                self._connect(host, status_timeout=timeout)
        finally:
            self._lock.release()

    def _forget_if_changed(self, host: JSHost, pid: int) -> None:
        if host is not self._connected_host:
            self._ready = False
            self.reloader.forget()
        if self._pid != pid:  # a forked child connects on its own
            self._ready = False
            self._pid = pid

    def _connect(self, host: JSHost, *, status_timeout: float | None = None) -> None:
        self._connected_host = host
        # With a manager, connect() also starts the manager and the host when needed
        # (one process at a time) and opens a new connection to a new host process.
        # In production, after a failure the host makes the function calls fail at once, and
        # host.retry_wait() says not to connect again, for probe_interval seconds.
        try:
            host.connect(
                status_timeout=self.status_timeout if status_timeout is None else status_timeout,
                retry_after=0 if host.manager is not None else self.probe_interval,
            )
        except JSHostError:
            self._down = host.manager is None
            raise
        self._down = False
        if host.manager is not None:
            self.reloader.connected(host)
        self._ready = True
        logger.debug("Connected to %s in process %s", host.get_name(), os.getpid())

    def _next_try(self) -> str:
        """When a failed connect will be tried again, for log messages."""
        host = self._built_host()
        wait = host.retry_wait() if host is not None else 0.0
        if wait > 0:
            return f"will try again in {wait:.1f} s"
        return "will try again on the next request"

    def close(self) -> None:
        """Close this process's connection to the host now (js_host closes it at exit anyway)."""
        with self._lock:
            self._ready = False
            if self._connected_host is not None:
                self._connected_host.disconnect()

    # Errors

    def _answers_for(self, err: BaseException) -> bool:
        """Whether ``err`` gets this middleware's page: "host unavailable" always; a call whose
        worker died in development (in production it is the app's FunctionError to handle)."""
        if isinstance(err, UNAVAILABLE_ERRORS):
            return True
        return isinstance(err, WorkerDied) and self.development

    def _error_response(
        self, err: BaseException, start_response: StartResponse, *, during_call: bool = False
    ) -> list[bytes]:
        """``during_call``: raised by a function call of the app (not while connecting)."""
        worker_died = isinstance(err, WorkerDied)
        if not worker_died:  # the host itself is fine after a worker's death
            self._ready = False  # the next request reconnects
        if self.development:
            logger.error("js-host error: %s", err)
            host = self._built_host()
            # A host that went during the call: how it ended, and shown once (see reloader).
            ended = (
                self.reloader.crash_seen(host)
                if during_call and not worker_died and host is not None
                else None
            )
            status, headers, body = error_page.development_response(self._page(err, ended))
        else:
            logger.error("js-host unavailable, answering 503: %s", err)
            status, headers, body = error_page.unavailable_response(self.retry_after)
        start_response(status, headers)
        return [body]

    def _page(self, err: BaseException, ended: str | None = None) -> bytes:
        host = self._built_host()
        if host is not None:
            config_file, logfile = host.config_file, host.logfile
        else:  # building the host failed (e.g. the config file is missing)
            config_file, logfile = config_file_path(settings.CONFIG_FILE, settings.source_root), None
        return error_page.development_page(
            err, config_file=config_file, logfile=logfile, log_lines=self.log_lines, ended=ended
        )


__all__ = [
    "ENVIRON_ERROR",
    "ENVIRON_MIDDLEWARE",
    "UNAVAILABLE_ERRORS",
    "JSHostMiddleware",
    "ReportErrorsMiddleware",
    "report_error",
]
