"""Console output through ``logging``, filtered by ``settings.VERBOSITY``.

Every message is logged on a logger under ``js_host`` with the verbosity level
it belongs to (``extra={"verbosity": ...}``). When the application has not
configured logging (neither the root logger nor the ``js_host`` logger has a
handler), ``settings.configure()`` adds a console handler to the ``js_host``
logger that shows a record when ``settings.VERBOSITY`` reaches its level, and
lets the logger pass those records (unless the application set its level).
Otherwise the application's handlers and levels decide, as for any library:
js_host adds no handler (its records would be shown twice) and sets no level.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from . import verbosity

_installed: logging.Handler | None = None
_level_set: int | None = None  # the level install_console_handler() gave the js_host logger


class VerbosityFilter(logging.Filter):
    """Passes records whose verbosity level is within ``settings.VERBOSITY``."""

    def filter(self, record: logging.LogRecord) -> bool:
        from .conf import settings

        level = getattr(record, "verbosity", None)
        if level is None:
            # Records without a level: warnings and errors are always shown.
            return record.levelno >= logging.WARNING and settings.VERBOSITY > verbosity.SILENT
        return level <= settings.VERBOSITY


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

    Called by each ``settings.configure()``, which decides again: a handler added
    by an earlier call is removed once the application has handlers of its own.
    """
    global _installed, _level_set
    logger = logging.getLogger("js_host")
    ours = logger.level == logging.NOTSET or logger.level == _level_set  # not set by the application
    if logging.getLogger().handlers or any(h is not _installed for h in logger.handlers):
        if _installed is not None:
            logger.removeHandler(_installed)
            _installed = None
        if _level_set is not None and logger.level == _level_set:
            logger.setLevel(logging.NOTSET)
        _level_set = None
        return
    if _installed is None:
        handler = _ConsoleHandler()
        handler.setFormatter(logging.Formatter("js_host: %(message)s"))
        handler.addFilter(VerbosityFilter())
        logger.addHandler(handler)
        _installed = handler
    if ours:
        # Function calls are DEBUG records: only build them when they can be shown.
        _level_set = logging.DEBUG if level >= verbosity.FUNCTION_CALL else logging.INFO
        logger.setLevel(_level_set)


def emit(logger: logging.Logger, level: int, message: str, *args: Any) -> None:
    """Log ``message`` at the verbosity ``level`` (INFO, or DEBUG for the chattiest levels)."""
    log_level = logging.DEBUG if level >= verbosity.FUNCTION_CALL else logging.INFO
    logger.log(log_level, message, *args, extra={"verbosity": level})
