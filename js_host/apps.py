"""Django integration: ``INSTALLED_APPS += ('js_host',)`` and a ``JS_HOST = {...}`` setting.

When Django starts, the app configures ``js_host.conf.settings`` from the
``JS_HOST`` dict (which, with CONNECT_ONCE_CONFIGURED, connects to the host).
Only this module imports Django: ``import js_host`` never does.
"""

from __future__ import annotations

from django.apps import AppConfig


class JSHostConfig(AppConfig):
    name = "js_host"
    verbose_name = "js-host"

    def ready(self) -> None:
        from django.conf import settings as django_settings

        from .conf import settings

        settings.configure(**getattr(django_settings, "JS_HOST", {}))
