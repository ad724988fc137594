"""A batch's jobs: the body of ``POST /batch`` read into them, and a reply made a job's result.

The format is the host's (``js_host/batch.py``, ``js_host/node/lib/batch.js``): a body is
``{"jobs": [{"function": ..., "hash": ..., "body": ...}, ...]}`` of at most
``MAX_BATCH_JOBS`` jobs; an answer's ``results`` hold each job's status, header fields
(lower-case names) and body as text. A body the proxy cannot read is refused whole, with
the 400 that says what is wrong with it, as the host refuses it.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from js_host.batch import MAX_BATCH_JOBS
from js_host_proxy.replies import Reply, text_reply

# Fields of a reply that are not a job's: its length is the batch's business.
_NOT_A_JOB_FIELD = frozenset({"content-length"})


class Job(NamedTuple):
    """One job of a batch, as the proxy handles it."""

    index: int
    function: str
    name: str  # the function's name as a single call's key holds it (its URL's bytes as latin-1)
    hash: str | None  # None: forwarded uncached
    body: str
    key: str | None


def parse_jobs(body: bytes) -> list[Job] | Reply:
    """The jobs of a batch body, or the 400 that says what is wrong with it."""
    try:
        data = json.loads(body)
    except ValueError as err:
        return text_reply(400, f"js-host-proxy: the batch is not valid JSON ({err})")
    except RecursionError:
        # Arrays or objects nested thousands deep: refused as the host does, not a 500.
        return text_reply(400, "js-host-proxy: the batch is nested too deeply to be read as JSON")
    raw = data.get("jobs") if isinstance(data, dict) else None
    if not isinstance(raw, list):
        return text_reply(
            400,
            'js-host-proxy: a batch is {"jobs": [{"function": "<name>", "hash": "<sha1>", '
            '"body": "<JSON text>"}, ...]}',
        )
    if len(raw) > MAX_BATCH_JOBS:
        return text_reply(
            400,
            f"js-host-proxy: the batch has {len(raw)} jobs, more than {MAX_BATCH_JOBS}: split it "
            "into several batches",
        )
    jobs = []
    for index, job in enumerate(raw):
        if not isinstance(job, dict):
            problem = "is not an object"
        elif not isinstance(job.get("function"), str) or not job["function"]:
            problem = 'has no "function" name'
        elif not isinstance(job.get("body", ""), str):
            problem = 'has a "body" that is not a string (it is the JSON text of the call\'s data)'
        elif not isinstance(job.get("hash", ""), str):
            problem = 'has a "hash" that is not a string'
        elif _lone_surrogate(job.get("body", "")) is not None:
            # JSON's \ud800 escape carries one, and it has no UTF-8 form: no hash, nothing to send.
            problem = (
                f'has a "body" with a lone surrogate ({_lone_surrogate(job["body"])}), which has no '
                "UTF-8 form: the body is the JSON text of the call's data, where such a character is "
                "written escaped (\\ud800)"
            )
        else:
            function = job["function"]
            name = function.encode("utf-8", "surrogatepass").decode("latin-1")
            jobs.append(Job(index, function, name, job.get("hash") or None, job.get("body", ""), None))
            continue
        return text_reply(400, f"js-host-proxy: job {index} of the batch {problem}")
    return jobs


def _lone_surrogate(text: str) -> str | None:
    """The first lone surrogate of ``text`` and where it is, or None when it is all UTF-8 text."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return f"U+{ord(text[err.start]):04X} at character {err.start}"
    return None


def as_result(reply: Reply, state: str | None = None) -> dict[str, Any]:
    """A reply as a job's result: status, header fields (lower-case names, repeats joined)
    with x-cache and cache-status, and the body as text."""
    headers: dict[str, str] = {}
    for name, value in reply.headers:
        name = name.lower()
        if name in _NOT_A_JOB_FIELD:
            continue
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    state = state or reply.state
    if state is not None:
        headers["x-cache"] = state
    if reply.cache_status is not None:
        headers["cache-status"] = reply.cache_status
    return {"status": reply.status, "headers": headers, "body": reply.body.decode("utf-8", "replace")}


def with_state(result: dict[str, Any], state: str, cache_status: str) -> dict[str, Any]:
    """The host's result for a job, with the proxy's x-cache and cache-status."""
    return {**result, "headers": {**result["headers"], "x-cache": state, "cache-status": cache_status}}
