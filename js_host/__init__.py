"""Call JavaScript functions that run in a persistent Node.js process.

Importing this package has no side effects: nothing is spawned, no socket is
opened and no setting is read until the API is used.
"""

from __future__ import annotations

__version__ = "1.0.0"
