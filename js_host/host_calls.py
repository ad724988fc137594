"""``HostCalls``: what a :class:`~js_host.host.JSHost` does over this process's connection.

:class:`~js_host.host.JSHost` inherits these methods: connecting (the state, the
retry throttle and the fork and exit bookkeeping are
:class:`~js_host.host_connection.HostConnection`'s), where function calls go, and
the function and batch requests sent there.

What the transport reports, and through ``URL_OVERRIDE`` a proxy's 502/503/504,
becomes js_host's errors here. The asyncio client (:mod:`js_host.aio_host`) sends
its requests over the loop's pool with the same steps: :func:`post_arguments`
before, :meth:`HostCalls.transport_error`, :meth:`HostCalls.proxy_answer` and
:meth:`HostCalls.batch_answer` after.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any, TypeVar

from .answer_id import ID_LINE
from .batch import BATCH_PATH
from .connection import Body
from .exceptions import ConfigError, ConnectionError, FunctionTimeout, JSHostError, ProcessError  # noqa: A004 - the spec's name
from .host_connection import HostConnection, Target
from .response import Response
from .runtime import tail
from .transport import pool

# Under the name users configure for the connection's records, whichever module writes them.
logger = logging.getLogger("js_host.host_connection")

#: Lines of a crashed host's logfile shown in the ProcessError.
LOG_TAIL_LINES = 20

#: The header lines of a function or batch request but its X-Request-Id's.
JSON_HEADERS = b"Content-Type: application/json\r\n"
#: The X-Request-Id values the proxy and the host accept (others they replace).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}\Z")

H = TypeVar("H", bound="HostCalls")


def request_id_sent(request_id: str | None, what: str) -> bytes:
    """The ``X-Request-Id`` of a function or batch request: ``request_id`` (a new one when
    None), checked, for ``what`` ("Function 'render'"). The transport sends it and takes only
    an answer that carries it back (js_host.answer_id), so it must be unique per request:
    ``Function`` and ``call_many`` give a new uuid4 to each."""
    # The request id (docs/ARCHITECTURE.md): a uuid4's 32 hex digits, which the
    # proxy and the host accept as they are, log and echo.
    if request_id is None:
        request_id = uuid.uuid4().hex
    elif not _REQUEST_ID.match(request_id):  # it goes into a header line as it is
        raise ConfigError(f"{what}: request id {request_id!r} is not 1-128 letters, digits and '._:-'.")
    return request_id.encode()


def post_arguments(
    target: Target, path: str, body: Body, timeout: float, what: str, request_id: str | None
) -> dict[str, Any]:
    """The arguments of a pool's ``request()`` (blocking or asyncio) that POST ``body`` to
    ``path`` at ``target`` within ``timeout`` seconds, with ``request_id`` (a new one when None)
    as its ``X-Request-Id``, which the answer must carry back."""
    return {
        "host": target.address,
        "port": target.port,
        "method": "POST",
        "target": target.prefix + path,
        "body": body,
        "headers": JSON_HEADERS,
        "timeout": timeout,
        "request_id": request_id_sent(request_id, what),
    }


def request_headers(request_id: str | None, what: str) -> bytes:
    """The header lines of a function or batch request (beyond Host and Content-Length), with
    ``request_id`` as ``X-Request-Id`` (a new one when None), for ``what`` ("Function 'render'").
    The library's own requests send :data:`JSON_HEADERS` and :func:`request_id_sent` apart:
    the transport writes the id's line and checks the answer against it."""
    return JSON_HEADERS + ID_LINE % request_id_sent(request_id, what)


