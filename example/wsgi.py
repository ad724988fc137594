"""WSGI entry point of the example: the Flask app wrapped in JSHostMiddleware.

Configured from the environment::

    # production: every call goes to the caching proxy (or straight to a host)
    JS_HOST_URL_OVERRIDE=http://127.0.0.1:9010 gunicorn -c example/gunicorn.conf.py

    # development: a manager spawns the host, edits of host.config.js restart it
    JS_HOST_USE_MANAGER=1 gunicorn -c example/gunicorn.conf.py

``JS_HOST_CONFIG_FILE`` picks another config file (default: host.config.js
beside this file), ``JS_HOST_BIN_PATH`` another js-host (default: the one
bundled with the Python package).
"""

from __future__ import annotations

from js_host.middleware import JSHostMiddleware

from .app import create_app
from .configure import configure_from_environment

url_override = configure_from_environment()

application = JSHostMiddleware(create_app(js_host_url=url_override or "the managed host"))
app = application
