"""The floor for bench/proxy_cache.py and bench/compare.py: a WSGI app that answers a
constant, under the same gunicorn settings as the proxy. No cache can be faster than this.
``GET /status`` answers like a host, so that ``Function.call`` can connect through it."""

from __future__ import annotations

BODY = b'{"echo":{"bench":"hit"}}'
STATUS = b'{"type": "Host", "version": "floor", "config": {"functions": ["echo"]}}'


def app(environ, start_response):
    environ["wsgi.input"].read()
    body = STATUS if environ["PATH_INFO"] == "/status" else BODY
    start_response(
        "200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    )
    return [body]
