"""``call_many_async``: :func:`~js_host.many.call_many` for asyncio (one ``POST /batch``).

::

    from js_host.function import Function, call_many_async

    header, body = await call_many_async([(Function("header"), {}), (Function("render"), {"id": 1})])

The steps are :mod:`js_host.many`'s (checked, prepared and grouped by host, split into
batches, each answer mapped to its calls' outputs or exceptions, a Function's fallback
for its own call); only the requests differ: each host is connected off the loop
(:func:`js_host.aio_host.connect`), then each batch goes over the loop's pool. Against a
host without the endpoint (npm js-host 0.11), or for a batch it refuses as a whole (400,
413), the calls are sent as concurrent single ``call_async`` requests (tasks, no threads),
at most :data:`~js_host.many.SINGLE_CALL_THREADS` at a time, as the blocking client sends them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from . import aio_host
from .exceptions import JSHostError
from .host import JSHost
from .host_connection import Target
from .many import (
    SINGLE_CALL_THREADS,
    FunctionLike,
    Job,
    answered,
    batch_request,
    checked,
    failed,
    hosts,
    prepare,
    split,
)


async def call_many_async(calls: Iterable[tuple[FunctionLike, dict[str, Any]]]) -> list[str | Exception]:
    """:func:`~js_host.many.call_many` for asyncio: the same results, the batch sent over the
    running loop's pool (concurrent single calls against a host without ``POST /batch``). See
    the module docstring."""
    calls = checked(calls)
    results: list[Any] = [None] * len(calls)
    targets: dict[int, Target] = {}
    unreachable: dict[int, JSHostError] = {}
    for key, host in hosts(calls).items():  # each host connected once, off the loop
        try:
            targets[key] = await aio_host.target(host)
        except JSHostError as err:  # each call of that host gets it (or its fallback)
            unreachable[key] = err
    groups = prepare(calls, results, unreachable, targets).values()
    await asyncio.gather(*(_send_batches(host, jobs, results) for host, jobs in groups))
    return results


async def _send_batches(host: JSHost, jobs: list[Job], results: list[Any]) -> None:
    batches = split(jobs)
    for number, batch in enumerate(batches):
        body, timeout, what, request_id = batch_request(batch)
        try:
            response = await aio_host.request_batch(host, body, timeout, what, request_id)
        except JSHostError as err:  # the batch as a whole failed: so did each of its calls
            failed(batch, err, results)
            continue
        if response is None:  # no batch endpoint: this batch and the next ones go one by one
            await _send_singly([job for rest in batches[number:] for job in rest], results)
            return
        if not answered(host, batch, response, what, results):
            await _send_singly(batch, results)


async def _send_one(job: Job, slots: asyncio.Semaphore) -> str | JSHostError:
    async with slots:
        try:
            output = await job.function._send_async(job.prepared, job.record)  # a request id of its own
        except JSHostError as err:
            return job.function._outcome(err, job.record)
    job.record.finished()
    return output


async def _send_singly(jobs: list[Job], results: list[Any]) -> None:
    """Each job as its own call, up to SINGLE_CALL_THREADS at a time, as the blocking client
    sends them (a host without batches is not sent hundreds of calls at once)."""
    slots = asyncio.Semaphore(SINGLE_CALL_THREADS)
    for job, outcome in zip(jobs, await asyncio.gather(*(_send_one(job, slots) for job in jobs))):
        results[job.index] = outcome
