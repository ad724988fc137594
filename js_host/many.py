"""``call_many``: many function calls in one request (``POST /batch``).

::

    from js_host.function import Function, call_many

    render = Function("render")
    header, body, footer = call_many([(render, {"id": 1}), (render, {"id": 2}), (Function("footer"), {})])

Each call is encoded and hashed as :meth:`Function.call` does (``js_host.function``
holds those steps; this module only orders them): answered from the local cache when
it has it (nothing sent for it), the others sent together in one ``POST /batch`` per
host (:meth:`js_host.host.JSHost.request_batch`, the format in :mod:`js_host.batch`),
whose jobs the host runs concurrently, across its workers. The list returned has,
for each call in order, its output or the exception its ``call`` would have raised
(as ``asyncio.gather(..., return_exceptions=True)`` does): one failing call fails
only itself, and a Function's ``fallback`` applies to its own call. Arguments JSON
cannot encode raise TypeError at once, before anything is sent (a bug, not an outcome).

Limits: a batch carries at most :data:`~js_host.batch.MAX_BATCH_JOBS` jobs and about
:data:`MAX_BATCH_BYTES` of bodies; more are split into several batches, sent one
after another. A batch waits for its answer as long as the longest timeout of its
Functions (the host keeps each job's own ``functionTimeout``).

Fallback to single calls, sent concurrently from up to :data:`SINGLE_CALL_THREADS`
threads: against a host without the endpoint (npm js-host 0.11 answers 404; the
host is remembered, its later batches go straight to single calls), and for a batch
the host refuses as a whole (400, 413: a host with a lower ``maxBatchJobs`` or
``requestDataLimit``), so that each call still gets what ``call`` would have got.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, Protocol

from .batch import BATCH_PATH, MAX_BATCH_JOBS, decode_results, encode_batch, result_response
from .batch import Job as BatchJob
from .call_record import CallRecord
from .exceptions import JSHostError, UnexpectedResponse
from .host import JSHost
from .host_connection import Target
from .response import Response

logger = logging.getLogger(__name__)

#: Bytes of job bodies past which a batch is split (the host's requestDataLimit is 10mb
#: by default; a single body larger than this goes in a batch of its own).
MAX_BATCH_BYTES = 1024 * 1024
#: Threads sending the single calls of a fallback at the same time.
SINGLE_CALL_THREADS = 8


class _Prepared(Protocol):
    host: JSHost
    body: bytes | list[bytes]
    digest: str
    timeout: float
    kept: str | None


class FunctionLike(Protocol):
    """What call_many uses of a :class:`js_host.function.Function` (its call's steps)."""

    name: str

    def get_host(self) -> JSHost: ...
    def _prepare(self, kwargs: dict[str, Any], target: Target | None = None) -> Any: ...
    def _send(self, prepared: Any, record: CallRecord | None = None) -> str: ...
    async def _send_async(self, prepared: Any, record: CallRecord | None = None) -> str: ...
    def _answered(self, prepared: Any, response: Response, record: CallRecord | None) -> str: ...
    def _outcome(self, err: JSHostError, record: CallRecord | None = None) -> str | JSHostError: ...


class Job(NamedTuple):
    """One call of ``call_many`` to be sent: where it goes in the results, its Function, the
    prepared call and its record (finished once the call has its outcome)."""

    index: int  # in the caller's list
    function: FunctionLike
    prepared: _Prepared
    record: CallRecord


def call_many(calls: Iterable[tuple[FunctionLike, dict[str, Any]]]) -> list[str | Exception]:
    """Call many functions in one request: ``[(Function('render'), {...}), ...]``.

    Returns a list in the same order whose items are each call's output, or the
    exception its :meth:`Function.call` would have raised (``FunctionError``,
    ``FunctionTimeout``, ``WorkerDied``, ...), as ``asyncio.gather(...,
    return_exceptions=True)`` does; a Function's ``fallback`` applies to its own call.
    See the module docstring.
    """
    calls = checked(calls)
    results: list[Any] = [None] * len(calls)
    targets: dict[int, Target] = {}
    unreachable: dict[int, JSHostError] = {}
    for key, host in hosts(calls).items():  # each host connected once, not once per call
        try:
            targets[key] = host.get_target()
        except JSHostError as err:  # each call of that host gets it (or its fallback)
            unreachable[key] = err
    for host, jobs in prepare(calls, results, unreachable, targets).values():
        _send_batches(host, jobs, results)
    return results


def hosts(calls: list[tuple[Any, dict[str, Any]]]) -> dict[int, JSHost]:
    """The hosts of ``calls``, by id."""
    return {id(host): host for host in (function.get_host() for function, _ in calls)}


def checked(calls: Iterable[tuple[Any, dict[str, Any]]]) -> list[tuple[Any, dict[str, Any]]]:
    """``calls`` as a list of (Function, data) pairs; TypeError for anything else."""
    calls = list(calls)
    for index, item in enumerate(calls):
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], dict)):
            raise TypeError(
                f"call_many() takes (Function, data) pairs, data a dict of the call's arguments; "
                f"item {index} is {item!r}."
            )
    return calls


