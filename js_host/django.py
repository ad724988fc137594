"""Django's side of :class:`~js_host.middleware.JSHostMiddleware`: hand it js_host's errors.

Django renders an exception as its own 500 page before a WSGI middleware sees
it, so add this to the settings (with ``INSTALLED_APPS += ('js_host',)``, see
:mod:`js_host.apps`)::

    MIDDLEWARE = [..., "js_host.django.ReportErrorsMiddleware"]

and wrap the WSGI application in :class:`~js_host.middleware.JSHostMiddleware`
(or the ASGI one, ``get_asgi_application()``, in
:class:`~js_host.asgi.JSHostASGIMiddleware`), which then answers with its own
page. This module needs no Django import (``request.META`` is the WSGI environ,
``request.scope`` the ASGI scope); only Django's settings name it.
"""

from __future__ import annotations

from typing import Any, Callable

from .error_report import REPORTED_ERRORS, report_error


class ReportErrorsMiddleware:
    """Django middleware handing js_host's "host unavailable" errors (and, for the development
    page, a pooled worker's death) to :class:`JSHostMiddleware` (WSGI) or
    :class:`~js_host.asgi.JSHostASGIMiddleware` (ASGI: Django's ``get_asgi_application()``)."""

    # Both: under ASGI, Django calls it without a thread of its own.
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self._async = False
        try:  # asgiref comes with Django (which alone calls this): Django's own way to say "async"
            from asgiref.sync import iscoroutinefunction, markcoroutinefunction
        except ImportError:
            return
        if iscoroutinefunction(get_response):
            self._async = True
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self._async:
            return self._acall(request)
        return self.get_response(request)

    async def _acall(self, request: Any) -> Any:
        return await self.get_response(request)

    def process_exception(self, request: Any, exception: Exception) -> None:
        if isinstance(exception, REPORTED_ERRORS):
            # An ASGI request's META is a copy: the ASGI middleware reads the scope.
            scope = getattr(request, "scope", None)
            report_error(scope if isinstance(scope, dict) else request.META, exception)
        # None: Django goes on with its own handling; the middleware replaces the result.


__all__ = ["ReportErrorsMiddleware"]
