"""HTTP/1.1 over kept-alive connections on an asyncio event loop: one pool per running loop.

The asyncio twin of :mod:`js_host.transport`, with the same guarantees:

- one answer per call, parsed by ``httptools`` (:class:`js_host.response.ResponseParser`):
  interim (1xx) answers are skipped, and a connection that sends bytes after its
  answer, or while no request is outstanding, is closed and never reused; a request
  sent with a ``request_id`` gets only an answer that carries it back
  (:mod:`js_host.answer_id`);
- a pooled connection is checked before every reuse (``poll(0)`` on its socket:
  readable while idle means the server closed it or sent what nobody asked for),
  so a ``POST`` never goes out on a socket the server has closed; it is retried on a
  fresh connection only when the server cannot have processed it (the send failed
  at once, or, for a ``GET``, the connection ended before any byte of the answer);
- ``timeout`` bounds the whole exchange, connecting included: past it,
  :class:`~js_host.exceptions.FunctionTimeout`; a connection that timed out (or
  whose task was cancelled) is closed, never reused; every ``OSError`` becomes a
  :class:`~js_host.exceptions.ConnectionError`.

Each connection is an :class:`asyncio.Protocol` feeding the parser from
``data_received`` (:mod:`js_host.aio_connection`): no stream buffers, no thread,
one future per call. The pool belongs to the loop it was made on
(:func:`get_pool`); its idle connections are closed by :func:`aclose` (the ASGI
middleware does at lifespan shutdown) or, at the latest, when the loop finalizes
its async generators (``asyncio.run`` and uvicorn do), so a loop that ends leaves
no socket open. A forked child gets pools of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import weakref
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from .aio_connection import HostProtocol, Stale
from .answer_id import ID_LINE, mismatch
from .connection import Body, CannotConnect, ConnectTimeout, request_head, request_url, warn_more_than_answer
from .exceptions import ConnectionError  # noqa: A004 - the spec's name
from .peer_owner import HOSTS, ForeignListener
from .response import Response

__all__ = ["MAX_CONNECTIONS", "MAX_IDLE", "AsyncPool", "aclose", "get_pool"]

T = TypeVar("T")

#: Idle connections kept per (host, port).
MAX_IDLE = 32
#: Connections open at once per (host, port); further calls wait for one to be free.
MAX_CONNECTIONS = 256


class AsyncPool:
    """Idle kept-alive connections per (host, port), for the event loop ``loop``.

    A connection carries one request at a time; at most :data:`MAX_CONNECTIONS` are open per
    (host, port), and :data:`MAX_IDLE` are kept.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Held weakly: _pools maps each loop to its pool, which must not keep the loop alive.
        self._loop = weakref.ref(loop)
        # Per host (any object, held weakly): the lock under which one task connects to it.
        self._connect_locks: weakref.WeakKeyDictionary[object, asyncio.Lock] = weakref.WeakKeyDictionary()
        self._idle: dict[tuple[str, int], list[HostProtocol]] = {}
        self._slots: dict[tuple[str, int], asyncio.Semaphore] = {}
        self.closed = False
        self._closer = _close_at_shutdown(self)
        # The first step registers the generator with the running loop (its firstiter hook),
        # which closes it, and so this pool, when it shuts down (PEP 525).
        with contextlib.suppress(StopIteration):
            self._closer.asend(None).send(None)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop()
        if loop is None:  # cannot happen while a request runs on it
            raise RuntimeError("the event loop of this connection pool is gone")
        return loop

    def connect_lock(self, host: object) -> asyncio.Lock:
        """The lock under which one task of this loop connects to ``host`` while the others wait."""
        lock = self._connect_locks.get(host)
        if lock is None:
            lock = self._connect_locks[host] = asyncio.Lock()
        return lock

    def idle_count(self) -> int:
        """Idle connections held."""
        return sum(map(len, self._idle.values()))

    def close(self) -> None:
        """Close every idle connection; later requests open new ones (connections in use are
        closed when their request ends)."""
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                if conn.transport is not None:
                    conn.closed = True
                    conn.transport.close()

    async def request(
        self,
        host: str,
        port: int,
        method: str,
        target: str,
        body: Body = b"",
        *,
        headers: bytes = b"",
        timeout: float | None = None,
        request_id: bytes | None = None,
    ) -> Response:
        """Send one request and return the whole response (see :meth:`js_host.transport.Pool.request`):
        ``body`` is bytes or a list of buffers, ``headers`` extra raw header lines each ending in
        CRLF, ``timeout`` (seconds) bounds the whole exchange, ``request_id`` (unique per
        request) is sent as ``X-Request-Id`` and must come back with the answer."""
        if request_id is not None:
            headers += ID_LINE % request_id
        parts = body if isinstance(body, list) else [body]
        data = [request_head(method, target, host, port, sum(map(len, parts)), headers), *parts]
        loop = self.loop
        deadline = None if timeout is None else loop.time() + timeout
        get = method == "GET"
        key = (host, port)
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = asyncio.Semaphore(MAX_CONNECTIONS)
        if slots.locked():  # every connection busy: wait for one, within the deadline
            await self._within(slots.acquire(), key, deadline, timeout, "waiting for a free connection")
        else:
            await slots.acquire()
        try:
            conn = self._get(key)
            if conn is not None:
                try:
                    return await self._exchange(
                        loop, key, conn, data, target, deadline, timeout, request_id, reused=True, get=get
                    )
                except Stale:
                    pass  # closed by the server before it can have processed the request
            conn = await self._within(self._connect(key), key, deadline, timeout, "connecting")
            return await self._exchange(
                loop, key, conn, data, target, deadline, timeout, request_id, reused=False, get=get
            )
        finally:
            slots.release()

    async def _within(
        self,
        step: Awaitable[T],
        key: tuple[str, int],
        deadline: float | None,
        timeout: float | None,
        doing: str,
    ) -> T:
        """``step`` within ``deadline`` (the rare steps: a new connection, a wait for a free one)."""
        if deadline is None:
            return await step
        try:
            return await asyncio.wait_for(step, max(deadline - self.loop.time(), 0.0))
        except asyncio.TimeoutError:
            raise ConnectTimeout(
                f"{request_url(*key, '')} did not answer within {timeout} s ({doing})"
            ) from None

    async def _connect(self, key: tuple[str, int]) -> HostProtocol:
        host, port = key
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            _, protocol = await self.loop.create_connection(lambda: HostProtocol(host, port), host, port)
        except OSError as err:
            raise CannotConnect(f"Cannot connect to http://{where}: {err}") from err
        try:  # before any byte goes out: another local user may hold a loopback port
            HOSTS.check(protocol.transport.get_extra_info("peername") if protocol.transport else None)
        except ForeignListener:
            protocol.close()
            raise
        return protocol

    async def _exchange(
        self,
        loop: asyncio.AbstractEventLoop,
        key: tuple[str, int],
        conn: HostProtocol,
        data: list[bytes],
        target: str,
        deadline: float | None,
        timeout: float | None,
        request_id: bytes | None,
        *,
        reused: bool,
        get: bool,
    ) -> Response:
        try:
            try:
                await conn.send(loop, data, target, deadline, timeout, reused=reused)
            except ConnectionError:
                if reused and get and not conn.received:
                    raise Stale() from None
                raise
            finally:
                conn.waiter = None
        except BaseException:
            # A timeout or a cancel (its answer may still come: never reused), an error, Stale.
            conn.close()
            raise
        response = conn.parser.response()
        if request_id is not None:
            wrong = mismatch(conn, response, request_id, key[0], key[1], target)
            if wrong is not None:
                conn.close()
                raise wrong
        if response.keep_alive and not conn.closed:
            self._put(key, conn)
        else:
            conn.close()
            if conn.parser.extra:
                warn_more_than_answer(key[0], key[1], target)
        return response

    def _get(self, key: tuple[str, int]) -> HostProtocol | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if conn.idle_and_open():
                return conn
            conn.close_idle()
        return None

    def _put(self, key: tuple[str, int], conn: HostProtocol) -> None:
        idle = self._idle.get(key)
        if idle is None:
            idle = self._idle[key] = []
        if len(idle) < MAX_IDLE and not self.closed:
            idle.append(conn)
        else:
            conn.close()


async def _close_at_shutdown(pool: AsyncPool) -> AsyncIterator[None]:
    try:
        yield
    finally:
        pool.closed = True
        pool.close()
        loop = pool._loop()
        if loop is not None and _pools.get(loop) is pool:
            del _pools[loop]  # the loop shuts down: nothing of it is kept


# The pool of each running loop (a loop that is gone takes its pool with it).
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncPool] = weakref.WeakKeyDictionary()


def get_pool() -> AsyncPool:
    """The running loop's pool (made on first use; a forked child's are its own)."""
    loop = asyncio.get_running_loop()
    pool = _pools.get(loop)
    if pool is None or pool.closed:
        pool = _pools[loop] = AsyncPool(loop)
    return pool


def _after_fork_in_child() -> None:
    # The parent's connections are not the child's to use (its loop, if it runs one, is a copy).
    _pools.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


async def aclose() -> None:
    """Close the running loop's pool (its idle connections); a later request opens a new one."""
    loop = asyncio.get_running_loop()
    pool = _pools.pop(loop, None)
    if pool is not None:
        pool.closed = True
        pool.close()
        await asyncio.sleep(0)  # let the transports run their connection_lost
