"""Console output through ``logging``, filtered by ``settings.VERBOSITY``.

Every message is logged on a logger under ``js_host`` with the verbosity level
it belongs to (``extra={"verbosity": ...}``). A console handler on the
``js_host`` logger shows a record when ``settings.VERBOSITY`` reaches that
level; applications may add their own handlers as usual.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from . import verbosity

_installed: logging.Handler | None = None


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
    """Add (once) the console handler and let the logger pass what VERBOSITY asks for."""
    global _installed
    logger = logging.getLogger("js_host")
    if _installed is None:
        handler = _ConsoleHandler()
        handler.setFormatter(logging.Formatter("js_host: %(message)s"))
        handler.addFilter(VerbosityFilter())
        logger.addHandler(handler)
        _installed = handler
    # Function calls are DEBUG records: only build them when they can be shown.
    wanted = logging.DEBUG if level >= verbosity.FUNCTION_CALL else logging.INFO
    if logger.level == logging.NOTSET or logger.level > wanted:
        logger.setLevel(wanted)


def emit(logger: logging.Logger, level: int, message: str, *args: Any) -> None:
    """Log ``message`` at the verbosity ``level`` (INFO, or DEBUG for the chattiest levels)."""
    log_level = logging.DEBUG if level >= verbosity.FUNCTION_CALL else logging.INFO
    logger.log(log_level, message, *args, extra={"verbosity": level})
