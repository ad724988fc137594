"""``POST /batch`` through the proxy: each job answered from the cache when it can be.

The body and the answer are the host's (``js_host/batch.py``, ``js_host/node/lib/batch.js``);
``batch_jobs.py`` reads the body into jobs and makes each job's result.
For each job, as for a single ``POST /function/<name>?hash=H``:

- its ``hash`` is checked: a wrong one makes that job's result a 400 (never stored);
  a job without one is forwarded uncached (``BYPASS``);
- a fresh entry under its key (namespace + code version + name + hash) answers it
  (``HIT``, with ``Age``);
- the other jobs (each distinct key once) are forwarded together in ONE upstream
  ``POST /batch``; each 200 is stored under its own key by the one storage decision
  (``policy.decide``: RFC 9111's shared-cache rules on that job's own fields, its own
  ``Cache-Control`` included) in CacheControl's format (``httpcache_format.py``), so a
  later single call hits it, and the other way round (``MISS``);
- when the host cannot be reached, or answers a job 502/503/504, a stale entry that
  may be served is (``STALE``, RFC 5861 stale-if-error), else the error.

The upstream batch carries the request's fields as a cached call does (without the
client's ``Cookie`` and ``Authorization``), for every job, the uncached ones included, in
one upstream batch or as single calls.
A batch whose jobs are all fresh hits never reaches a host. Each result's ``headers``
carry ``x-cache`` and ``cache-status`` (RFC 9211) besides the host's fields, but for a job
refused for its hash (the proxy's own 400 has neither, as a single call refused so).

An upstream without the endpoint (npm js-host 0.11 answers 404), or one that refuses
the batch as a whole (400, 413), gets the misses as single calls instead, a few at a
time, through the cached path of single calls (``calls.py``); an upstream found
without it is remembered by this process. Not done for a batch's jobs: waiting for
another request's call of the same key (``coalesce.py``), and stale-while-revalidate
(an entry in that window is a miss, refreshed in the batch).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

from requests.structures import CaseInsensitiveDict

from js_host.batch import BATCH_PATH, decode_results, encode_batch
from js_host.exceptions import UnexpectedResponse
from js_host_proxy.batch_jobs import Job, as_result, parse_jobs, with_state
from js_host_proxy.cache.keys import cache_key
from js_host_proxy.calls import HostCalls
from js_host_proxy.config import ProxyConfig
from js_host_proxy.fields import forwarded_headers
from js_host_proxy.hits import HitReader
from js_host_proxy.keyed_cache import KeyedCache
from js_host_proxy.paths import FUNCTION_PREFIX
from js_host_proxy.policy import decide
from js_host_proxy.replies import Reply, text_reply
from js_host_proxy.upstream import UpstreamError
from js_host_proxy.versions import CodeVersions

logger = logging.getLogger(__name__)

PATH = BATCH_PATH
#: Single upstream calls at a time for the misses of a batch an upstream cannot take.
SINGLE_CALL_THREADS = 4
_TEXT = "text/plain; charset=utf-8"


class BatchEndpoint:
    """``POST /batch`` of one :class:`js_host_proxy.app.ProxyApp` (its parts, not the app)."""

    def __init__(
        self,
        config: ProxyConfig,
        *,
        hits: HitReader,
        calls: HostCalls,
        cache: KeyedCache,
        versions: CodeVersions,
    ) -> None:
        self.config = config
        self.hits = hits
        self.calls = calls
        self.cache = cache
        self.versions = versions
        # Upstreams (base URLs) found without POST /batch: their misses go as single calls.
        self._no_batch: set[str] = set()
        #: Called with (X-Cache, function, status) for each job answered, as a single call's
        #: answer is counted (the proxy's metrics, observe.py), or None.
        self.counted: Callable[[str, str, str], None] | None = None
        #: Called with (function, status) for each job the host answered in an upstream batch
        #: (the metrics label a name once the host has answered it with another status than 404).
        self.host_answered: Callable[[str, int], None] | None = None

    def answer(self, environ: dict[str, Any], body: bytes) -> Reply:
        """The reply to a batch whose body (read whole, within JS_HOST_PROXY_MAX_BODY) is ``body``."""
        jobs = parse_jobs(body)
        if isinstance(jobs, Reply):
            return jobs
        results: list[dict[str, Any] | None] = [None] * len(jobs)
        version = self.versions.current(self.calls.pool.peek())
        misses: list[Job] = []
        for job in jobs:
            if job.hash is not None:
                digest = hashlib.sha1(job.body.encode()).hexdigest()
                if job.hash.lower() != digest:
                    results[job.index] = as_result(
                        text_reply(
                            400,
                            f"js-host-proxy: job {job.index}'s hash {job.hash[:64]!r} is not the sha1 of "
                            f"its body ({digest}). Send hash=sha1(body) of the exact body, or no hash "
                            "to bypass the cache.",
                        )
                    )
                    continue
                job = job._replace(key=cache_key(self.config.namespace, version, job.name, digest))
                hit = self.hits.read(job.key)
                if hit is not None and hit.is_fresh():
                    logger.debug("HIT %s (batch job %d)", job.key, job.index)
                    results[job.index] = as_result(hit.reply("HIT"))
                    continue
            misses.append(job)
        if misses:
            self.forward(environ, misses, results)
        if self.counted is not None:
            for job in jobs:
                result = results[job.index]
                if result is not None:
                    self.counted(result["headers"].get("x-cache", "NONE"), job.name, str(result["status"]))
        return Reply(
            200,
            [("Content-Type", "application/json; charset=utf-8")],
            json.dumps({"results": results}, separators=(",", ":")).encode(),
        )

    def forward(self, environ: dict[str, Any], misses: list[Job], results: list[Any]) -> None:
        """Answer ``misses`` from the host: one upstream batch (each distinct key once)."""
        headers = forwarded_headers(environ, cached=True)
        headers["Content-Type"] = "application/json"
        sent: list[Job] = []
        same: dict[str, list[Job]] = {}  # a key's other jobs in this batch: answered with it
        for job in misses:
            if job.key is not None and job.key in same:
                same[job.key].append(job)
                continue
            if job.key is not None:
                same[job.key] = []
            sent.append(job)
        if self.calls.pool.peek() in self._no_batch:
            outcomes = self.singly(environ, sent, headers)
        else:
            outcomes = self.batched(environ, sent, headers)
        for job, result in zip(sent, outcomes):
            results[job.index] = result
            for other in same.get(job.key or "", ()):
                results[other.index] = result

    def batched(
        self, environ: dict[str, Any], jobs: list[Job], headers: dict[str, str]
    ) -> list[dict[str, Any]]:
        body = encode_batch([(job.function, job.hash or "", job.body) for job in jobs])
        session = self.calls.sessions()[0]  # stored here, job by job: not by CacheControl
        try:
            base, response, content = self.calls.pool.send(session, "POST", PATH, body=body, headers=headers)
        except UpstreamError as err:
            logger.warning("%s", err)
            return [self.failed(job, err.status, str(err), None) for job in jobs]
        if response.status_code in (404, 405):
            logger.info(
                "the host at %s has no POST %s (it answered %s): batches' misses go to it as single calls",
                base,
                PATH,
                response.status_code,
            )
            self._no_batch.add(base)
            return self.singly(environ, jobs, headers)
        if response.status_code in (400, 413):
            logger.warning(
                "the host at %s refused a batch of %d jobs as a whole (%s: %s): sent as single calls",
                base,
                len(jobs),
                response.status_code,
                content[:300].decode("utf-8", "replace"),
            )
            return self.singly(environ, jobs, headers)
        try:
            if response.status_code != 200:
                raise UnexpectedResponse(f"it answered {response.status_code}")
            decoded = decode_results(content, len(jobs))
        except UnexpectedResponse as err:
            message = f"js-host-proxy: the host at {base} sent an invalid answer to POST {PATH}: {err}"
            logger.warning("%s", message)
            return [self.failed(job, 502, message, None) for job in jobs]
        return [self.job_result(base, job, result, headers) for job, result in zip(jobs, decoded)]

    def job_result(
        self, base: str, job: Job, result: dict[str, Any], request_headers: dict[str, str]
    ) -> dict[str, Any]:
        """One job's result from the host: stored when it may be, with x-cache and cache-status."""
        status = result["status"]
        if self.host_answered is not None:
            self.host_answered(job.name, status)
        names = self.hits.names
        if job.key is None:
            return with_state(result, "BYPASS", names.forwarded("bypass", status))
        if status in (502, 503, 504):
            stale = self.calls.stale(job.key, f"the host answered {status}", status)
            if stale is not None:
                return as_result(stale)
        body = result["body"].encode("utf-8")
        fields: CaseInsensitiveDict[str] = CaseInsensitiveDict(
            {"Content-Type": _TEXT, **result["headers"], "Content-Length": str(len(body))}
        )
        storage = decide(
            status,
            fields,
            framed=True,
            default_ttl=self.config.ttl,
            request_headers=CaseInsensitiveDict(request_headers),
            stale_while_revalidate=self.config.stale_while_revalidate,
            stale_ttl=self.config.stale_ttl,
        )
        if storage.storable:
            url = f"{base}{FUNCTION_PREFIX}{quote(job.name.encode('latin-1'), safe='')}?hash={job.hash}"
            self.cache.store_answer(url, fields, body, storage)
        logger.debug("MISS %s (batch job %d, status %s): %s", job.key, job.index, status, storage.reason)
        stored_for = storage.lifetime if storage.storable else None
        return with_state(result, "MISS", names.forwarded("miss", status, stored_for))

    def failed(self, job: Job, status: int, message: str, host_status: int | None) -> dict[str, Any]:
        """The result of a job whose host could not be used: stale when it may be, else the error."""
        if job.key is not None:
            stale = self.calls.stale(job.key, message, host_status)
            if stale is not None:
                return as_result(stale)
        reply = text_reply(status, message)
        reply.state = "MISS" if job.key is not None else "BYPASS"
        return as_result(reply)

    def singly(
        self, environ: dict[str, Any], jobs: list[Job], headers: dict[str, str]
    ) -> list[dict[str, Any]]:
        """Each job as a single upstream call, through the single calls' cached path."""

        def one(job: Job) -> dict[str, Any]:
            path_qs = f"{FUNCTION_PREFIX}{quote(job.name.encode('latin-1'), safe='')}"
            if job.key is None:  # without the client's Cookie and Authorization, as in one batch
                reply = self.calls.forward(environ, "POST", path_qs, job.body.encode(), headers)
                return as_result(reply, "BYPASS")
            reply = self.calls.call_cached(f"{path_qs}?hash={job.hash}", job.body.encode(), headers, job.key)
            return as_result(reply)

        if len(jobs) == 1:
            return [one(jobs[0])]
        with ThreadPoolExecutor(max_workers=min(SINGLE_CALL_THREADS, len(jobs))) as executor:
            return list(executor.map(one, jobs))
