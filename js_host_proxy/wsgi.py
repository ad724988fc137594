"""``js_host_proxy.wsgi:app``, the WSGI entry point gunicorn loads.

The app is created on first access to ``app`` (in each gunicorn worker, after
the fork), from the ``JS_HOST_PROXY_*`` environment; importing this module does
nothing else.
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()


def __getattr__(name: str) -> Any:
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _lock:
        if "app" not in globals():
            from js_host_proxy.app import create_app

            globals()["app"] = create_app()
    return globals()["app"]