def prepare(
    calls: list[tuple[Any, dict[str, Any]]],
    results: list[Any],
    unreachable: dict[int, JSHostError] | None = None,
    targets: dict[int, Target] | None = None,
) -> dict[int, tuple[JSHost, list[Job]]]:
    """Each call prepared (encoded, looked up in the local cache), grouped by host; the results
    of the calls that need no request filled in. ``unreachable``: the error of each host (by
    id) that could not be connected to, the outcome of its calls; ``targets``: each host's
    target (by id), which its functions are checked against (else the host connects)."""
    by_host: dict[int, tuple[JSHost, list[Job]]] = {}
    for index, (function, data) in enumerate(calls):
        record = CallRecord(function.name)  # a record per call, as Function.call's
        try:
            key = id(function.get_host())
            err = unreachable.get(key) if unreachable else None
            if err is not None:
                raise err
            prepared = function._prepare(data, targets.get(key) if targets else None)
        except JSHostError as err:  # connecting failed, or the host has no such function
            results[index] = function._outcome(err, record)
            continue
        record.hash = prepared.digest
        if prepared.kept is not None:  # the local cache answered: nothing to send
            record.status, record.cache = 200, "local"
            record.finished()
            results[index] = prepared.kept
            continue
        job = Job(index, function, prepared, record)
        by_host.setdefault(id(prepared.host), (prepared.host, []))[1].append(job)
    return by_host


def _size(body: bytes | list[bytes]) -> int:
    return len(body) if isinstance(body, bytes) else sum(map(len, body))


def split(
    jobs: Sequence[Job], max_jobs: int = MAX_BATCH_JOBS, max_bytes: int = MAX_BATCH_BYTES
) -> list[list[Job]]:
    """``jobs`` in batches of at most ``max_jobs`` jobs and about ``max_bytes`` of bodies, in order."""
    batches: list[list[Job]] = []
    current: list[Job] = []
    size = 0
    for job in jobs:
        job_size = _size(job.prepared.body)
        if current and (len(current) >= max_jobs or size + job_size > max_bytes):
            batches.append(current)
            current, size = [], 0
        current.append(job)
        size += job_size
    if current:
        batches.append(current)
    return batches


def _send_batches(host: JSHost, jobs: list[Job], results: list[Any]) -> None:
    batches = split(jobs)
    for number, batch in enumerate(batches):
        body, timeout, what, request_id = batch_request(batch)
        try:
            response = host.request_batch(body, timeout, what, request_id)
        except JSHostError as err:  # the batch as a whole failed: so did each of its calls
            failed(batch, err, results)
            continue
        if response is None:  # no batch endpoint: this batch and the next ones go one by one
            _send_singly([job for rest in batches[number:] for job in rest], results)
            return
        if not answered(host, batch, response, what, results):
            _send_singly(batch, results)


def batch_request(batch: list[Job]) -> tuple[bytes, float, str, str]:
    """The body of ``POST /batch`` for ``batch``, the time to wait for its answer (the longest
    timeout of its Functions), its name in messages and its X-Request-Id (noted in the record
    of each of its calls: the proxy and the host log it too)."""
    names = sorted({job.function.name for job in batch})
    more = ", ..." if len(names) > 5 else ""
    what = f"A batch of {len(batch)} calls (of {', '.join(map(repr, names[:5]))}{more})"
    body = encode_batch(
        [BatchJob(job.function.name, job.prepared.digest, job.prepared.body) for job in batch]
    )
    request_id = uuid.uuid4().hex
    for job in batch:
        job.record.request_id = request_id
    return body, max(job.prepared.timeout for job in batch), what, request_id


def answered(host: JSHost, batch: list[Job], response: Response, what: str, results: list[Any]) -> bool:
    """Fill in the results of ``batch`` from the host's ``response``; False when the host refused
    the batch as a whole (400, 413): its calls are to be sent one by one."""
    if response.status in (400, 413):
        logger.warning(
            "%s refused %s as a whole (it answered %s: %s); its calls are sent one by one",
            host.get_url(),
            what.lower(),
            response.status,
            response.text.strip()[:300],
        )
        return False
    try:
        if response.status != 200:
            said = response.text.strip()
            raise UnexpectedResponse(
                f"{what}: the host answered {response.status} to POST {BATCH_PATH}: {said}"
            )
        decoded = decode_results(response.body, len(batch))
    except UnexpectedResponse as err:
        failed(batch, err, results)
        return True
    for job, result in zip(batch, decoded):
        function, record = job.function, job.record
        try:
            answer = host.proxy_answer(function.name, result_response(result))
            results[job.index] = function._answered(job.prepared, answer, record)
        except JSHostError as err:
            results[job.index] = function._outcome(err, record)
        else:
            record.finished()
    return True


def failed(batch: list[Job], err: JSHostError, results: list[Any]) -> None:
    """Each call of ``batch`` failed with ``err`` (or gives its fallback)."""
    for job in batch:
        results[job.index] = job.function._outcome(err, job.record)


def _send_one(job: Job) -> str | JSHostError:
    try:
        output = job.function._send(job.prepared, job.record)  # a request id of its own
    except JSHostError as err:
        return job.function._outcome(err, job.record)
    job.record.finished()
    return output


def _send_singly(jobs: list[Job], results: list[Any]) -> None:
    """Each job as its own call, up to SINGLE_CALL_THREADS at a time."""
    if len(jobs) == 1:
        results[jobs[0].index] = _send_one(jobs[0])
        return
    # A pool per fallback: threads do not survive fork(), and the pool keeps none between calls.
    with ThreadPoolExecutor(max_workers=min(SINGLE_CALL_THREADS, len(jobs))) as executor:
        for job, outcome in zip(jobs, executor.map(_send_one, jobs)):
            results[job.index] = outcome
