"""Settings: ``js_host.conf.settings.configure(**settings)``.

Each ``configure()`` call starts again from the defaults below and validates
every value (a :class:`~js_host.exceptions.ConfigError` names the bad value and
the fix; nothing is changed when one is raised). The paths the settings name
(node, the js-host binary, config files) are resolved by :mod:`js_host.conf_paths`
(its names can be imported from here too).

This module validates, stores and notifies, nothing more: what depends on the
settings subscribes (:meth:`Settings.subscribe`) and is called after each
``configure()`` and ``reset()``. :mod:`js_host.host` does so to drop the
previous default host, connect at once with ``CONNECT_ONCE_CONFIGURED`` and
show js_host's output on the console at ``VERBOSITY``.

Reading a setting before ``configure()`` gives its default; nothing is read
from the filesystem and nothing is started on import.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable
from urllib.parse import urlsplit

from . import verbosity

# The resolvers (and BUNDLED_BIN_PATH, re-exported with `as`) can still be imported from here.
from .conf_paths import BUNDLED_BIN_PATH as BUNDLED_BIN_PATH
from .conf_paths import (
    Paths,
    check_path_type,
    config_file_path,
    lenient_path,
    resolve_bin,
    resolve_config_file,
    resolve_node,
)
from .exceptions import ConfigError

DEFAULTS: dict[str, Any] = {
    # The directory that contains node_modules; relative paths below are joined to it.
    "SOURCE_ROOT": None,  # None: the current directory when configure() is called
    # The config file of the default host (and of the manager).
    "CONFIG_FILE": "host.config.js",
    # Let a manager spawn hosts on demand. Development only.
    "USE_MANAGER": False,
    # The node binary: a path, or a name looked up on PATH.
    "PATH_TO_NODE": "node",
    # The js-host binary. When this default does not exist, the bundled host is used.
    "BIN_PATH": os.path.join("node_modules", ".bin", "js-host"),
    # Seconds a Function waits for its answer before raising FunctionTimeout.
    "FUNCTION_TIMEOUT": 10.0,
    # Connect to the host as soon as configure() is called.
    "CONNECT_ONCE_CONFIGURED": True,
    # Send requests to this root URL (e.g. a caching proxy) instead of the config's address.
    "URL_OVERRIDE": None,
    # How much is shown on the console (js_host.verbosity levels).
    "VERBOSITY": verbosity.PROCESS_START,
    # Bytes of fresh answers each host keeps in this process (js_host.local_cache); 0: off.
    "LOCAL_CACHE_SIZE": 0,
    # The longest a locally kept answer is reused, in seconds, whatever its max-age says.
    "LOCAL_CACHE_MAX_AGE": 60.0,
    # Uids besides yours and root's that may hold a host's loopback port (a host run as
    # another service user on purpose; js_host.peer_owner checks before sending a call).
    "HOST_UIDS": (),
}


#: Called with the settings after each configure() and reset().
Subscriber = Callable[["Settings"], None]


class Settings:
    """The library's settings; see the module docstring."""

    SOURCE_ROOT: str | None  # None until configure() (see source_root)
    CONFIG_FILE: str
    USE_MANAGER: bool
    PATH_TO_NODE: str
    BIN_PATH: str
    FUNCTION_TIMEOUT: float
    CONNECT_ONCE_CONFIGURED: bool
    URL_OVERRIDE: str | None
    VERBOSITY: int
    LOCAL_CACHE_SIZE: int
    LOCAL_CACHE_MAX_AGE: float
    HOST_UIDS: tuple[int, ...]

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.configured = False
        self._explicit: frozenset[str] = frozenset()
        self._subscribers: list[Subscriber] = []
        self._apply(dict(DEFAULTS), frozenset())

    def _apply(self, values: dict[str, Any], explicit: frozenset[str]) -> None:
        for name, value in values.items():
            setattr(self, name, value)
        self._explicit = explicit

    @property
    def source_root(self) -> str:
        return self.SOURCE_ROOT if self.SOURCE_ROOT is not None else os.getcwd()

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber(settings)`` after each ``configure()`` and ``reset()``, in the order
        of subscription (once, however often it subscribes). Its errors reach the caller."""
        with self._lock:
            if subscriber not in self._subscribers:
                self._subscribers.append(subscriber)

    def configure(self, **settings: Any) -> None:
        """Validate and apply ``settings`` (over the defaults), then notify the subscribers."""
        values = validate(settings)
        with self._lock:
            self._apply(values, frozenset(settings))
            self.configured = True
        self._notify()

    def reset(self) -> None:
        """Back to the defaults, unconfigured, then notify the subscribers."""
        with self._lock:
            self._apply(dict(DEFAULTS), frozenset())
            self.configured = False
        self._notify()

    def _notify(self) -> None:
        for subscriber in list(self._subscribers):
            subscriber(self)

    # Resolved paths, each raising a ConfigError that says what to do.

    def get_path_to_node(self) -> str:
        return resolve_node(self.PATH_TO_NODE)

    def get_path_to_bin(self) -> str:
        return resolve_bin(self.BIN_PATH, self.source_root, explicit="BIN_PATH" in self._explicit)

    def get_config_file(self) -> str:
        return resolve_config_file(self.CONFIG_FILE, self.source_root)

    def resolve_paths(
        self,
        config_file: str | None = None,
        path_to_node: str | None = None,
        bin_path: str | None = None,
        *,
        lenient: bool = False,
    ) -> Paths:
        """The paths a host or manager runs with: each argument, else its setting.

        ``lenient``: for a host reached through URL_OVERRIDE, which runs nothing
        here: a path that does not exist is kept as given (it only appears in messages).
        """
        root = self.source_root

        def node() -> str:
            return resolve_node(path_to_node) if path_to_node else self.get_path_to_node()

        def binary() -> str:
            return resolve_bin(bin_path, root, explicit=True) if bin_path else self.get_path_to_bin()

        if lenient:
            return Paths(
                config_file_path(config_file if config_file is not None else self.CONFIG_FILE, root),
                lenient_path(node, path_to_node or self.PATH_TO_NODE),
                lenient_path(binary, os.path.join(root, bin_path or self.BIN_PATH)),
            )
        config = resolve_config_file(config_file, root) if config_file is not None else self.get_config_file()
        return Paths(config, node(), binary())


def validate(settings: dict[str, Any]) -> dict[str, Any]:
    """The complete settings (defaults + ``settings``), or a ConfigError."""
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ConfigError(
            f"Unknown js_host setting(s) {', '.join(map(repr, unknown))}. "
            f"Valid settings: {', '.join(DEFAULTS)}."
        )
    values = {**DEFAULTS, **settings}

    root = values["SOURCE_ROOT"]
    if root is None:
        root = values["SOURCE_ROOT"] = os.getcwd()
    if not isinstance(root, (str, os.PathLike)) or not os.path.isdir(root):
        raise ConfigError(f"SOURCE_ROOT {root!r} is not a directory: set it to your project's directory.")
    values["SOURCE_ROOT"] = root = os.path.abspath(os.fspath(root))

    for name in ("USE_MANAGER", "CONNECT_ONCE_CONFIGURED"):
        if not isinstance(values[name], bool):
            raise ConfigError(f"{name} must be True or False, not {values[name]!r}.")

    timeout = values["FUNCTION_TIMEOUT"]
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ConfigError(f"FUNCTION_TIMEOUT must be a positive number of seconds, not {timeout!r}.")

    size = values["LOCAL_CACHE_SIZE"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ConfigError(
            f"LOCAL_CACHE_SIZE must be a number of bytes (an int; 0 turns the local cache off), not {size!r}."
        )
    max_age = values["LOCAL_CACHE_MAX_AGE"]
    # Finite: it bounds how late a deploy or a purge reaches this process.
    if isinstance(max_age, bool) or not isinstance(max_age, (int, float)) or not 0 < max_age < float("inf"):
        raise ConfigError(
            f"LOCAL_CACHE_MAX_AGE must be a positive, finite number of seconds, not {max_age!r} "
            "(to turn the local cache off, set LOCAL_CACHE_SIZE=0)."
        )

    values["HOST_UIDS"] = validate_uids(values["HOST_UIDS"])

    if isinstance(values["VERBOSITY"], bool) or not isinstance(values["VERBOSITY"], int):
        raise ConfigError(
            f"VERBOSITY must be one of the js_host.verbosity levels (an int), not {values['VERBOSITY']!r}."
        )

    url = values["URL_OVERRIDE"]
    if url is not None:
        validate_url_override(url)
        if values["USE_MANAGER"]:
            raise ConfigError(
                f"URL_OVERRIDE ({url!r}) cannot be used with USE_MANAGER=True: managed hosts run where "
                "the manager puts them. Unset one of them (to move the manager, set `address` and "
                "`port` in your config file)."
            )

    if url is None or values["USE_MANAGER"]:
        resolve_node(values["PATH_TO_NODE"])
        resolve_bin(values["BIN_PATH"], root, explicit="BIN_PATH" in settings)
        resolve_config_file(values["CONFIG_FILE"], root)
    else:
        # Production through URL_OVERRIDE: the status comes from GET <URL_OVERRIDE>/status,
        # so neither node nor the config file need to be on this machine.
        check_path_type("PATH_TO_NODE", values["PATH_TO_NODE"])
        check_path_type("BIN_PATH", values["BIN_PATH"])
        check_path_type("CONFIG_FILE", values["CONFIG_FILE"])
    return values


def validate_uids(uids: Any) -> tuple[int, ...]:
    """HOST_UIDS as a tuple, or a ConfigError naming the bad value."""
    if isinstance(uids, (list, tuple, set, frozenset)) and all(
        isinstance(uid, int) and not isinstance(uid, bool) and uid >= 0 for uid in uids
    ):
        return tuple(sorted(set(uids)))
    raise ConfigError(
        f"HOST_UIDS must be a list of user ids (ints) such as [999], not {uids!r}: the uid your "
        "host runs as (`id -u <user>` prints it)."
    )


def validate_url_override(url: Any) -> None:
    if not isinstance(url, str):
        raise ConfigError(f"URL_OVERRIDE must be a string such as 'http://127.0.0.1:9009', not {url!r}.")
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(
            f"URL_OVERRIDE {url!r} is not an http:// URL. Use the form 'http://127.0.0.1:9009' "
            "(put a TLS-terminating proxy on the other side if you need https)."
        )
    if url.endswith("/"):
        raise ConfigError(f"URL_OVERRIDE {url!r} must not end with a slash: use {url.rstrip('/')!r}.")
    if parts.query or parts.fragment:
        raise ConfigError(f"URL_OVERRIDE {url!r} must not have a query or fragment.")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range or an unbracketed IPv6 address
    except ValueError as err:
        raise ConfigError(
            f"URL_OVERRIDE {url!r} has no valid port ({err}). Write IPv6 addresses in brackets: "
            "'http://[::1]:9009'."
        ) from err


settings = Settings()
