"""js_host's settings for the example, from the environment (both entry points use them).

``JS_HOST_URL_OVERRIDE`` (production: the caching proxy, or a host), else
``JS_HOST_USE_MANAGER=1`` (development: a manager spawns the host and edits of
host.config.js restart it); ``JS_HOST_CONFIG_FILE`` picks another config file
(default: host.config.js beside this file), ``JS_HOST_BIN_PATH`` another js-host
(default: the one bundled with the Python package).
"""

from __future__ import annotations

import os
from pathlib import Path

from js_host.conf import settings

HERE = Path(__file__).resolve().parent


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def configure_from_environment() -> str | None:
    """Configure js_host; returns the URL_OVERRIDE (None: a managed or local host)."""
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
        # The middleware connects in each worker (after the server's fork), not at import.
        CONNECT_ONCE_CONFIGURED=False,
        **options,
    )
    return url_override
