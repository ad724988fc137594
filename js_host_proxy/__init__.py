"""js-host-proxy: a caching reverse proxy in front of js-host hosts, run by gunicorn.

Importing this package has no side effects: the WSGI app is created on first
access to ``js_host_proxy.wsgi.app`` (from the ``JS_HOST_PROXY_*`` environment)
or by :func:`js_host_proxy.app.create_app`.
"""

from __future__ import annotations
