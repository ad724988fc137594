"""ASGI middleware that keeps each worker process connected to its js-host.

The asyncio counterpart of :class:`~js_host.middleware.JSHostMiddleware`, with the
same duties, for Starlette, FastAPI, Litestar or Django's ASGI application::

    from js_host.asgi import JSHostASGIMiddleware
    from js_host.conf import settings

    settings.configure(SOURCE_ROOT=..., URL_OVERRIDE="http://127.0.0.1:9010", CONNECT_ONCE_CONFIGURED=False)
    app = JSHostASGIMiddleware(app)   # uvicorn module:app --workers 2

Views call ``await Function("render").call_async(**data)``.

- It connects each worker process at the ASGI lifespan ``startup`` (in a thread:
  connecting may run node or ask the manager), and at ``shutdown``, once the app's
  own shutdown handlers have run (its ``lifespan.shutdown.complete``: they may still
  call functions), closes the loop's connection pool and this process's connection
  to the host. The lifespan
  messages are passed through to the app; an app that does not speak the
  lifespan protocol (Django's) gets none, and the middleware answers for it.
  Without lifespan (``uvicorn --lifespan off``) the first request connects.
- Production: when the host (or the proxy in front of it) cannot be reached, a 503
  with ``Retry-After``; the worker reconnects on its own once the host is back.
- Development (``USE_MANAGER``): before each request (or every ``watch_interval``
  seconds) the reloader's check runs in a thread, restarting the host when its code
  changed; a start failure or a crash gets the development page, a crash once.

Which errors get the pages is decided as for WSGI: "host unavailable" errors
(``ConnectionError``, ``ProcessError``) and, in development, ``WorkerDied``,
raised by the app before its response went out. An app that turns exceptions
into its own response hands them over with
``js_host.middleware.report_error(scope, exc)`` (Starlette's exception
handlers; Django's through :class:`js_host.django.ReportErrorsMiddleware`). A
response of the app is held until it is complete, so that a 5xx which its own
error handler sent before re-raising (Starlette's ``ServerErrorMiddleware``) can
still be replaced; a streamed body goes out as it comes.

The blocking work (connecting, the reloader's check, the development page) is
done as in the WSGI middleware, by a :class:`~js_host.middleware_core.MiddlewareCore`
that this one holds (:attr:`core`) and runs with ``asyncio.to_thread`` only when
needed: a connected worker in production handles a request without leaving the loop.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, MutableMapping
from typing import TYPE_CHECKING, Any, Callable

from . import aio_transport
from .error_report import ENVIRON_ERROR, ENVIRON_MIDDLEWARE, REPORTED_ERRORS
from .exceptions import JSHostError
from .host import JSHost
from .middleware_core import MiddlewareCore, MiddlewareOptions, check_options

if sys.version_info >= (3, 11):
    from typing import Unpack  # also at run time: typing.get_type_hints() reads the signature
elif TYPE_CHECKING:
    from typing_extensions import Unpack

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class JSHostASGIMiddleware:
    """Connect each worker to the js-host, and answer clearly when it is unavailable (ASGI).

    ``options`` are :class:`~js_host.middleware_core.MiddlewareOptions`, as for
    :class:`~js_host.middleware.JSHostMiddleware`: ``host``, ``watch``, ``watch_interval``,
    ``retry_after``, ``probe_interval``, ``status_timeout``, ``log_lines``.
    """

    def __init__(self, app: ASGIApp, **options: Unpack[MiddlewareOptions]) -> None:
        check_options(type(self).__name__, options)
        self.app = app
        #: The connection, reloader and pages, as in the WSGI middleware; it connects at the
        #: lifespan startup, in each worker.
        self.core = MiddlewareCore(**options)

    @property
    def host(self) -> JSHost:
        return self.core.host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scope[ENVIRON_MIDDLEWARE] = self
        try:
            await self.prepare()
        except JSHostError as err:
            if self.core.development:
                await self._send_page(scope, send, err)
                return
            # Production: pages that call no function still work; calls raise and get the 503.
            logger.debug("js-host not available: %s", err)
        if kind == "websocket":
            await self.app(scope, receive, send)
            return
        held = _HeldResponse(send)
        try:
            await self.app(scope, receive, held.send)
        except REPORTED_ERRORS as err:
            if held.flushed or not self.core.answers_for(err):
                await held.flush()
                raise
            await self._send_page(scope, send, err, during_call=True)
            return
        except BaseException:
            await held.flush()
            raise
        reported = scope.get(ENVIRON_ERROR)
        if reported is not None and not held.flushed and self.core.answers_for(reported):
            await self._send_page(scope, send, reported, during_call=True)
            return
        await held.flush()

    async def prepare(self, *, show_crash: bool = True) -> None:
        """:meth:`MiddlewareCore.prepare`, off the loop when it has anything to do."""
        core = self.core
        if core.is_ready():
            return
        host = core.host
        if host.manager is None and host.retry_wait() > 0:
            return  # production, a connect failed moments ago: calls fail at once until then
        await asyncio.to_thread(core.prepare, show_crash=show_crash)

    async def _send_page(
        self, scope: Scope, send: Send, err: BaseException, *, during_call: bool = False
    ) -> None:
        status, headers, body = await asyncio.to_thread(self.core.error_page, err, during_call=during_call)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1011})  # no page to show on a websocket
            return
        await send(
            {
                "type": "http.response.start",
                "status": int(status.split(" ", 1)[0]),
                "headers": [
                    (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    # Lifespan

    async def startup(self) -> None:
        """Connect this worker process (a failure is logged: requests try again)."""
        try:
            await self.prepare(show_crash=False)
        except JSHostError as err:
            logger.warning("js-host not available yet (will try again on the next request): %s", err)

    async def shutdown(self) -> None:
        """Close the loop's connection pool and this process's connection to the host."""
        await aio_transport.aclose()
        await asyncio.to_thread(self.core.close)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        received: list[str] = []  # the lifespan messages the app has been given
        replied = False
        shut_down = False

        async def shutdown() -> None:
            nonlocal shut_down
            if not shut_down:
                shut_down = True
                await self.shutdown()

        async def app_receive() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
            received.append(message["type"])
            return message

        async def app_send(message: Message) -> None:
            nonlocal replied
            replied = True
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                # After the app's own shutdown handlers, which may still call functions.
                await shutdown()
            await send(message)

        try:
            await self.app(scope, app_receive, app_send)
        except BaseException:
            if received or replied:
                if "lifespan.shutdown" in received:
                    await shutdown()
                raise  # the app speaks lifespan, and failed: the server reports it
            # The app does not speak the lifespan protocol (Django raises for it): answered here.
            logger.debug("the app does not support the ASGI lifespan protocol: js_host answers it")
            await self._own_lifespan(receive, send)
            return
        if "lifespan.shutdown" in received:
            await shutdown()  # an app that returned without saying its shutdown is complete

    async def _own_lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.startup()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


class _HeldResponse:
    """The app's response messages, held until it is complete, then sent (``flush``).

    A 5xx is held until the app returns: an error handler that sent it may be about to
    re-raise the error (which the middleware answers instead). Other responses go out
    as soon as their last body message comes (the app may go on with background tasks),
    and a streamed body (``more_body``) as it comes: it can no longer be replaced.
    """

    __slots__ = ("_messages", "_send", "flushed")

    def __init__(self, send: Send) -> None:
        self._send = send
        self._messages: list[Message] = []
        self.flushed = False

    async def send(self, message: Message) -> None:
        if self.flushed:
            await self._send(message)
            return
        self._messages.append(message)
        kind = message["type"]
        if kind == "http.response.start":
            return
        if kind == "http.response.body" and not message.get("more_body", False):
            start = self._messages[0]
            if start.get("type") == "http.response.start" and int(start.get("status", 200)) >= 500:
                return
        await self.flush()

    async def flush(self) -> None:
        if self.flushed:
            return
        self.flushed = True
        messages, self._messages = self._messages, []
        for message in messages:
            await self._send(message)


__all__ = ["JSHostASGIMiddleware"]
