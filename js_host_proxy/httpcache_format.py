"""CacheControl's stored format: the one place that reads or writes it.

An entry's blob (``cache/entry.py`` holds it as opaque bytes) is what CacheControl 0.14's
serializer writes: its format version, then a msgpack map of the response. The proxy
reads it back to answer hits (``hits.py``) and writes it for answers that came without
a requests session (a batch's jobs, through ``KeyedCache.store_answer``), so that a
single call and a batch's job find each other's entries. Checked against the pinned
series by ``tests/proxy/test_httpcache.py``; a CacheControl release that changes the
format changes this module only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgpack

if TYPE_CHECKING:
    from collections.abc import Mapping

#: CacheControl's serializer prefixes its format version.
CC_PREFIX = b"cc=4,"


def stored_response(blob: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, header fields, body) of the response CacheControl serialized as ``blob``.

    Raises ValueError, KeyError or TypeError for bytes CacheControl did not write."""
    if not blob.startswith(CC_PREFIX):
        raise ValueError("not a CacheControl v4 entry")
    stored = msgpack.loads(blob[len(CC_PREFIX) :], raw=False)["response"]
    return stored["status"], stored["headers"], stored["body"]


def stored_blob(status: int, headers: Mapping[str, str], body: bytes) -> bytes:
    """The bytes CacheControl 0.14's serializer writes for an answer (``Serializer.dumps``
    with no ``Vary``), for answers that did not come through a requests session (a
    batch's jobs, ``KeyedCache.store_answer``): read back by :func:`stored_response`."""
    response = {
        "body": body,
        "headers": {str(k): str(v) for k, v in headers.items()},
        "status": status,
        "version": 11,
        "reason": "OK" if status == 200 else "",
        "decode_content": True,
    }
    return CC_PREFIX + msgpack.dumps({"response": response, "vary": {}}, use_bin_type=True)
