"""``Function``: call a JavaScript function of a host.

::

    from js_host.function import Function

    double = Function("double")
    double.call(number=20)  # '40'

The keyword arguments are sent as canonical JSON (``json.dumps(data,
sort_keys=True)``) to ``POST /function/<name>?hash=<sha1 of the body>``; the
hash lets a caching proxy key responses by their input (:mod:`js_host.wire` encodes
it; its ``serialize`` and ``encode_request`` can be imported from here too). With
``LOCAL_CACHE_SIZE`` set, the host's fresh answers are also kept in this
process (:mod:`js_host.local_cache`) and a call found there sends nothing.

A ``fallback`` (a string, or a callable given the error) is returned instead of
raising when the host is unavailable: it cannot be reached, has crashed, does
not answer in time, or is overloaded (503). A JavaScript error is never
replaced: it is a bug to see (``FunctionError`` is raised). Each fallback is
logged at WARNING with its cause::

    render = Function("render", fallback="")   # the page renders in the browser instead

:func:`call_many` sends many calls in one request (``POST /batch``; see :mod:`js_host.many`)::

    header, footer = call_many([(Function("header"), {"user": "ann"}), (Function("footer"), {})])

On an asyncio loop, ``await render.call_async(...)`` and ``await call_many_async([...])``
do the same without blocking it (:mod:`js_host.aio_host`, :mod:`js_host.aio_many`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Callable, NamedTuple, Union
from urllib.parse import quote

# `name as name`: re-exported, users import call_many and the encoding from here.
from . import aio_host, verbosity
from .aio_many import call_many_async as call_many_async
from .call_record import CallRecord
from .exceptions import (
    ConfigError,
    ConnectionError,  # noqa: A004 - the spec's name
    FunctionError,
    FunctionTimeout,
    JSHostError,
    ProcessError,
    UnexpectedResponse,
    WorkerDied,
)
from .host import JSHost, get_default_host
from .host_connection import Target
from .log import emit
from .many import call_many as call_many
from .response import Response
from .wire import LARGE_STRING as LARGE_STRING
from .wire import body_head
from .wire import encode_parts as encode_parts
from .wire import encode_request as encode_request
from .wire import js_error_message as js_error_message
from .wire import serialize as serialize
from .workers import worker_death

logger = logging.getLogger(__name__)


#: The errors a Function's fallback replaces: the host is unavailable (never a JavaScript error).
FALLBACK_ERRORS = (ConnectionError, ProcessError, FunctionTimeout)

#: A fallback: the output to return, or a callable given the error that returns it.
Fallback = Union[str, Callable[[JSHostError], str]]


class Function:
    """A JavaScript function named ``name`` on ``host`` (default: ``js_host.host.host``).

    ``timeout`` (seconds) overrides the host's ``function_timeout`` (``settings.FUNCTION_TIMEOUT``)
    for this function. ``fallback`` (see the module docstring) is returned when the host is
    unavailable (:data:`FALLBACK_ERRORS`) instead of raising.
    """

    def __init__(
        self,
        name: str | None = None,
        host: JSHost | None = None,
        timeout: float | None = None,
        *,
        fallback: Fallback | None = None,
    ) -> None:
        if name is None:  # Function(): a ConfigError, as in js-host 0.2.0, not Python's TypeError
            raise ConfigError(
                "Function() needs a name: one of the functions of the host's config, e.g. Function('render')."
            )
        if not isinstance(name, str) or not name:
            raise ConfigError(f"Function names must be non-empty strings, not {name!r}.")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0
        ):
            raise ConfigError(
                f"Function {name!r}: timeout must be a positive number of seconds, not {timeout!r}."
            )
        if fallback is not None and not isinstance(fallback, str) and not callable(fallback):
            raise ConfigError(
                f"Function {name!r}: fallback must be a string or a callable given the error, "
                f"not {fallback!r}."
            )
        self.name = name
        self.host = host
        self.timeout = timeout
        self.fallback = fallback
        self._path = f"/function/{quote(name, safe='')}?hash="

    def __repr__(self) -> str:
        return f"<Function {self.name!r}>"

    def get_host(self) -> JSHost:
        return self.host if self.host is not None else get_default_host()

    def get_timeout(self) -> float:
        return self.timeout if self.timeout is not None else self.get_host().function_timeout

    def call(self, **kwargs: Any) -> str:
        """Call the function with ``kwargs`` as its data; returns its output text (or the
        fallback's, when the host is unavailable)."""
        record = CallRecord(self.name)  # a DEBUG record and the metrics, once it ends
        try:
            prepared = self._prepare(kwargs)
            output = self._kept(prepared, record)
            if output is None:
                output = self._send(prepared, record)
        except Exception as err:
            return self._failed(record, err)
        record.finished()
        return output

    async def call_async(self, **kwargs: Any) -> str:
        """:meth:`call` for asyncio: the same encoding, local cache, errors, fallback and record,
        over a kept-alive connection pool of the running loop (see :mod:`js_host.aio_host`)."""
        record = CallRecord(self.name)
        try:
            host = self.get_host()
            # Off the loop if it must connect; never waits for another thread's connect or restart.
            prepared = self._prepare(kwargs, await aio_host.target(host))
            output = self._kept(prepared, record)
            if output is None:
                output = await self._send_async(prepared, record)
        except asyncio.CancelledError as err:  # a BaseException: recorded (as an error), not replaced
            record.finished(err)
            raise
        except Exception as err:
            return self._failed(record, err)
        record.finished()
        return output

    def _kept(self, prepared: Prepared, record: CallRecord | None) -> str | None:
        """The output the local cache answered the call with (None: it is to be sent); noted in
        ``record``."""
        if record is not None:
            record.hash = prepared.digest
            if prepared.kept is not None:
                record.status, record.cache = 200, "local"
        return prepared.kept

    def _failed(self, record: CallRecord, err: Exception) -> str:
        """End a call that raised ``err`` (inside its ``except``): its fallback's output, or
        ``err`` raised again."""
        if self.fallback is None or not isinstance(err, FALLBACK_ERRORS):
            record.finished(err)
            raise err
        record.finished(err, fallback=True)
        return self._fallback_output(err)

    def _fallback_output(self, err: JSHostError) -> str:
        logger.warning("Function %r: returning its fallback, the host is unavailable: %s", self.name, err)
        fallback = self.fallback
        assert fallback is not None
        return fallback if isinstance(fallback, str) else fallback(err)

    def _outcome(self, err: JSHostError, record: CallRecord | None = None) -> str | JSHostError:
        """What a call that failed with ``err`` gives: its fallback's output when the fallback
        applies (see :meth:`call`), else ``err`` (for :func:`call_many`'s results); ``record``
        finished with it."""
        fallback = self.fallback is not None and isinstance(err, FALLBACK_ERRORS)
        if record is not None:
            record.finished(err, fallback=fallback)
        return self._fallback_output(err) if fallback else err

    def _prepare(self, kwargs: dict[str, Any], target: Target | None = None) -> Prepared:
        """Encode ``kwargs`` and look the call up in the local cache; the function checked against
        ``target``, the host's (else the one connected to: connects if needed)."""
        host = self.get_host()
        name = self.name
        host.require_function(name, target)
        body, digest = encode_request(kwargs, name)
        cache = host.local_cache
        kept = cache.get(name, digest) if cache is not None else None
        timeout = self.timeout if self.timeout is not None else host.function_timeout
        return Prepared(host, body, digest, timeout, kept)

    def _send(self, prepared: Prepared, record: CallRecord | None = None) -> str:
        """Send a prepared call on its own; its output (or its exception). ``record``: what
        :meth:`call` reports of it, filled in here (the request id, the answer)."""
        # Transport errors and a proxy's 502/503/504 are raised by the host.
        response = prepared.host.request_function(**self._request(prepared, record))
        return self._answered(prepared, response, record)

    async def _send_async(self, prepared: Prepared, record: CallRecord | None = None) -> str:
        """:meth:`_send` on the running loop."""
        response = await aio_host.request_function(prepared.host, **self._request(prepared, record))
        return self._answered(prepared, response, record)

    def _request(self, prepared: Prepared, record: CallRecord | None) -> dict[str, Any]:
        """The arguments of ``request_function`` (the host's, or :mod:`js_host.aio_host`'s) for a
        prepared call about to be sent, which is logged; its X-Request-Id (the proxy and the host
        log it too) is noted in ``record``."""
        self._log_call(prepared.body)
        request_id = uuid.uuid4().hex
        if record is not None:
            record.request_id = request_id
        return {
            "name": self.name,
            "path": f"{self._path}{prepared.digest}",
            "body": prepared.body,
            "timeout": prepared.timeout,
            "request_id": request_id,
        }

    def _answered(self, prepared: Prepared, response: Response, record: CallRecord | None) -> str:
        """The output of the host's ``response`` to the call (see :meth:`_answer`), noted in ``record``."""
        if record is not None:
            record.response = response
        return self._answer(prepared.host, prepared.digest, response)

    def _log_call(self, body: bytes | list[bytes]) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            emit(
                logger,
                verbosity.FUNCTION_CALL,
                "Calling function %r with data %s",
                self.name,
                body_head(body, 1000).decode("utf-8", "replace"),
            )

    def _answer(self, host: JSHost, digest: str, response: Response) -> str:
        """The output of the host's answer to a call (kept in the local cache), or its exception."""
        name = self.name
        cache = host.local_cache
        status = response.status
        if status == 200:
            output = response.body.decode("utf-8")
            if cache is not None:
                cache.answered(name, digest, response, output)
            return output
        if cache is not None:
            cache.answered(name, digest, response, None)  # for the code version it reports
        text = response.body.decode("utf-8", "replace")
        if status == 500:
            death = worker_death(text)
            if death is not None:  # a pooled host's worker died running it, and was replaced
                raise WorkerDied(
                    f"Function {name!r} failed: the worker running it {death.cause}. The host has "
                    f"replaced it, so the next call is served; the details are in {death.log}.",
                    cause=death.cause,
                    js_message=text.strip(),
                    js_stack=text,
                )
            js_message = js_error_message(text)
            raise FunctionError(
                f"Function {name!r} failed: {js_message}\n{text}", js_message=js_message, js_stack=text
            )
        if status == 504:
            raise FunctionTimeout(f"Function {name!r}: the host gave up waiting for it: {text.strip()}")
        if status == 503:  # a pooled host whose workers are all busy and whose queue is full
            retry = response.headers.get("retry-after", "")
            raise ConnectionError(
                f"Function {name!r}: the host at {host.get_url()} cannot take the call now (it answered "
                f"503{', Retry-After ' + retry + ' s' if retry else ''}): {text.strip()}"
            )
        if status == 404:
            raise ConfigError(
                f"The host at {host.get_url()} does not know function {name!r} ({text.strip()}): restart "
                f"the host so that it loads {host.config_file}."
            )
        raise UnexpectedResponse(f"Function {name!r}: the host answered {status}: {text.strip()}")


class Prepared(NamedTuple):
    """A call ready to send: its host, body, hash and timeout; ``kept``: its output, when
    the local cache has it (then nothing is sent)."""

    host: JSHost
    body: bytes | list[bytes]
    digest: str
    timeout: float
    kept: str | None
