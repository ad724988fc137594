"""The URL paths of the js-host protocol that the proxy routes, counts, logs and caches."""

from __future__ import annotations

#: ``POST /function/<name>``: a function call (the name URL-encoded).
FUNCTION_PREFIX = "/function/"
