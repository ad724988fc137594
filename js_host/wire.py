"""The wire form of one function call: its body, its hash, and what a 500 answer says.

The keyword arguments of a call are sent as canonical JSON (``json.dumps(data,
sort_keys=True)``) to ``POST /function/<name>?hash=<sha1 of the body>``; the hash
lets a caching proxy key responses by their input. :func:`encode_request` gives both,
the body as bytes or, when a large string can skip json's escaping, as a list of
buffers that are hashed and sent without being joined. ``POST /batch``, which
carries these bodies, has its own format in :mod:`js_host.batch`.

Pure: no I/O, nothing read from the settings.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

#: Top-level strings longer than this take the fast path of encode_parts().
LARGE_STRING = 2048
# Bytes that json.dumps (ensure_ascii) escapes in a string: controls, '"', '\\', DEL.
_ESCAPED = bytes(range(32)) + b'"\\\x7f'

# json.dumps(data, sort_keys=True) without building an encoder on every call.
_ENCODER = json.JSONEncoder(sort_keys=True, allow_nan=False)


def serialize(data: dict[str, Any], function_name: str = "?") -> str:
    """The canonical JSON of ``data``: ``json.dumps(data, sort_keys=True)``.

    A TypeError names the argument that JSON cannot encode (NaN and infinities
    included: they are not JSON).
    """
    try:
        return _ENCODER.encode(data)
    except (TypeError, ValueError) as err:
        for key in sorted(map(str, data)):
            try:
                json.dumps(data[key], sort_keys=True, allow_nan=False)
            except (TypeError, ValueError) as inner:
                raise TypeError(
                    f"Function {function_name!r}: argument {key!r} cannot be encoded as JSON ({inner}). "
                    "Pass only dicts with string keys, lists, strings, numbers, booleans and None."
                ) from err
        raise TypeError(
            f"Function {function_name!r}: the arguments cannot be encoded as JSON ({err})."
        ) from err


def encode_parts(data: dict[str, Any], function_name: str = "?") -> list[bytes]:
    """The body as a list of buffers whose concatenation is ``serialize(data).encode()``.

    json's C encoder escapes strings at ~1.5 ns a character. A large top-level
    string that is pure ASCII with nothing to escape (checked with
    bytes.translate, ~0.5 ns a byte) is left out of json.dumps and spliced in as
    its own buffer, which is hashed and sent without being copied again.
    """
    large = None
    for key, value in data.items():
        if type(value) is str and len(value) > LARGE_STRING and value.isascii():
            raw = value.encode("ascii")
            if len(raw.translate(None, _ESCAPED)) == len(raw):
                if large is None:
                    large = {}
                large[key] = raw
    if large is None:
        return [serialize(data, function_name).encode()]
    token = os.urandom(12).hex()
    placeholders = {key: f"{token}-{i}" for i, key in enumerate(large)}
    skeleton = serialize({**data, **placeholders}, function_name).encode()
    parts: list[bytes] = []
    for key, raw in large.items():
        before, sep, skeleton = skeleton.partition(f'"{placeholders[key]}"'.encode())
        if not sep:  # cannot happen: the keys are unique and the token random
            return [serialize(data, function_name).encode()]
        parts += (before, b'"', raw, b'"')
    parts.append(skeleton)
    return parts


def encode_request(data: dict[str, Any], function_name: str = "?") -> tuple[bytes | list[bytes], str]:
    """The body of a call with ``data`` and its ``hash`` parameter (the sha1 hex of the body).

    The body is ``serialize(data).encode()``: bytes, or a list of buffers whose
    concatenation it is (see encode_parts).
    """
    parts = encode_parts(data, function_name)
    if len(parts) == 1:
        return parts[0], hashlib.sha1(parts[0]).hexdigest()
    sha1 = hashlib.sha1()
    for part in parts:
        sha1.update(part)
    return parts, sha1.hexdigest()


def body_head(body: bytes | list[bytes], size: int) -> bytes:
    """The first ``size`` bytes of a body, without joining (or decoding) the rest."""
    if isinstance(body, bytes):
        return body[:size]
    head = b""
    for part in body:
        head += part[: size - len(head)]
        if len(head) >= size:
            break
    return head


def js_error_message(stack: str) -> str:
    """The JavaScript error's message: the first line of its stack, without ``Error: ``."""
    first = stack.strip().split("\n", 1)[0]
    kind, sep, message = first.partition(": ")
    if sep and kind and " " not in kind and (kind.endswith("Error") or kind.endswith("Exception")):
        return message
    return first
