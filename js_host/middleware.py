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
needed; when the config file (or a file in ``watch``) changes, the host is
restarted before the next request is handled. A host that has crashed gives a
500 page naming its logfile with the last lines of it, and the next request
starts it again.

Production (``URL_OVERRIDE`` or no manager): when the host, or the proxy in
front of it, cannot be reached the answer is a 503 with ``Retry-After``, and the
worker reconnects by itself once it is back. A failed connect is not tried
again for ``retry_after`` seconds: meanwhile pages that call no function are
served as usual and function calls fail at once (503), rather than every
request waiting for a host that hangs. One thread reconnects; the others do
not wait for it.

Only js_host's "host unavailable" errors become these pages: ``ConnectionError``
(which is also what a proxy's 502/503 in front of a host that is down raises)
and ``ProcessError``. Every other exception propagates.
Frameworks that turn exceptions into their own error page before a WSGI
middleware sees them can hand the error over with :func:`report_error` from
their error handler (Flask), or with :class:`ReportErrorsMiddleware` (Django).
"""

from __future__ import annotations

import fcntl
import hashlib
import html
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Optional

from .conf import config_file_path, settings
from .exceptions import ConnectionError, JSHostError, ProcessError  # noqa: A004

if TYPE_CHECKING:
    from .host import JSHost

logger = logging.getLogger(__name__)

#: environ key of the middleware handling the request.
ENVIRON_MIDDLEWARE = "js_host.middleware"
#: environ key where :func:`report_error` puts an error raised by the app.
ENVIRON_ERROR = "js_host.middleware.error"

ExcInfo = tuple[type[BaseException], BaseException, Optional[TracebackType]]
StartResponse = Callable[..., Callable[[bytes], Any]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_UNAVAILABLE = (ConnectionError, ProcessError)


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


class ReportErrorsMiddleware:
    """Django middleware handing js_host's errors to :class:`JSHostMiddleware` (Django renders
    exceptions as its own 500 page before a WSGI middleware sees them)::

        MIDDLEWARE = [..., "js_host.middleware.ReportErrorsMiddleware"]

    It needs no Django import: ``request.META`` is the WSGI environ.
    """

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        return self.get_response(request)

    def process_exception(self, request: Any, exception: Exception) -> None:
        if isinstance(exception, _UNAVAILABLE):
            report_error(request.META, exception)
        # None: Django goes on with its own handling; the WSGI middleware replaces the result.


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
        # Development: more files whose change restarts the host (the config file always does).
        watch: Sequence[str | os.PathLike[str]] = (),
        # Development: seconds between two checks of the watched files' mtimes.
        watch_interval: float = 0.5,
        # Production: the Retry-After header (seconds) of the 503 page, and how long a failed
        # connect is not tried again (function calls fail at once meanwhile).
        retry_after: int = 5,
        # Seconds to wait for the host's GET /status when (re)connecting.
        status_timeout: float = 2.0,
        # Development: how many lines of the host's logfile the error page shows.
        log_lines: int = 40,
        # Connect (and, with a manager, start the host) now rather than on the first request.
        connect_on_init: bool = True,
    ) -> None:
        self.app = app
        self._host = host
        self.watch = [os.path.abspath(os.fspath(path)) for path in watch]
        self.watch_interval = watch_interval
        self.retry_after = retry_after
        self.status_timeout = status_timeout
        self.log_lines = log_lines
        self._lock = threading.RLock()
        self._pid: int | None = None  # the process that connected
        self._ready = False  # connected, and no unavailable error seen since
        self._mtimes: dict[str, int | None] | None = None
        self._host_output: str | None = None  # the managed host's status when we connected
        self._connected_host: JSHost | None = None
        self._next_check = 0.0
        self._retry_at = 0.0  # production: no connect before this time (time.monotonic())
        if connect_on_init:
            try:
                self.prepare()
            except JSHostError as err:
                logger.warning("js-host not available yet (retried on the first request): %s", err)

    @property
    def host(self) -> JSHost:
        if self._host is not None:
            return self._host
        from .host import get_default_host

        # Looked up each time: settings.configure() replaces the default host.
        return get_default_host()

    def _built_host(self) -> JSHost | None:
        """The host if it exists already: never built here (building it may raise, e.g. a
        ConfigError for a missing config file, and this is used to report errors)."""
        if self._host is not None:
            return self._host
        from .host import get_default_host_if_built

        return get_default_host_if_built()

    @property
    def development(self) -> bool:
        """True when a manager runs the host (``USE_MANAGER``)."""
        host = self._built_host()
        return host.manager is not None if host is not None else settings.USE_MANAGER

    # WSGI

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        environ[ENVIRON_MIDDLEWARE] = self
        try:
            self.prepare()
        except JSHostError as err:
            if self.development:
                return self._error_response(err, start_response)
            # Production: pages that call no function still work; calls raise and get the 503.
            logger.debug("js-host not available: %s", err)

        deferred = _DeferredStartResponse(start_response)
        try:
            app_iter = self.app(environ, deferred)
        except _UNAVAILABLE as err:
            # Once the app's headers went out (legacy write()), the response cannot be replaced.
            if deferred.flushed:
                raise
            return self._error_response(err, start_response)

        reported = environ.get(ENVIRON_ERROR)
        if isinstance(reported, _UNAVAILABLE) and not deferred.flushed:
            if hasattr(app_iter, "close"):
                app_iter.close()
            return self._error_response(reported, start_response)
        deferred.flush()
        return app_iter

    # Connection

    def prepare(self) -> None:
        """Connect this process (again after fork or failure); in development, restart the host if
        watched files changed and reconnect if it was restarted or has gone."""
        pid = os.getpid()
        host = self.host
        if (
            self._ready
            and self._pid == pid
            and host is self._connected_host
            and (host.manager is None or time.monotonic() < self._next_check)
        ):
            return
        if host.manager is None:
            self._prepare_production(host, pid)
            return
        with self._lock:
            self._forget_if_changed(host, pid)
            if time.monotonic() >= self._next_check:
                self._check_watched_files()
                if self._ready:
                    self._check_managed_host()
                self._next_check = time.monotonic() + self.watch_interval
            if not self._ready:
                self._connect(host)

    def _prepare_production(self, host: JSHost, pid: int) -> None:
        if self._pid == pid and host is self._connected_host and time.monotonic() < self._retry_at:
            return  # the last connect failed: not again yet (function calls fail at once)
        # Another thread is connecting: this request goes on (its calls wait for that connect).
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._forget_if_changed(host, pid)
            if not self._ready:
                try:
                    self._connect(host)
                except JSHostError:
                    self._retry_at = time.monotonic() + self.retry_after
                    raise
        finally:
            self._lock.release()

    def _forget_if_changed(self, host: JSHost, pid: int) -> None:
        if host is not self._connected_host:
            self._ready = False
            self._mtimes = None
            self._retry_at = 0.0
        if self._pid != pid:  # a forked child connects on its own
            self._ready = False
            self._pid = pid
            self._retry_at = 0.0

    def _connect(self, host: JSHost) -> None:
        self._connected_host = host
        # With a manager, connect() also starts the manager and the host when needed
        # (one process at a time) and opens a new connection to a new host process.
        # In production, a host that cannot be reached makes the function calls fail at
        # once until the next try (retry_after).
        host.connect(
            status_timeout=self.status_timeout,
            retry_after=0 if host.manager is not None else self.retry_after,
        )
        if host.manager is not None:
            described = host.manager.request_host_status(host.config_file).get("host") or {}
            self._host_output = described.get("output")
        self._ready = True
        logger.debug("Connected to %s in process %s", host.get_name(), os.getpid())

    def _check_managed_host(self) -> None:
        """Reconnect if the host was restarted (by another worker), has crashed, or lost our connection."""
        host = self.host
        assert host.manager is not None
        data = host.manager.request_host_status(host.config_file)
        described = data.get("host") or {}
        connections = described.get("connections")
        if (
            not data.get("started")
            or described.get("output") != self._host_output
            or (isinstance(connections, list) and host.connection not in connections)
        ):
            self._ready = False

    def close(self) -> None:
        """Close this process's connection to the host now (js_host closes it at exit anyway)."""
        with self._lock:
            self._ready = False
            if self._connected_host is not None:
                self._connected_host.disconnect()

    # Development: restart the host when watched files change

    def watched_files(self) -> list[str]:
        return [self.host.config_file, *self.watch]

    def _stat(self) -> dict[str, int | None]:
        mtimes: dict[str, int | None] = {}
        for path in self.watched_files():
            try:
                mtimes[path] = os.stat(path).st_mtime_ns
            except OSError:
                mtimes[path] = None
        return mtimes

    def _check_watched_files(self) -> None:
        current = self._stat()
        if self._mtimes is None:
            # First look in this process: a change since another process's last
            # restart (e.g. while the server was stopped) still restarts the host.
            with self._machine_lock() as recorded:
                if recorded.get("mtimes") is None:
                    recorded["mtimes"] = current
                elif recorded["mtimes"] != current:
                    self._restart_host(recorded, current)
            self._mtimes = current
            return
        if current == self._mtimes:
            return
        self._mtimes = current
        self._ready = False
        # Every worker sees the change; the first one restarts the host, the others reconnect.
        with self._machine_lock() as recorded:
            if recorded.get("mtimes") != current:
                self._restart_host(recorded, current)

    def _restart_host(self, recorded: dict[str, Any], current: dict[str, int | None]) -> None:
        # Recorded first: if the restart fails, the other workers do not repeat it.
        previous = recorded.get("mtimes") or {}
        recorded["mtimes"] = current
        host = self.host
        changed = [path for path in current if previous.get(path) != current[path]]
        logger.info("Restarting %s: %s changed", host.get_name(), ", ".join(changed))
        host.restart()  # starts it if it is not running

    def _machine_lock(self) -> _RecordLock:
        key = hashlib.sha1(self.host.config_file.encode()).hexdigest()[:16]
        return _RecordLock(f"middleware-{key}.json")

    # Errors

    def _error_response(self, err: BaseException, start_response: StartResponse) -> list[bytes]:
        self._ready = False  # the next request reconnects
        if self.development:
            logger.error("js-host error: %s", err)
            status, content_type, body = (
                "500 Internal Server Error",
                "text/html; charset=utf-8",
                self._page(err),
            )
            headers = [("Cache-Control", "no-store")]
        else:
            logger.error("js-host unavailable, answering 503: %s", err)
            status, content_type = "503 Service Unavailable", "text/plain; charset=utf-8"
            body = (
                "503 Service Unavailable\n\nThe JavaScript host is not reachable at the moment. "
                f"Please retry in {self.retry_after} seconds.\n"
            ).encode()
            headers = [("Retry-After", str(self.retry_after)), ("Cache-Control", "no-store")]
        headers += [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        start_response(status, headers)
        return [body]

    def _page(self, err: BaseException) -> bytes:
        from .host import tail

        host = self._built_host()
        if host is not None:
            config_file, logfile = host.config_file, host.logfile
        else:  # building the host failed (e.g. the config file is missing)
            config_file, logfile = config_file_path(settings.CONFIG_FILE, settings.source_root), None
        if logfile:
            log = (
                f"<p>Logfile: <code>{html.escape(logfile)}</code></p>\n"
                f"<h2>Last {self.log_lines} lines of the logfile</h2>\n"
                f'<pre id="log">{html.escape(tail(logfile, self.log_lines))}</pre>\n'
            )
        else:
            log = "<p>The host has no logfile yet: it has not been started.</p>\n"
        page = (
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            "<title>JavaScript host error</title></head><body>\n"
            "<h1>JavaScript host error</h1>\n"
            f"<p>Config file: <code>{html.escape(config_file)}</code></p>\n"
            f'<pre id="error">{html.escape(type(err).__name__)}: {html.escape(str(err))}</pre>\n'
            f"{log}"
            "<p>Fix the cause and reload this page: the host is started again on the next request.</p>\n"
            "</body></html>\n"
        )
        return page.encode()


class _DeferredStartResponse:
    """Holds the app's ``start_response`` call until the middleware knows it keeps the response."""

    def __init__(self, start_response: StartResponse) -> None:
        self._start_response = start_response
        self._args: tuple[Any, ...] | None = None
        self._write: Callable[[bytes], Any] | None = None
        self._passthrough = False

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None) -> Any:
        if self._passthrough:
            return self._start_response(status, headers, exc_info)
        self._args = (status, headers, exc_info)
        return self._write_body

    def _write_body(self, data: bytes) -> Any:
        # Legacy write(): the headers must go out first.
        self.flush()
        assert self._write is not None
        return self._write(data)

    @property
    def flushed(self) -> bool:
        return self._passthrough

    def flush(self) -> None:
        if self._passthrough:
            return
        self._passthrough = True  # later calls (e.g. from a generator app) go straight through
        if self._args is not None:
            self._write = self._start_response(*self._args)


