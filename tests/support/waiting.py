"""The suite's one way to wait for something: poll a check until it holds."""

from __future__ import annotations

import linecache
import time
from http.client import HTTPException
from typing import Any, Callable

#: The errors of a server that is not listening or answering yet: they count as "not yet".
NOT_YET: tuple[type[BaseException], ...] = (OSError, HTTPException)


def _describe(check: Callable[[], Any]) -> str:
    """The source line that defines ``check`` (for a lambda, the line that waits)."""
    code = getattr(check, "__code__", None)
    if code is None:
        return repr(check)
    line = linecache.getline(code.co_filename, code.co_firstlineno).strip()
    return f"{line} ({code.co_filename}:{code.co_firstlineno})"


def wait_for(
    check: Callable[[], Any],
    timeout: float = 20.0,
    what: str | None = None,
    *,
    retry_on: tuple[type[BaseException], ...] = NOT_YET,
) -> Any:
    """Poll ``check`` until it returns a truthy value, and return that value.

    An exception of ``retry_on`` (by default a connection or HTTP error: a server not up
    yet) counts as "not yet"; any other exception propagates at once. After ``timeout``
    seconds raises AssertionError naming ``what`` (by default the check's source line)
    and the last value or error seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            last: Any = check()
        except retry_on as err:
            last = err
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what or _describe(check)}; last: {last!r}"
            )
        time.sleep(0.05)
