"""The ASGI app the ASGI middleware tests serve under uvicorn (and gunicorn's uvicorn workers):
the pages of tests/support/wsgi_app.py, calling the same functions with ``call_async``.

``uvicorn tests.support.asgi_app:app`` builds it from the environment (``JS_HOST_TEST_*``);
importing this module starts nothing.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from tests.support.wsgi_app import configure_from_environment, watched_files


def _build_application() -> Any:
    from js_host.asgi import JSHostASGIMiddleware
    from js_host.function import Function

    configure_from_environment()
    answer = Function("answer")
    host_pid = Function("pid")
    crash = Function("crash", timeout=5)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        # A plain ASGI app, without lifespan support (as Django's): the middleware answers it.
        assert scope["type"] == "http", scope["type"]
        path = scope["path"]
        if path == "/health":
            body = "ok"
        elif path == "/boom":
            raise RuntimeError("an error of the app itself")
        elif path == "/pid":
            body = await host_pid.call_async()
        elif path == "/crash":
            body = await crash.call_async()
        else:
            if path == "/slow":
                await asyncio.sleep(0.3)
            body = await answer.call_async()
        payload = f"{os.getpid()} {body}".encode()
        headers = [(b"content-type", b"text/plain"), (b"x-worker-pid", str(os.getpid()).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    return JSHostASGIMiddleware(app, watch=watched_files(), watch_interval=0)


_application: Any = None


def __getattr__(name: str) -> Any:
    global _application
    if name == "app":
        if _application is None:
            _application = _build_application()
        return _application
    raise AttributeError(name)
