"""Call JavaScript functions that run in a persistent Node.js process.

Importing this package has no side effects: nothing is spawned, no socket is
opened and no setting is read until the API is used.
"""

from __future__ import annotations

__version__ = "1.0.0"

# The default host follows the settings (js_host.conf notifies its subscribers): importing
# js_host.host subscribes it, so that settings.configure() connects even when the application
# imported js_host.conf alone. The subscription is data: nothing runs until configure().
from . import host as _host  # noqa: F401
