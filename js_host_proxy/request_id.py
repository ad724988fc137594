"""The request id (``X-Request-Id``) that lets one call be followed across the logs.

A request's id is the one it carries when it matches ``^[A-Za-z0-9._:-]{1,128}$``,
else a new one (32 random lowercase hex digits). The proxy echoes it in its answer
(hits included) and puts it in its log lines (``logs.py`` reads :data:`current`, set
per request thread). Each call it makes to a host for the request carries that id
followed by ``.`` and 16 random hex digits (:func:`upstream`): the host logs it, so a
search for the client's id finds the host's lines too, and it is unique per upstream
request, which a client's id need not be (one id for all the calls of a page, say):
the transport takes only an answer that carries back the id sent (``js_host.answer_id``),
and an id sent twice would let a second request take an answer meant for the first.
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


#: The characters :func:`upstream` adds to the client's id: "." and 16 hex digits.
UPSTREAM_SUFFIX = 17


def new_id() -> str:
    return os.urandom(16).hex()


def upstream(given: str | None) -> str:
    """The ``X-Request-Id`` of one request to a host made for the request whose id is
    ``given`` (None: a request of the proxy's own): ``given``, cut to fit the 128
    characters a host accepts, then ``.`` and 16 random hex digits."""
    own = os.urandom(8).hex()
    if given is None or not _VALID(given):  # one a host would replace: the check would fail
        return own
    return f"{given[: 128 - UPSTREAM_SUFFIX]}.{own}"


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
