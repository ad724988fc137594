"""Django integration: ``INSTALLED_APPS += ('js_host',)`` and a ``JS_HOST = {...}`` setting.

When Django starts, the app configures ``js_host.conf.settings`` from the
``JS_HOST`` dict, and starts nothing: management commands that call no
function (``check``, ``migrate``) never need a host. The first function call
connects (``CONNECT_ONCE_CONFIGURED=True`` given explicitly in ``JS_HOST``
connects at start-up instead, so that errors show then).

In development (``USE_MANAGER``) each request first does what
:class:`~js_host.middleware.JSHostMiddleware` does in development: restart the
host when any file it loaded (its config file, every module it required) has
changed, reconnect when it has gone, so that an edit shows at the next request
under ``runserver`` with these two settings alone. That check costs a few
microseconds: the files are watched off the request path, by the process's one
:class:`~js_host.middleware_core.MiddlewareCore` (made at the first request; its watcher
is a polling thread only where inotify cannot be used, a daemon stopped at
exit). Errors found then are logged, and the request goes
on (its function calls raise them). For js_host's own error pages (a crash shown
once with the end of the host's logfile, the 503 in production), wrap the WSGI
application in :class:`~js_host.middleware.JSHostMiddleware` (runserver serves
``WSGI_APPLICATION`` too) and add :class:`js_host.django.ReportErrorsMiddleware`;
requests that the wrapped application handles are left to it.

Only this module imports Django: ``import js_host`` never does.
"""

from __future__ import annotations

import logging
from typing import Any

from django.apps import AppConfig
from django.core.signals import request_started

logger = logging.getLogger(__name__)


class JSHostConfig(AppConfig):
    name = "js_host"
    verbose_name = "js-host"

    def ready(self) -> None:
        from django.conf import settings as django_settings

        from .conf import settings

        options = dict(getattr(django_settings, "JS_HOST", {}))
        # Connect at the first call, unless the project asks for a connect at start-up.
        options.setdefault("CONNECT_ONCE_CONFIGURED", False)
        settings.configure(**options)
        if settings.USE_MANAGER:
            request_started.connect(_development_request, dispatch_uid="js_host.development")


_development: Any = None  # the MiddlewareCore whose development checks run at each request


def _development_request(sender: Any, environ: dict[str, Any] | None = None, **kwargs: Any) -> None:
    """Before each request in development: restart the host if its code changed (see above)."""
    global _development
    from .error_report import ENVIRON_MIDDLEWARE
    from .exceptions import JSHostError
    from .middleware_core import MiddlewareCore

    if environ is not None and ENVIRON_MIDDLEWARE in environ:
        return  # a JSHostMiddleware around the WSGI application does it, with its pages
    if _development is None:
        _development = MiddlewareCore()  # connects at its first prepare()
    try:
        _development.prepare()
    except JSHostError as err:
        logger.error("js-host: %s", err)
