"""The example Flask app: its views call JavaScript functions in a js-host.

``create_app()`` builds a plain Flask app; ``wsgi.py`` configures js_host and
wraps the app in :class:`js_host.middleware.JSHostMiddleware`.
"""

from __future__ import annotations

import json
import os

from flask import Flask, render_template, request

from js_host.exceptions import ConnectionError as JSHostConnectionError
from js_host.exceptions import ProcessError
from js_host.function import Function
from js_host.middleware import report_error

# Creating a Function opens nothing: the host is reached on the first call.
render_component = Function("render_component")
render_markdown = Function("render_markdown")
counter_function = Function("counter")

INTRO = """\
## Markdown, rendered by *markdown-it*

- Python sends `{"text": ...}` to the host as JSON, with a `hash` of the body.
- A caching proxy in front of the host answers repeated calls from its cache.
- Raw HTML such as <script>alert(1)</script> is escaped.

See [the js-host README](https://github.com/markfinger/python-js-host).
"""

DEFAULT_CARD = {"title": "Server-side rendering from Flask", "author": "js-host", "tags": ["react", "ssr"]}


def create_app(*, js_host_url: str = "") -> Flask:
    app = Flask(__name__)
    app.config["JS_HOST_URL"] = js_host_url or "the js-host"

    @app.context_processor
    def page_context() -> dict[str, object]:
        return {"worker_pid": os.getpid(), "js_host_url": app.config["JS_HOST_URL"]}

    @app.after_request
    def add_worker_pid(response):  # type: ignore[no-untyped-def]
        # Lets a client (and the tests) see which gunicorn worker answered.
        response.headers["X-Worker-Pid"] = str(os.getpid())
        return response

    @app.route("/")
    def index() -> str:
        props = dict(DEFAULT_CARD)
        if request.args.get("title"):
            props["title"] = request.args["title"]
        if request.args.get("author"):
            props["author"] = request.args["author"]
        if request.args.get("tags") is not None:
            props["tags"] = [tag.strip() for tag in request.args["tags"].split(",") if tag.strip()]
        return render_template(
            "index.html",
            card_html=render_component.call(**props),
            intro_html=render_markdown.call(text=INTRO),
        )

    @app.route("/markdown", methods=["GET", "POST"])
    def markdown_preview() -> str:
        text = request.form.get("text", "# Title\n\nSome *emphasis* and a [link](https://example.com).")
        return render_template("markdown.html", text=text, preview_html=render_markdown.call(text=text))

    @app.route("/counter")
    def counter() -> str:
        return render_template("counter.html", result=json.loads(counter_function.call()))

    @app.route("/health")
    def health() -> tuple[str, int, dict[str, str]]:
        # Liveness of this app only: it calls no function, so it stays up while the host restarts.
        return "ok\n", 200, {"Content-Type": "text/plain"}

    # Flask turns exceptions into its own 500 page before a WSGI middleware can see
    # them. Hand js_host's "host unavailable" errors to JSHostMiddleware instead,
    # which answers with its 503 (production) or its logfile page (development).
    # Through the proxy, a host that is down arrives as a ConnectionError too.
    @app.errorhandler(JSHostConnectionError)
    @app.errorhandler(ProcessError)
    def js_host_error(exc: Exception) -> tuple[str, int, dict[str, str]]:
        report_error(request.environ, exc)
        # Shown only when the app runs without the middleware, or the host is up after all.
        app.logger.error("JavaScript host error: %s", exc)
        return "JavaScript host error\n", 500, {"Content-Type": "text/plain"}

    return app
