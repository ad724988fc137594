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

import os
from pathlib import Path

from js_host.conf import settings
from js_host.middleware import JSHostMiddleware

from .app import create_app

HERE = Path(__file__).resolve().parent


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


url_override = os.environ.get("JS_HOST_URL_OVERRIDE", "").rstrip("/") or None
use_manager = _flag("JS_HOST_USE_MANAGER") and not url_override

options = {}
if os.environ.get("JS_HOST_BIN_PATH"):
    options["BIN_PATH"] = os.environ["JS_HOST_BIN_PATH"]

settings.configure(
    SOURCE_ROOT=str(HERE),
    CONFIG_FILE=os.environ.get("JS_HOST_CONFIG_FILE", str(HERE / "host.config.js")),
    USE_MANAGER=use_manager,
    URL_OVERRIDE=url_override,
    # The middleware connects in each worker (after gunicorn's fork), not at import.
    CONNECT_ONCE_CONFIGURED=False,
    **options,
)

application = JSHostMiddleware(create_app(js_host_url=url_override or "the managed host"))
app = application