class HostCalls:
    """The connection and request methods of :class:`~js_host.host.JSHost`, over ``connection``."""

    def __init__(self, connection: HostConnection) -> None:
        self._connection = connection
        # The target found to have no POST /batch (js-host 0.11): its batches go as single calls.
        self._no_batch: Target | None = None

    # Connection (see js_host.host_connection)

    @property
    def has_connected(self) -> bool:
        return self._connection.connected

    def connect(self: H, *, status_timeout: float | None = None, retry_after: float = 0.0) -> H:
        """Connect to the running host (starting it through the manager if used); returns self.

        ``status_timeout``: seconds to wait for GET /status (default STATUS_TIMEOUT).
        ``retry_after``: if connecting fails, get_target() (every Function call) raises the same
        error for that many seconds instead of trying again (a server that cannot wait for a host
        that hangs: see js_host.middleware); :meth:`retry_wait` says how long is left.
        """
        self._connection.connect(status_timeout, retry_after)
        return self

    def retry_wait(self) -> float:
        """Seconds until a connect that failed with ``retry_after`` may be tried again (0: now)."""
        return self._connection.retry_wait()

    def disconnect(self) -> None:
        """Close this process's connection (a managed host stops a few seconds after its last one)."""
        self._connection.disconnect()

    def _drop_target(self) -> None:
        self._connection.drop()

    # Requests

    def get_target(self) -> Target:
        """Where function calls go (connects first if needed)."""
        return self._connection.target()

    def current_target(self) -> Target | None:
        """Where function calls go, if this process is connected (None: :meth:`get_target` would
        connect). Never waits: a thread that connects or restarts holds a lock it does not take."""
        return self._connection.current_target()

    def retry_error(self) -> JSHostError | None:
        """The error :meth:`get_target` raises at once while a connect that failed with
        ``retry_after`` may not be tried again (see :meth:`connect`); None: it may be tried."""
        return self._connection.retry_error()

    def require_function(self, name: str, target: Target | None = None) -> None:
        """A ConfigError unless the host runs a function ``name``: the host at ``target``, else the
        one connected to (connects if needed)."""
        self._connection.require_function(name, target)

    def request_function(
        self, name: str, path: str, body: Body, timeout: float, *, request_id: str | None = None
    ) -> Response:
        """POST ``body`` (JSON) to ``path`` (``/function/<name>?hash=...``); the host's answer.

        ``request_id`` is sent as ``X-Request-Id`` (a new one when None), so that the
        proxy's and the host's logs of the call can be found; unique per request, as the
        answer must carry it back (else AnswerMismatch, an UnexpectedResponse).

        Connects first if needed. What the transport reports becomes js_host's
        errors: FunctionTimeout after ``timeout`` seconds, ConnectionError (a
        ProcessError when a managed host has crashed). Through URL_OVERRIDE the
        proxy's 502/503 (the host cannot be reached) and 504 (it gave up waiting)
        become ConnectionError and FunctionTimeout. Other answers are returned.
        """
        what = f"Function {name!r}"
        target = self._connection.target()
        return self._checked(what, self._post(target, path, body, timeout, what, request_id))

    def request_batch(
        self, body: bytes, timeout: float, what: str = "A batch of calls", request_id: str | None = None
    ) -> Response | None:
        """POST ``body`` (:func:`js_host.batch.encode_batch`) to ``/batch``; the answer, or None
        when the host has no batch endpoint (js-host 0.11 answers 404: then this host's
        batches are not sent again, its calls go one by one).

        Errors as :meth:`request_function`'s, ``what`` naming the batch in their messages;
        ``request_id`` the batch's ``X-Request-Id`` (a new one when None).
        """
        target = self.batch_target()
        if target is None:
            return None
        response = self._post(target, BATCH_PATH, body, timeout, what, request_id)
        return self.batch_answer(target, response, what)

    def proxy_answer(self, name: str, response: Response) -> Response:
        """The answer to a call of function ``name`` (a single call's, or one job's result of a
        batch), checked as :meth:`request_function` checks it: through URL_OVERRIDE a proxy's
        502/503/504 raise."""
        return self._checked(f"Function {name!r}", response)

    def crashed_error(self, err: Exception) -> Exception:
        """The error to raise when the host cannot be reached: a managed host has crashed."""
        managed, status = self._connection.managed, self._connection.status
        logfile = managed.logfile if managed is not None else None
        if not logfile:
            return err
        return ProcessError(
            f"{status.name()} appears to have crashed ({err}). Inspect its logfile {logfile}, "
            f"fix the cause, then restart it (host.restart()) or your Python process.\n"
            f"Last lines of {logfile}:\n{tail(logfile, LOG_TAIL_LINES)}"
        )

    # For clients that send the requests themselves (js_host.aio_host: on an asyncio loop), the
    # steps of request_function and request_batch around the transport.

    def transport_error(self, what: str, timeout: float, err: JSHostError) -> Exception:
        """The error a request raises for what the transport reported (``err``: a FunctionTimeout
        after ``timeout`` seconds, or a ConnectionError); ``what`` names it ("Function 'render'")."""
        if isinstance(err, FunctionTimeout):
            return FunctionTimeout(
                f"{what} did not answer within {timeout:g} s ({self._connection.status.url()}). Raise "
                "FUNCTION_TIMEOUT or the Function's timeout if it needs longer."
            )
        return self.crashed_error(err)

    def batch_target(self, target: Target | None = None) -> Target | None:
        """Where batches go: ``target``, or the target (connects if needed); None when that host
        has no batch endpoint."""
        if target is None:
            target = self._connection.target()
        return None if self._no_batch == target else target

    def batch_answer(self, target: Target, response: Response, what: str) -> Response | None:
        """The answer to a batch sent to ``target``, checked as :meth:`request_batch` does (None:
        no batch endpoint, remembered)."""
        response = self._checked(what, response)
        if response.status in (404, 405):  # js-host 0.11 (or an older proxy): no such endpoint
            logger.info(
                "%s has no POST %s endpoint (it answered %s): its batches are sent as single calls",
                self._connection.status.url(),
                BATCH_PATH,
                response.status,
            )
            self._no_batch = target
            return None
        return response

    def _post(
        self, target: Target, path: str, body: Body, timeout: float, what: str, request_id: str | None
    ) -> Response:
        """POST ``body`` to ``path`` at ``target``, with ``request_id`` as ``X-Request-Id`` (a
        new one when None); transport errors become js_host's."""
        try:
            return pool.request(**post_arguments(target, path, body, timeout, what, request_id))
        except (FunctionTimeout, ConnectionError) as err:
            raise self.transport_error(what, timeout, err) from err

    def _checked(self, what: str, response: Response) -> Response:
        """``response``, unless it is a proxy's 502/503 (ConnectionError) or 504 (FunctionTimeout)."""
        status, proxy = response.status, self._connection.status.url_override
        if proxy and status in (502, 503, 504):
            # The proxy (DESIGN.md: upstream down -> 502, timeout -> 504) speaks for a host it cannot use.
            said = response.body.decode("utf-8", "replace").strip()
            if status == 504:
                raise FunctionTimeout(
                    f"{what}: {proxy} gave up waiting for the host (it answered 504). {proxy} said: {said}"
                )
            raise ConnectionError(
                f"{what}: the host behind {proxy} cannot be reached (it answered "
                f"{status}); check that the host runs. {proxy} said: {said}"
            )
        return response
