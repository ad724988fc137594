"""One kept-alive connection on an asyncio event loop: an :class:`asyncio.Protocol` feeding
:class:`js_host.response.ResponseParser` from ``data_received``.

The asyncio twin of :class:`js_host.connection.Connection`: no stream buffers, no
thread, one future per call (:meth:`HostProtocol.send`). Bytes that arrive while
no request is outstanding close it; the idle check before each reuse is a
``poll(0)`` on its socket; a timer per connection bounds each request. The pool
that owns these is :mod:`js_host.aio_transport`.
"""

from __future__ import annotations

import asyncio
import select
import socket

from .connection import bad_response_error, closed_error, request_url, warn_stray_bytes
from .exceptions import ConnectionError, FunctionTimeout  # noqa: A004 - the spec's name
from .response import BadResponse, ResponseParser

__all__ = ["HostProtocol", "Stale"]


class Stale(Exception):
    """A reused connection turned out to be closed before the server can have processed the
    request: retried on a fresh one."""


class HostProtocol(asyncio.Protocol):
    """One kept-alive connection: its transport, its parser and the call waiting for an answer."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.parser = ResponseParser()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.target = ""
        self.received = False  # a byte of the current answer arrived
        self.echoes = False  # an answer carried its request's X-Request-Id (js_host.answer_id)
        self.closed = False
        self.poller: select.poll | None = None
        # The timeout: a timer per connection, not per request (arming and cancelling one per
        # call cost more than the rest of the exchange's bookkeeping). The one armed fires at
        # ``timer_at`` (None: none armed), no later than the current request's ``deadline``; if
        # the request that armed it is over by then, it is armed again for the current one's.
        # The handle is not kept (it holds the loop, which a pooled connection must not keep
        # alive): a timer is never cancelled, it finds nothing to do when it fires.
        self.deadline: float | None = None
        self.timeout: float | None = None
        self.timer_at: float | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # The reuse check: a poll object per connection (half the cost of a select()).
            self.poller = select.poll()
            self.poller.register(sock.fileno(), select.POLLIN)

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            # Bytes with no request outstanding (or after the answer): nobody's answer.
            warn_stray_bytes(self.host, self.port)
            self.close()
            return
        self.received = True
        parser = self.parser
        try:
            parser.feed(data)
        except BadResponse as err:
            waiter.set_exception(bad_response_error(self._url(), err))
            self.close()
            return
        if parser.complete:
            waiter.set_result(None)

    def eof_received(self) -> bool:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            parser = self.parser
            if parser.headers_complete and parser.is_close_delimited():
                # A body delimited by the end of the connection (RFC 9112, section 6.3): whole.
                waiter.set_result(None)
            else:
                waiter.set_exception(self._lost(None))
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(self._lost(exc))

    # The pool's side

    def idle_and_open(self) -> bool:
        """Whether nothing arrived since the last answer, delivered or not yet (EOF, RST,
        bytes nobody asked for): checked before every reuse."""
        if self.closed or self.transport is None or self.transport.is_closing():
            return False
        return self.poller is None or not self.poller.poll(0)

    def close_idle(self) -> None:
        """Close a pooled connection found readable; a warning when it held bytes (the server
        answered what nobody asked), not when the server merely closed it."""
        sock = self.transport.get_extra_info("socket") if self.transport is not None else None
        data = b""
        if sock is not None and not self.closed:
            try:
                with sock.dup() as peek:  # the transport's own socket does not offer recv
                    data = peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except OSError:  # reset by the server, or nothing after all
                pass
        if data:
            warn_stray_bytes(self.host, self.port)
        self.close()

    def close(self) -> None:
        """Close at once (buffered bytes dropped): the connection is never reused."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def send(
        self,
        loop: asyncio.AbstractEventLoop,
        data: list[bytes],
        target: str,
        deadline: float | None,
        timeout: float | None,
        *,
        reused: bool,
    ) -> asyncio.Future[None]:
        """Send one request; the future its answer resolves (or the timeout at ``deadline``, loop
        time, fails). A plain method, not a coroutine: one frame fewer on every call's way."""
        assert self.transport is not None
        self.parser.reset()
        self.target, self.received = target, False
        if self.closed or self.transport.is_closing():
            # Closed by the server before the request went out (a fresh connection ended at once).
            if reused:
                raise Stale()
            raise self._lost(None)
        self.waiter = waiter = loop.create_future()
        self.transport.writelines(data)
        if self.transport.is_closing() and reused:
            # The write failed at once (EPIPE, ECONNRESET): nothing went through whole.
            raise Stale()
        self.deadline, self.timeout = deadline, timeout
        if deadline is not None and (self.timer_at is None or self.timer_at > deadline):
            self.timer_at = deadline
            loop.call_at(deadline, self._expire, deadline)
        return waiter

    def _expire(self, at: float) -> None:
        if at != self.timer_at:
            return  # superseded by a timer for an earlier deadline
        self.timer_at = None
        waiter, deadline = self.waiter, self.deadline
        if waiter is None or waiter.done() or deadline is None:
            return  # idle, or no timeout now: the next request arms a timer
        if deadline <= at:  # the current request's time is up
            waiter.set_exception(FunctionTimeout(f"{self._url()} did not answer within {self.timeout} s"))
        else:  # armed by an earlier request: wait until this one's deadline
            self.timer_at = deadline
            waiter.get_loop().call_at(deadline, self._expire, deadline)

    def _lost(self, exc: Exception | None) -> ConnectionError:
        return closed_error(self._url(), received=self.received, cause=exc)

    def _url(self) -> str:
        return request_url(self.host, self.port, self.target)