class _RecordLock:
    """An exclusive lock (flock) on a small JSON record shared by the processes of one machine.

    The record is the file ``name`` in the runtime dir: opened relative to the
    checked private directory, never through a link, and only if it is a
    private regular file of this user's. It is rewritten in place (not replaced)
    because the file itself is the lock.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.path: str | None = None
        self._fd: int | None = None
        self._record: dict[str, Any] = {}

    def __enter__(self) -> dict[str, Any]:
        from .runtime import open_runtime_dir

        with open_runtime_dir() as directory:
            self.path = directory.join(self.name)
            self._fd = directory.open_private_file(self.name, os.O_RDWR | os.O_CREAT)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            data = os.read(self._fd, 1 << 20)
            self._record = json.loads(data) if data else {}
        except ValueError:
            self._record = {}
        self._before = json.dumps(self._record, sort_keys=True)
        return self._record

    def __exit__(self, *exc: object) -> None:
        assert self._fd is not None
        try:
            data = json.dumps(self._record, sort_keys=True)
            if data != self._before:
                os.lseek(self._fd, 0, os.SEEK_SET)
                os.ftruncate(self._fd, 0)
                os.write(self._fd, data.encode())
        finally:
            os.close(self._fd)  # releases the lock
            self._fd = None


__all__ = [
    "ENVIRON_ERROR",
    "ENVIRON_MIDDLEWARE",
    "JSHostMiddleware",
    "ReportErrorsMiddleware",
    "report_error",
]
