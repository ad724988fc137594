"""Function requests (and batches) from an asyncio event loop: the host's target found once, off
the loop, then each request sent over the running loop's pool (:mod:`js_host.aio_transport`).

Where calls go (``URL_OVERRIDE``, the config's status, or the manager) is what
:class:`~js_host.host.JSHost` finds when it connects, and finding it may block: it
runs ``node --config`` or asks the manager, once per process. An asyncio call
that finds the host not connected yet connects in a thread
(``asyncio.to_thread``), one task at a time per loop while the others wait; once
connected, nothing here blocks, nor waits for a thread that connects or restarts the host
(the target is read without its lock). The headers and the errors are the blocking
client's (:func:`js_host.host_calls.post_arguments`, :meth:`JSHost.transport_error`,
:meth:`JSHost.proxy_answer`, :meth:`JSHost.batch_answer`).
"""

from __future__ import annotations

import asyncio

from .aio_transport import get_pool
from .batch import BATCH_PATH
from .connection import Body
from .exceptions import ConnectionError, FunctionTimeout  # noqa: A004 - the spec's name
from .host import JSHost
from .host_calls import post_arguments
from .host_connection import Target
from .response import Response


async def connect(host: JSHost) -> None:
    """Connect this process to ``host`` unless it is: in a thread, so that the loop goes on."""
    if host.has_connected:
        return
    err = host.retry_error()
    if err is not None:  # a connect failed moments ago: that error again, at once
        raise err
    lock = get_pool().connect_lock(host)
    async with lock:
        if not host.has_connected:
            await asyncio.to_thread(host.get_target)


async def target(host: JSHost) -> Target:
    """Where ``host``'s calls go, connecting off the loop if needed: never takes the lock under
    which other threads connect or restart the host (:meth:`JSHost.current_target`)."""
    found = host.current_target()
    if found is None:
        await connect(host)
        # None again: dropped at once (a restart in another thread): wait for it in a thread too.
        found = host.current_target() or await asyncio.to_thread(host.get_target)
    return found


async def request_function(
    host: JSHost, name: str, path: str, body: Body, timeout: float, request_id: str | None = None
) -> Response:
    """:meth:`JSHost.request_function` on the running loop: POST ``body`` to ``path``; the answer,
    or the same errors."""
    what = f"Function {name!r}"
    response = await _post(host, await target(host), path, body, timeout, what, request_id)
    return host.proxy_answer(name, response)  # a proxy's 502/503/504 raise, as for request_function


async def request_batch(
    host: JSHost, body: bytes, timeout: float, what: str, request_id: str | None = None
) -> Response | None:
    """:meth:`JSHost.request_batch` on the running loop: POST ``body`` to ``/batch``; the answer,
    or None when the host has no batch endpoint."""
    batch_target = host.batch_target(await target(host))
    if batch_target is None:
        return None
    response = await _post(host, batch_target, BATCH_PATH, body, timeout, what, request_id)
    return host.batch_answer(batch_target, response, what)


async def _post(
    host: JSHost, to: Target, path: str, body: Body, timeout: float, what: str, request_id: str | None
) -> Response:
    """POST ``body`` to ``path`` at ``to`` over the loop's pool; transport errors become js_host's."""
    try:
        return await get_pool().request(**post_arguments(to, path, body, timeout, what, request_id))
    except (FunctionTimeout, ConnectionError) as err:
        raise host.transport_error(what, timeout, err) from err
