"""What both middlewares do, apart from WSGI or ASGI: keep a worker connected, pick the error page.

:class:`MiddlewareCore` connects each process to its js-host (again after
``fork()`` or a failure), runs the development reloader before a request, and
says which errors get js_host's pages and what those pages are.
:class:`~js_host.middleware.JSHostMiddleware` is one, with the WSGI call on top;
:class:`~js_host.asgi.JSHostASGIMiddleware` holds one (its ``core``) and runs
its blocking steps in a thread. :class:`MiddlewareOptions` types the keyword
options that both constructors take and hand over to it.

The behaviour (development restarts and crash pages, production 503s and
reconnects) is described in :mod:`js_host.middleware`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import TypedDict

from . import error_page
from .conf import config_file_path, settings
from .error_report import UNAVAILABLE_ERRORS
from .exceptions import JSHostError, WorkerDied
from .host import JSHost, get_default_host, get_default_host_if_built
from .reloader import Reloader

# Under the name users configure for the middleware's records, whichever module writes them.
logger = logging.getLogger("js_host.middleware")

#: Production: the longest a connect attempt made while the host is down waits for its status.
PROBE_TIMEOUT = 0.5


class MiddlewareOptions(TypedDict, total=False):
    """The keyword options of both middlewares (``**options`` of their constructors)."""

    #: The JSHost to keep connected; None (the default): ``js_host.host.host``, the default host
    #: of the settings.
    host: JSHost | None
    #: Development: more files whose change restarts the host (the files the host loaded, the
    #: config file among them, always do). Default: none.
    watch: Sequence[str | os.PathLike[str]]
    #: Development: seconds between two checks for changed code or a crashed host (0, the
    #: default: before every request, so that an edit shows at the next one; a check costs
    #: microseconds).
    watch_interval: float
    #: Production: the Retry-After header (seconds) of the 503 page. Default: 5.
    retry_after: int
    #: Production: while the host is down, seconds between two connect attempts of a worker
    #: (function calls fail at once in between). Default: 1.
    probe_interval: float
    #: Seconds to wait for the host's GET /status when (re)connecting. Default: 2.
    status_timeout: float
    #: Development: how many lines of the host's logfile the error page shows. Default: 40.
    log_lines: int


def check_options(owner: str, options: Mapping[str, object], *also: str) -> None:
    """Refuse a keyword that is not an option, naming the middleware and the options it takes
    (Python's own TypeError would name ``MiddlewareCore.__init__``, which the user never called)."""
    known = [*also, *MiddlewareOptions.__annotations__]
    unknown = [name for name in options if name not in known]
    if unknown:
        raise TypeError(
            f"{owner}() got an unexpected keyword argument {unknown[0]!r}; its options are {', '.join(known)}"
        )


class MiddlewareCore:
    """Keeps this process connected to its js-host; the pages for when it is unavailable.

    Connects on the first :meth:`prepare`. The options (and their defaults) are
    :class:`MiddlewareOptions`'.
    """

    def __init__(
        self,
        *,
        host: JSHost | None = None,
        watch: Sequence[str | os.PathLike[str]] = (),
        watch_interval: float = 0.0,
        retry_after: int = 5,
        probe_interval: float = 1.0,
        status_timeout: float = 2.0,
        log_lines: int = 40,
    ) -> None:
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

    # Connection

    def prepare(self, *, show_crash: bool = True) -> None:
        """Connect this process (again after fork or failure); in development, restart the host if
        watched files changed and reconnect if it was restarted or has gone.

        ``show_crash`` False (at start-up, with no request to show it to): a crash not shown yet
        raises its ProcessError but stays to be shown, and the host is not started again.
        """
        pid = os.getpid()
        host = self.host
        if self._is_ready(host, pid):
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

    def is_ready(self) -> bool:
        """Whether a request may skip :meth:`prepare`: this process is connected and no check is
        due. Cheap and never blocks (the ASGI middleware runs ``prepare()`` in a thread otherwise)."""
        return self._is_ready(self.host, os.getpid())

    def _is_ready(self, host: JSHost, pid: int) -> bool:
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

    def answers_for(self, err: BaseException) -> bool:
        """Whether ``err`` gets this middleware's page: "host unavailable" always; a call whose
        worker died in development (in production it is the app's FunctionError to handle)."""
        if isinstance(err, UNAVAILABLE_ERRORS):
            return True
        return isinstance(err, WorkerDied) and self.development

    def error_page(
        self, err: BaseException, *, during_call: bool = False
    ) -> tuple[str, list[tuple[str, str]], bytes]:
        """The status, headers and body answering ``err`` (see :meth:`answers_for`): the
        development page, or the 503. May block (in development it asks the manager how the
        host ended). ``during_call``: raised by a function call of the app (not while connecting)."""
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
        return status, headers, body

    def _page(self, err: BaseException, ended: str | None = None) -> bytes:
        host = self._built_host()
        if host is not None:
            config_file, logfile = host.config_file, host.logfile
        else:  # building the host failed (e.g. the config file is missing)
            config_file, logfile = config_file_path(settings.CONFIG_FILE, settings.source_root), None
        return error_page.development_page(
            err, config_file=config_file, logfile=logfile, log_lines=self.log_lines, ended=ended
        )


__all__ = ["PROBE_TIMEOUT", "MiddlewareCore", "MiddlewareOptions"]
