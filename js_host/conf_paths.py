"""The paths the settings name, resolved: node, the js-host binary, config files.

Each resolver takes a setting's value (and the ``SOURCE_ROOT`` that relative paths
are joined to) and returns an absolute path, or raises a
:class:`~js_host.exceptions.ConfigError` that names the value and says what to do.
:mod:`js_host.conf` validates the settings with them and resolves a host's or a
manager's :class:`Paths`; nothing here reads the settings.

BIN_PATH's default is used only when no other user could have put the file there
(:mod:`js_host.trusted_bin`); else the bundled host, with a warning.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any, Callable, NamedTuple

from .exceptions import ConfigError
from .trusted_bin import owner_of, untrusted_because

logger = logging.getLogger(__name__)

#: The host bundled in the Python package (used when BIN_PATH's default does not exist or
#: cannot be trusted).
BUNDLED_BIN_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node", "bin", "js-host.js")


class Paths(NamedTuple):
    """The files a host or a manager runs with, as absolute paths."""

    config_file: str
    path_to_node: str
    bin_path: str


def check_path_type(name: str, value: Any) -> None:
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"{name} must be a path, not {value!r}.")


def resolve_node(path_to_node: Any) -> str:
    if not isinstance(path_to_node, (str, os.PathLike)):
        raise ConfigError(f"PATH_TO_NODE must be a path or a command name, not {path_to_node!r}.")
    found = shutil.which(os.fspath(path_to_node))
    if not found:
        raise ConfigError(
            f"PATH_TO_NODE {path_to_node!r} is not an executable on this machine. Install Node.js "
            "(https://nodejs.org) or set PATH_TO_NODE to the node binary's path."
        )
    return os.path.abspath(found)


def resolve_bin(bin_path: Any, source_root: str, *, explicit: bool) -> str:
    if not isinstance(bin_path, (str, os.PathLike)):
        raise ConfigError(f"BIN_PATH must be a path, not {bin_path!r}.")
    path = os.path.join(source_root, os.fspath(bin_path))
    if os.path.isfile(path):
        found = os.path.abspath(path)
        # The default may lie in a folder another user can write (SOURCE_ROOT is the current
        # folder unless set): used only when nobody else could have put it there.
        why = None if explicit else untrusted_because(found)
        if why is None:
            return found
        if not os.path.isfile(BUNDLED_BIN_PATH):
            raise ConfigError(
                f"{found!r} is not trusted ({why}) and the bundled host {BUNDLED_BIN_PATH!r} does not "
                "exist: reinstall js-host, or set BIN_PATH to a js-host you trust."
            )
        _warn_untrusted(found, why)
        return BUNDLED_BIN_PATH
    if explicit:
        raise ConfigError(
            f"BIN_PATH {path!r} does not exist. Run `npm install js-host@0.11` in {source_root!r}, "
            "or leave BIN_PATH unset to use the host bundled with the Python package."
        )
    if not os.path.isfile(BUNDLED_BIN_PATH):
        raise ConfigError(
            f"Neither {path!r} nor the bundled host {BUNDLED_BIN_PATH!r} exists: reinstall js-host, "
            "or set BIN_PATH."
        )
    return BUNDLED_BIN_PATH


# (file, reason) pairs already warned about: the paths are resolved again at each use.
_warned: set[tuple[str, str]] = set()


def _warn_untrusted(path: str, why: str) -> None:
    if (path, why) in _warned:
        return
    _warned.add((path, why))
    try:
        owner = owner_of(os.stat(path).st_uid)
    except OSError:
        owner = "unknown"
    logger.warning(
        "Not running %r (owner: %s), found at BIN_PATH's default: %s, so another user may have "
        "put it there. Running the host bundled with js_host instead. Set BIN_PATH to that file "
        "to run it anyway (only if you trust it), or make it and the folders above it yours.",
        path,
        owner,
        why,
    )


def config_file_path(config_file: Any, source_root: str) -> str:
    """The absolute path of ``config_file`` (relative to ``source_root``), which need not exist."""
    check_path_type("CONFIG_FILE", config_file)
    return os.path.abspath(os.path.join(source_root, os.fspath(config_file)))


def lenient_path(resolve: Callable[[], str], fallback: Any) -> str:
    """``resolve()``, or ``fallback`` when that path does not exist on this machine.

    For hosts reached through URL_OVERRIDE, which never run node here: their
    paths only appear in messages.
    """
    try:
        return resolve()
    except ConfigError:
        return os.fspath(fallback)


def resolve_config_file(config_file: Any, source_root: str) -> str:
    path = config_file_path(config_file, source_root)
    if not os.path.isfile(path):
        raise ConfigError(
            f"Config file {path!r} does not exist. Create it (module.exports = {{functions: {{...}}}}) "
            "or set CONFIG_FILE (relative paths are joined to SOURCE_ROOT)."
        )
    return path
