"""Log lines machines can read: ``JS_HOST_PROXY_LOG_FORMAT=json``.

:class:`JsonFormatter` writes each record as one JSON object on one line, with
``time`` (ISO 8601, UTC), ``level``, ``logger`` and ``message``; ``request_id`` when
the record was logged while a request was handled (``request_id.py``); and
``exception`` with the traceback when there is one. gunicorn's access lines (on with
``JS_HOST_PROXY_ACCESS_LOG``) become the proxy's call lines: they also carry
``method``, ``path``, ``function`` (for ``/function/<name>``), ``status``,
``duration_ms``, ``cache`` (the answer's ``X-Cache``), ``request_id`` (the one the
answer echoed) and ``remote``. ``gunicorn_logger.py`` puts the formatter on gunicorn's
handlers, which the proxy's own logger shares (``gunicorn_settings.on_starting``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from js_host_proxy import request_id
from js_host_proxy.paths import FUNCTION_PREFIX

FORMATS = ("text", "json")


def iso_time(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module doc)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": iso_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        args = record.args
        if isinstance(args, Mapping) and record.name == "gunicorn.access" and "s" in args:
            line.update(access_fields(args))
        else:
            line["message"] = record.getMessage()
            rid = request_id.get()
            if rid is not None:
                line["request_id"] = rid
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


def access_fields(atoms: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a call line, from gunicorn's access-log atoms of one request."""
    method, path, query = atoms.get("m", "-"), atoms.get("U", "-"), atoms.get("q", "")
    status = atoms.get("s", "-")
    fields: dict[str, Any] = {
        "message": f"{method} {path}{'?' + query if query else ''} {status}",
        "method": method,
        "path": path,
        "status": int(status) if str(status).isdigit() else status,
        "duration_ms": round(int(atoms.get("D", 0)) / 1000, 3),
        "remote": atoms.get("h", "-"),
    }
    if isinstance(path, str) and path.startswith(FUNCTION_PREFIX):
        fields["function"] = unquote(path[len(FUNCTION_PREFIX) :])
    for key, atom in (("cache", "{x-cache}o"), ("request_id", "{x-request-id}o")):
        value = atoms.get(atom, "-")  # gunicorn's "-": the answer has no such field
        if value != "-":
            fields[key] = value
    return fields
