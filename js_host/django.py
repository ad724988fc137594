"""Django's side of :class:`~js_host.middleware.JSHostMiddleware`: hand it js_host's errors.

Django renders an exception as its own 500 page before a WSGI middleware sees
it, so add this to the settings (with ``INSTALLED_APPS += ('js_host',)``, see
:mod:`js_host.apps`)::

    MIDDLEWARE = [..., "js_host.django.ReportErrorsMiddleware"]

and wrap the WSGI application in :class:`~js_host.middleware.JSHostMiddleware`,
which then answers with its own page. This module needs no Django import
(``request.META`` is the WSGI environ); only Django's settings name it.
"""

from __future__ import annotations

from typing import Any, Callable

from .error_report import REPORTED_ERRORS, report_error


class ReportErrorsMiddleware:
    """Django middleware handing js_host's "host unavailable" errors (and, for the development
    page, a pooled worker's death) to :class:`JSHostMiddleware`."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        return self.get_response(request)

    def process_exception(self, request: Any, exception: Exception) -> None:
        if isinstance(exception, REPORTED_ERRORS):
            report_error(request.META, exception)
        # None: Django goes on with its own handling; the WSGI middleware replaces the result.


__all__ = ["ReportErrorsMiddleware"]
