"""``JSHost``: the bridge to one JavaScript environment (one config file).

``js_host.host.host`` is the default host, built from ``js_host.conf.settings``
on first use (never on import), and built again after each ``configure()``; the name
follows it, even when imported before ``configure()``::

    from js_host.host import host
    host.get_url()

Without a manager, a host is a process you run yourself
(``node_modules/.bin/js-host host.config.js``) and ``connect()`` checks that it
answers at the config's address (or ``URL_OVERRIDE``). With ``USE_MANAGER``,
``connect()`` starts the manager and the host when needed and opens a
connection that is closed when the Python process exits (each process, forked
children included, closes the connection it opened itself).

With ``URL_OVERRIDE`` (production, e.g. behind the caching proxy) the host's
status comes from ``GET <URL_OVERRIDE>/status``: neither node nor the config
file needs to be on the machine.

Function calls go through :meth:`JSHost.request_function` (many in one request:
:meth:`JSHost.request_batch`), which turns what the transport and a proxy in
front of the host report into js_host's errors: these and the connection's
methods JSHost inherits from :class:`js_host.host_calls.HostCalls`.

The module subscribes to the settings: each ``configure()`` or ``reset()``
drops the default host (and sets the console's verbosity); with
``CONNECT_ONCE_CONFIGURED`` the new one connects at once.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, cast

from . import verbosity
from .conf import Settings, settings, validate_url_override
from .exceptions import ConfigError, ConnectionError  # noqa: A004 - the spec's name
from .host_calls import HostCalls
from .host_connection import HostConnection
from .host_status import HostStatus
from .local_cache import LocalCache
from .log import emit, install_console_handler, set_console_verbosity
from .managed_host import ManagedHost
from .manager import JSHostManager
from .workers import WorkerPool

logger = logging.getLogger(__name__)


class JSHost(HostCalls):
    """A host running ``config_file`` (default: ``settings.CONFIG_FILE``).

    Options left as None take their value from ``js_host.conf.settings``, as
    do ``function_timeout`` (``FUNCTION_TIMEOUT``) and ``local_cache``
    (``LOCAL_CACHE_SIZE``, ``LOCAL_CACHE_MAX_AGE``), read here, once.
    """

    expected_type_name = HostStatus.expected_type_name

    def __init__(
        self,
        config_file: str | None = None,
        *,
        use_manager: bool | None = None,
        url_override: str | None = None,
        path_to_node: str | None = None,
        bin_path: str | None = None,
    ) -> None:
        self.use_manager = settings.USE_MANAGER if use_manager is None else use_manager
        self.url_override = url_override if url_override is not None else settings.URL_OVERRIDE
        if self.url_override is not None:
            validate_url_override(self.url_override)
            if self.use_manager:
                raise ConfigError(f"url_override ({self.url_override!r}) cannot be used with a manager.")
        # Through URL_OVERRIDE nothing is run here: the paths need not exist.
        paths = settings.resolve_paths(
            config_file, path_to_node, bin_path, lenient=self.url_override is not None
        )
        self.config_file, self.path_to_node, self.bin_path = paths
        #: Seconds a Function of this host waits for its answer (unless it sets its own timeout).
        self.function_timeout: float = settings.FUNCTION_TIMEOUT
        #: This process's copies of the host's fresh answers (LOCAL_CACHE_SIZE; None: off).
        self.local_cache: LocalCache | None = (
            LocalCache(settings.LOCAL_CACHE_SIZE, settings.LOCAL_CACHE_MAX_AGE)
            if settings.LOCAL_CACHE_SIZE
            else None
        )
        #: The JSHostManager that spawns this host (None without USE_MANAGER).
        self.manager: JSHostManager | None = None
        self._managed: ManagedHost | None = None
        if self.use_manager:
            self.manager = JSHostManager(
                self.config_file, path_to_node=self.path_to_node, bin_path=self.bin_path
            )
            self._managed = ManagedHost(self.manager, self.config_file, on_connection_lost=self._drop_target)
        self._status = HostStatus(paths, url_override=self.url_override, managed=self._managed)
        super().__init__(HostConnection(self._status, self._managed, start=self.start))
        self._logfile: str | None = None  # without a manager: whatever the application sets

    def __repr__(self) -> str:
        return f"<JSHost {self.config_file}>"

    @property
    def logfile(self) -> str | None:
        """The file a managed host writes its logs to (known once started)."""
        return self._managed.logfile if self._managed is not None else self._logfile

    @logfile.setter
    def logfile(self, path: str | None) -> None:
        if self._managed is not None:
            self._managed.logfile = path
        else:
            self._logfile = path

    @property
    def connection(self) -> str | None:
        """The manager's id for this process's connection (None without a manager)."""
        return self._managed.connection if self._managed is not None else None

    # Introspection (the spec's API; see js_host.host_status)

    def get_name(self) -> str:
        """A description for messages (starts nothing: a managed host not running is "not started")."""
        return self._status.name()

    def get_path_to_bin(self) -> str:
        return self.bin_path

    def get_path_to_config_file(self) -> str:
        return self.config_file

    def get_config_status(self) -> dict[str, Any]:
        """The status the config file describes (``--config``), without any process."""
        return self._status.config_status()

    def get_status(self) -> dict[str, Any]:
        """What a managed host reported when it started, the live ``GET /status`` through
        URL_OVERRIDE, else what the config file describes (starts nothing). A pooled host's
        live status has a ``workers`` section: :meth:`get_workers` reads it, typed."""
        return self._status.status()

    def get_workers(self) -> WorkerPool | None:
        """The host's pool of workers, live from its ``GET /status`` (``workers`` in the
        config or ``--workers``); None when it runs its functions in one process (js-host
        0.11's way). ConnectionError when nothing answers (starts nothing)."""
        status, reason = self._status.request()
        if status is None:
            raise ConnectionError(self._status.cannot_connect_message(reason))
        return WorkerPool.from_status(status, where=f"GET {self._status.url()}/status")

    def get_config(self) -> dict[str, Any]:
        return self.get_status()["config"]

    def get_url(self) -> str:
        """The host's root URL; a managed host that is not started raises ConnectionError."""
        return self._status.url()

    def request_status(self) -> dict[str, Any] | None:
        """GET /status from the running host, or None if nothing answers (or a managed host is not
        started)."""
        return self._status.request()[0]

    def is_running(self) -> bool:
        """True if the host answers its GET /status (a managed host: one that the manager runs)."""
        return self._status.is_running()

    # Managed processes

    def _require_managed(self, action: str) -> ManagedHost:
        if self._managed is None:
            raise ConfigError(
                f"{action} needs a manager: set USE_MANAGER=True (development), or run the host yourself "
                f"with `{self.path_to_node} {self.bin_path} {self.config_file}`."
            )
        return self._managed

    def start(self) -> JSHost:
        """Ask the manager (started if needed) to run this host, unless it already does; returns self.

        Hosts are started under a lock shared by the processes of this machine
        (see :func:`js_host.runtime.host_start_lock`), so that one host runs per
        config file. Starting a new host process forgets this process's connection
        (it belonged to the process that has gone): ``connect()`` opens a new one.
        """
        managed = self._require_managed("Starting a host")
        with self._connection.lock:
            if managed.start():
                self._log_started()
        return self

    def _log_started(self) -> None:
        emit(logger, verbosity.PROCESS_START, "Started %s (log: %s)", self.get_name(), self.logfile)

    def stop(self) -> None:
        """Ask the manager to stop this host."""
        managed = self._require_managed("Stopping a host")
        with self._connection.lock:
            managed.stop()  # get_url() and get_name() now say "not started"
            emit(logger, verbosity.PROCESS_STOP, "Stopped the host for %s", self.config_file)

    def restart(self) -> JSHost:
        """Ask the manager to restart this host (it reloads the config file); returns self.

        A host that is not running (it crashed, or was stopped) is started
        instead. Reconnects if this process was connected.
        """
        managed = self._require_managed("Restarting a host")
        with self._connection.lock:
            was_connected = self._connection.has_target or managed.connection is not None
            if managed.restart():
                self._log_started()
            self._connection.drop()
            emit(logger, verbosity.PROCESS_START, "Restarted %s", self.get_name())
            if was_connected:
                self.connect()
        return self


# The default host, built from the settings on first use.

_default: JSHost | None = None
_default_lock = threading.Lock()


def get_default_host() -> JSHost:
    global _default
    host = _default
    if host is None:
        with _default_lock:
            if _default is None:
                _default = JSHost()
            host = _default
    return host


def get_default_host_if_built() -> JSHost | None:
    """The default host if it has been built (never builds it)."""
    return _default


def reset_default_host() -> None:
    """Forget the default host, closing its connection (used when the settings change)."""
    global _default
    with _default_lock:
        old, _default = _default, None
    if old is not None:
        try:
            old.disconnect()
        except Exception as err:
            logger.warning("Disconnecting %s failed: %s", old.get_name(), err)


def _settings_changed(changed: Settings) -> None:
    # After each configure() and reset(): the console shows what VERBOSITY says, and the
    # default host is built again from the new settings (connected now if they ask for it).
    if changed.configured:
        install_console_handler(changed.VERBOSITY)
    else:
        set_console_verbosity(changed.VERBOSITY)
    reset_default_host()
    if changed.configured and changed.CONNECT_ONCE_CONFIGURED:
        get_default_host().connect()


settings.subscribe(_settings_changed)


class DefaultHost:
    """``js_host.host.host``: whichever host the current settings built (on first use).

    ``from js_host.host import host`` binds a name once, often before ``settings.configure()``;
    a plain JSHost there would keep the settings of that moment (no manager, say) after every
    later configure(). This stand-in looks the default host up at each use instead, so it
    follows the settings. Dunder names are not forwarded: introspection (``copy``, pytest,
    ``hasattr(x, "__wrapped__")``) must not build a host.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(get_default_host(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(get_default_host(), name, value)

    def __repr__(self) -> str:
        built = _default
        return f"<default host: {built!r}>" if built is not None else "<default host (not built yet)>"


#: The spec's default host. Typed as a JSHost: it has each of its attributes and methods.
host: JSHost = cast(JSHost, DefaultHost())
