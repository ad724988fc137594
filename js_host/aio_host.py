"""Function requests (and batches) from an asyncio event loop: the host's target found once, off
the loop, then each request sent over the running loop's pool (:mod:`js_host.aio_transport`).

Where calls go (``URL_OVERRIDE``, the config's status, or the manager) is what
:class:`~js_host.host.JSHost` finds when it connects, and finding it may block: it
runs ``node --config`` or asks the manager, once per process. An asyncio call
that finds the host not connected yet connects in a thread
(``asyncio.to_thread``), one task at a time per loop while the others wait; once
connected, nothing here blocks. The errors are the blocking client's
(:meth:`JSHost.transport_error`, :meth:`JSHost.job_answer`, :meth:`JSHost.batch_answer`).
"""

from __future__ import annotations

import asyncio
import weakref

from .aio_transport import get_pool
from .batch import BATCH_PATH
from .exceptions import ConnectionError, FunctionTimeout  # noqa: A004 - the spec's name
from .host import JSHost
from .host_connection import request_headers
from .response import Response

# Per loop, per host: the lock under which one task connects (a loop or host gone takes its own).
_connect_locks: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, weakref.WeakKeyDictionary[JSHost, asyncio.Lock]
] = weakref.WeakKeyDictionary()


async def connect(host: JSHost) -> None:
    """Connect this process to ``host`` unless it is: in a thread, so that the loop goes on."""
    if host.has_connected:
        return
    if host.retry_wait() > 0:
        host.get_target()  # a connect failed moments ago: raises that error again, at once
    loop = asyncio.get_running_loop()
    locks = _connect_locks.get(loop)
    if locks is None:
        locks = _connect_locks[loop] = weakref.WeakKeyDictionary()
    lock = locks.get(host)
    if lock is None:
        lock = locks[host] = asyncio.Lock()
    async with lock:
        if not host.has_connected:
            await asyncio.to_thread(host.get_target)


async def request_function(
    host: JSHost,
    name: str,
    path: str,
    body: bytes | list[bytes],
    timeout: float,
    request_id: str | None = None,
) -> Response:
    """:meth:`JSHost.request_function` on the running loop: POST ``body`` to ``path``; the answer,
    or the same errors. Call :func:`connect` first (else connecting would block the loop)."""
    target = host.get_target()
    try:
        response = await get_pool().request(
            target.address,
            target.port,
            "POST",
            target.prefix + path,
            body,
            headers=request_headers(request_id, f"Function {name!r}"),
            timeout=timeout,
        )
    except (FunctionTimeout, ConnectionError) as err:
        raise host.transport_error(f"Function {name!r}", timeout, err) from err
    return host.job_answer(name, response)  # a proxy's 502/503/504 raise, as for request_function


async def request_batch(host: JSHost, body: bytes, timeout: float, what: str) -> Response | None:
    """:meth:`JSHost.request_batch` on the running loop: POST ``body`` to ``/batch``; the answer,
    or None when the host has no batch endpoint. Call :func:`connect` first."""
    target = host.batch_target()
    if target is None:
        return None
    try:
        response = await get_pool().request(
            target.address,
            target.port,
            "POST",
            target.prefix + BATCH_PATH,
            body,
            headers=request_headers(None, what),
            timeout=timeout,
        )
    except (FunctionTimeout, ConnectionError) as err:
        raise host.transport_error(what, timeout, err) from err
    return host.batch_answer(target, response, what)
