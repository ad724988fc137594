"""The example as an asyncio app: Starlette views that ``await`` the same JavaScript functions.

The pages are the Flask app's (``app.py``: the same templates and functions), served
by an ASGI server; the app is wrapped in :class:`js_host.asgi.JSHostASGIMiddleware`
and configured from the environment as ``wsgi.py`` is (``configure.py``)::

    export JS_HOST_URL_OVERRIDE=http://127.0.0.1:9010
    uvicorn example.asgi_app:app --workers 2
    gunicorn example.asgi_app:app -k uvicorn_worker.UvicornWorker -w 2
    JS_HOST_USE_MANAGER=1 uvicorn example.asgi_app:app      # development: edits restart the host
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import parse_qs, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from js_host.asgi import JSHostASGIMiddleware

from .app import DEFAULT_CARD, INTRO, counter_function, render_component, render_markdown
from .configure import HERE, configure_from_environment

PATHS = {"index": "/", "markdown_preview": "/markdown", "counter": "/counter"}


def url_for(name: str, **query: str) -> str:
    """The templates' ``url_for`` (Flask's, for these routes)."""
    return PATHS[name] + (f"?{urlencode(query)}" if query else "")


templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape())
templates.globals["url_for"] = url_for


def create_app(*, js_host_url: str = "") -> Starlette:
    context = {"worker_pid": os.getpid(), "js_host_url": js_host_url or "the js-host"}

    def page(template: str, **values: Any) -> HTMLResponse:
        html = templates.get_template(template).render(**context, **values)
        # Lets a client (and the tests) see which worker answered.
        return HTMLResponse(html, headers={"X-Worker-Pid": str(os.getpid())})

    async def index(request: Request) -> Response:
        props: dict[str, Any] = dict(DEFAULT_CARD)
        args = request.query_params
        for name in ("title", "author"):
            if args.get(name):
                props[name] = args[name]
        if args.get("tags") is not None:
            props["tags"] = [tag.strip() for tag in args["tags"].split(",") if tag.strip()]
        return page(
            "index.html",
            card_html=await render_component.call_async(**props),
            intro_html=await render_markdown.call_async(text=INTRO),
        )

    async def markdown_preview(request: Request) -> Response:
        text = "# Title\n\nSome *emphasis* and a [link](https://example.com)."
        if request.method == "POST":  # a urlencoded form (no multipart parser needed)
            text = parse_qs((await request.body()).decode()).get("text", [text])[0]
        return page("markdown.html", text=text, preview_html=await render_markdown.call_async(text=text))

    async def counter(request: Request) -> Response:
        return page("counter.html", result=json.loads(await counter_function.call_async()))

    async def health(request: Request) -> Response:
        # Liveness of this app only: it calls no function, so it stays up while the host restarts.
        return PlainTextResponse("ok\n", headers={"X-Worker-Pid": str(os.getpid())})

    # A js_host ConnectionError or ProcessError raised by a view reaches the middleware (Starlette
    # re-raises it after its own 500), which answers with its 503 or its development page.
    return Starlette(
        routes=[
            Route("/", index),
            Route("/markdown", markdown_preview, methods=["GET", "POST"]),
            Route("/counter", counter),
            Route("/health", health),
        ]
    )


url_override = configure_from_environment()
app = JSHostASGIMiddleware(create_app(js_host_url=url_override or "the managed host"))
