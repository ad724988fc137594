"""The request id (``X-Request-Id``) that lets one call be followed across the logs.

A request's id is the one it carries when it matches ``^[A-Za-z0-9._:-]{1,128}$``,
else a new one (32 random lowercase hex digits). The proxy forwards it to the host on
the calls it makes for the request, echoes it in its answer (hits included) and puts
it in its log lines (``logs.py`` reads :data:`current`, set per request thread).
"""

from __future__ import annotations

import os
import re
import threading
from typing import Any

FIELD = "X-Request-Id"
#: The WSGI environ key of the request's field.
ENVIRON_KEY = "HTTP_X_REQUEST_ID"
_VALID = re.compile(r"[A-Za-z0-9._:-]{1,128}").fullmatch

#: ``current.value``: the id of the request this thread is handling (None outside one).
current = threading.local()


def new_id() -> str:
    return os.urandom(16).hex()


def take(environ: dict[str, Any]) -> str:
    """The request's id: its own when valid, else a new one, which replaces the invalid
    one in ``environ`` (so that it is the one forwarded to the host)."""
    given = environ.get(ENVIRON_KEY)
    if given is None or not _VALID(given):
        given = environ[ENVIRON_KEY] = new_id()
    current.value = given
    return given


def get() -> str | None:
    return getattr(current, "value", None)
