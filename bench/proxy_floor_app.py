"""The floor for bench/proxy_cache.py: a WSGI app that answers a constant, under the
same gunicorn settings as the proxy. No cache can be faster than this."""

from __future__ import annotations

BODY = b'{"echo":{"bench":"hit"}}'


def app(environ, start_response):
    environ["wsgi.input"].read()
    start_response(
        "200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(BODY)))]
    )
    return [BODY]
