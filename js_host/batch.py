"""The wire format of ``POST /batch``: many function calls in one request (pure, no I/O).

A batch carries each job as the single call would, its function's name, its
``hash`` and its body (the canonical JSON of its data, as a string)::

    {"jobs": [{"function": "render", "hash": "<sha1 hex of body>", "body": "{\\"id\\": 1}"}, ...]}

and the host (or the proxy) answers 200 with one result per job, in the jobs' order,
each what the single call ``POST /function/<name>?hash=<hash>`` would have answered::

    {"results": [{"status": 200, "headers": {"cache-control": "...", ...}, "body": "<output>"}, ...]}

A batch that is itself malformed is answered 400 (413 over the host's body
limit); a host without the endpoint (npm js-host 0.11) answers 404. Both the
blocking client (:func:`js_host.function.call_many`) and the asyncio one encode
and decode here; :func:`result_response` turns a result into the
:class:`~js_host.response.Response` the single call would have returned, so the
same code maps it to an output or an exception.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from .exceptions import UnexpectedResponse
from .response import Response

#: The host's path for batches.
BATCH_PATH = "/batch"
#: The most jobs one batch carries unless the host says otherwise (the host's ``maxBatchJobs``
#: default): longer lists are split into several batches.
MAX_BATCH_JOBS = 100


class Job(NamedTuple):
    """One call of a batch: the function's name, the body's sha1 hex and the body itself
    (bytes, or the list of buffers :func:`js_host.wire.encode_request` returns)."""

    function: str
    hash: str
    body: bytes | list[bytes] | str


def _body_text(body: bytes | list[bytes] | str) -> str:
    if isinstance(body, str):
        return body
    if isinstance(body, list):
        body = b"".join(body)
    return body.decode("utf-8")


def encode_batch(jobs: Sequence[Job | tuple[str, str, Any]]) -> bytes:
    """The body of ``POST /batch`` for ``jobs`` (each a :class:`Job` or a
    ``(function, hash, body)`` tuple), as UTF-8 JSON."""
    encoded = [
        {"function": function, "hash": digest, "body": _body_text(body)} for function, digest, body in jobs
    ]
    return json.dumps({"jobs": encoded}, separators=(",", ":")).encode()


def decode_results(body: bytes | str, expected: int | None = None) -> list[dict[str, Any]]:
    """The results of a 200 answer to ``POST /batch``: one dict per job, in order, each with
    ``status`` (int), ``headers`` (lowercase names to strings) and ``body`` (str).

    ``expected`` is the number of jobs sent. Anything else (not JSON, no ``results``
    list, a malformed result, a different count) raises UnexpectedResponse.
    """
    try:
        data = json.loads(body)
    except ValueError as err:
        raise UnexpectedResponse(f"The answer to POST {BATCH_PATH} is not JSON ({err}).") from err
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, list):
        raise UnexpectedResponse(f"The answer to POST {BATCH_PATH} has no 'results' list: {_head(body)}")
    if expected is not None and len(results) != expected:
        raise UnexpectedResponse(
            f"The answer to POST {BATCH_PATH} has {len(results)} results for {expected} jobs."
        )
    decoded = []
    for index, result in enumerate(results):
        status = result.get("status") if isinstance(result, dict) else None
        headers = result.get("headers", {}) if isinstance(result, dict) else None
        text = result.get("body") if isinstance(result, dict) else None
        if (
            type(status) is not int
            or not isinstance(text, str)
            or not isinstance(headers, dict)
            or not all(isinstance(value, str) for value in headers.values())
        ):
            raise UnexpectedResponse(
                f"Result {index} of the answer to POST {BATCH_PATH} is not "
                f'{{"status": <int>, "headers": {{...}}, "body": <string>}}: {_head(json.dumps(result))}'
            )
        decoded.append(
            {"status": status, "headers": {str(k).lower(): v for k, v in headers.items()}, "body": text}
        )
    return decoded


def result_response(result: dict[str, Any]) -> Response:
    """The :class:`~js_host.response.Response` the single call would have returned for one
    decoded result (its status, header fields and body bytes)."""
    raw = [
        (name.encode("latin-1", "replace"), value.encode("latin-1", "replace"))
        for name, value in result["headers"].items()
    ]
    return Response(result["status"], raw, result["body"].encode("utf-8"), True)


def _head(text: bytes | str, size: int = 200) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text[:size] + ("..." if len(text) > size else "")
