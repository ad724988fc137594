"""Console output through ``logging``, filtered by a verbosity level (``settings.VERBOSITY``).

Every message is logged on a logger under ``js_host`` with the verbosity level
it belongs to (``extra={"verbosity": ...}``). When the application has not
configured logging (neither the root logger nor the ``js_host`` logger has a
handler), ``settings.configure()`` adds a console handler to the ``js_host``
logger that shows a record when the configured VERBOSITY reaches its level, and
lets the logger pass those records (unless the application set its level).
Otherwise the application's handlers and levels decide, as for any library:
js_host adds no handler (its records would be shown twice) and sets no level.

The handler is given its level (it reads no settings): :mod:`js_host.host`
installs or updates it whenever the settings change.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from . import verbosity

_installed: logging.Handler | None = None
_filter: VerbosityFilter | None = None  # the filter of _installed
_level_set: int | None = None  # the level install_console_handler() gave the js_host logger


class VerbosityFilter(logging.Filter):
    """Passes records whose verbosity level is within ``level``."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        level = getattr(record, "verbosity", None)
        if level is None:
            # Records without a level: warnings and errors are always shown.
            return record.levelno >= logging.WARNING and self.level > verbosity.SILENT
        return level <= self.level


class _ConsoleHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (which test runners and shells may replace)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def install_console_handler(level: int) -> None:
    """Show js_host's records on the console at VERBOSITY ``level``, unless the
    application has configured logging (see the module docstring).

    Called after each ``settings.configure()``, which decides again: a handler added
    by an earlier call is removed once the application has handlers of its own.
    """
    global _installed, _filter, _level_set
    logger = logging.getLogger("js_host")
    ours = logger.level == logging.NOTSET or logger.level == _level_set  # not set by the application
    if logging.getLogger().handlers or any(h is not _installed for h in logger.handlers):
        if _installed is not None:
            logger.removeHandler(_installed)
            _installed = _filter = None
        if _level_set is not None and logger.level == _level_set:
            logger.setLevel(logging.NOTSET)
        _level_set = None
        return
    if _installed is None or _filter is None:
        handler = _ConsoleHandler()
        handler.setFormatter(logging.Formatter("js_host: %(message)s"))
        _filter = VerbosityFilter(level)
        handler.addFilter(_filter)
        logger.addHandler(handler)
        _installed = handler
    _filter.level = level
    if ours:
        # Function calls are DEBUG records: only build them when they can be shown.
        _level_set = logging.DEBUG if level >= verbosity.FUNCTION_CALL else logging.INFO
        logger.setLevel(_level_set)


def set_console_verbosity(level: int) -> None:
    """Show what VERBOSITY ``level`` shows on the console handler, if one is installed
    (installs none: after ``settings.reset()``)."""
    if _filter is not None:
        _filter.level = level


def emit(logger: logging.Logger, level: int, message: str, *args: Any) -> None:
    """Log ``message`` at the verbosity ``level`` (INFO, or DEBUG for the chattiest levels)."""
    log_level = logging.DEBUG if level >= verbosity.FUNCTION_CALL else logging.INFO
    logger.log(log_level, message, *args, extra={"verbosity": level})
