"""Holding back a WSGI app's ``start_response`` call until the middleware knows it keeps the response.

:class:`~js_host.middleware.JSHostMiddleware` may replace the app's response
with an error page (an error the app reported, see
:func:`~js_host.middleware.report_error`): the app's status and headers go out
only once the middleware lets them (:meth:`DeferredStartResponse.flush`), or as
soon as the app writes a body through the legacy ``write()`` callable.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Callable, Optional

ExcInfo = tuple[type[BaseException], BaseException, Optional[TracebackType]]
StartResponse = Callable[..., Callable[[bytes], Any]]


class DeferredStartResponse:
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
