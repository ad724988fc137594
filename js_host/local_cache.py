"""``LocalCache``: the freshest answers of one host, kept in this Python process (opt-in).

Set ``LOCAL_CACHE_SIZE`` (bytes) to turn it on: ``Function.call`` then answers a
call it has seen from memory, without a request, while the answer is fresh. It is
a *private* cache in RFC 9111's sense (one process's, never shared), keyed like
the proxy: the function's name, the code version the host reported
(``JS-Host-Code-Version``) and the body's sha1.

What is kept, and for how long:

- only 200s (the function's output);
- never ``no-store`` (§5.2.2.5) nor ``no-cache`` (§5.2.2.4: reuse needs a
  revalidation, which this cache does not do), nor an answer with ``Vary``
  (§4.1: the key holds no request header); ``private`` is fine (§5.2.2.7: a private
  cache may store it), and so is ``Set-Cookie`` (the client keeps no cookies);
- fresh for ``max-age`` (§5.2.2.1; ``s-maxage`` is for shared caches only), else
  ``Expires`` minus ``Date`` (§5.3), minus the answer's ``Age`` (§4.2.3: the time it
  already spent in the proxy's cache), and never longer than ``LOCAL_CACHE_MAX_AGE``
  seconds. An answer that says nothing about its freshness is kept
  ``LOCAL_CACHE_MAX_AGE`` seconds from its arrival (a heuristic lifetime, §4.2.2).
  Freshness is counted on the monotonic clock.

The trade: the lookup happens before any request, so it cannot know of a purge
of the proxy or of a deploy. A call answered here may be up to
``LOCAL_CACHE_MAX_AGE`` seconds (or the answer's own ``max-age``, if shorter) behind.
The version it keys on is the last one this host reported on any answer: once an
answer of new code arrives, every entry of the old code is dropped.

Bounded by bytes (each entry counts its output, key and a fixed overhead), least
recently used out first; thread-safe; a forked child starts with an empty cache
(its parent's entries are not its own to keep fresh, and a lock held by another
thread at ``fork()`` is never released).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from email.utils import parsedate_to_datetime
from typing import NamedTuple

from .response import Response

logger = logging.getLogger(__name__)

#: The field in which the host reports the version of the code it runs.
CODE_VERSION_FIELD = "js-host-code-version"
#: Bytes counted per entry beyond its output and key (the entry's objects).
ENTRY_OVERHEAD = 200

# Every LocalCache, so that a forked child can empty them (see _after_fork_in_child).
_caches: weakref.WeakSet[LocalCache] = weakref.WeakSet()


class _Entry(NamedTuple):
    output: str
    fresh_until: float  # time.monotonic()
    size: int


class LocalCache:
    """At most ``max_bytes`` of one host's fresh answers, each kept at most ``max_age`` seconds."""

    def __init__(self, max_bytes: int, max_age: float) -> None:
        self.max_bytes = max_bytes
        self.max_age = max_age
        self._reset()
        _caches.add(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._bytes = 0
        #: The code version the host last reported (None: none reported yet).
        self.version: str | None = None

    @property
    def size(self) -> int:
        """Bytes held (as counted against ``max_bytes``)."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str, digest: str) -> str | None:
        """The output of function ``name`` for the body of sha1 ``digest``, if held and fresh."""
        key = (name, digest)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.fresh_until <= time.monotonic():
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return entry.output

    def answered(self, name: str, digest: str, response: Response, output: str | None) -> None:
        """Note what the host answered a call (``output``: the 200's text, else None): its code
        version, and the output if a private cache may keep it."""
        version = response.headers.get(CODE_VERSION_FIELD)
        lifetime = lifetime_of(response, self.max_age) if output is not None else 0.0
        with self._lock:
            if version is not None and version != self.version:
                if self._entries:
                    logger.debug(
                        "the host now runs code %s (was %s): local cache emptied", version, self.version
                    )
                self._entries.clear()
                self._bytes = 0
                self.version = version
            if lifetime <= 0 or output is None:
                return
            key = (name, digest)
            size = len(output) + len(name) + len(digest) + ENTRY_OVERHEAD
            if key in self._entries:
                self._drop(key)
            if size > self.max_bytes:
                return
            while self._bytes + size > self.max_bytes:
                self._drop(next(iter(self._entries)))
            self._entries[key] = _Entry(output, time.monotonic() + lifetime, size)
            self._bytes += size

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _drop(self, key: tuple[str, str]) -> None:
        self._bytes -= self._entries.pop(key).size


def lifetime_of(response: Response, max_age: float) -> float:
    """Seconds a private cache may reuse ``response`` (a 200), at most ``max_age``; 0: never."""
    headers = response.headers
    if "vary" in headers:
        return 0.0
    directives = cache_directives(response.header_values(b"cache-control"))
    if "no-store" in directives or "no-cache" in directives:
        return 0.0
    if "max-age" in directives:
        value = directives["max-age"] or ""
        lifetime = float(int(value)) if value.isdigit() else 0.0  # invalid: stale (§4.2.1)
    elif "expires" in headers:
        lifetime = _expires_lifetime(headers["expires"], headers.get("date"))
    else:
        return max_age  # a heuristic lifetime (§4.2.2), from the answer's arrival
    age = headers.get("age", "").strip()
    if age.isdigit():
        lifetime -= int(age)
    return min(lifetime, max_age)


def cache_directives(values: list[str]) -> dict[str, str | None]:
    """Cache-Control directives by lower-case name (the first of repeated ones), values unquoted.

    Directives are tokens, their values tokens or quoted strings (RFC 9111 §5.2); a comma
    inside a quoted value (``no-cache="a, b"``) only splits that value, which is never read.
    """
    found: dict[str, str | None] = {}
    for value in values:
        for item in value.split(","):
            name, eq, arg = item.partition("=")
            name = name.strip().lower()
            if name and name not in found:
                found[name] = arg.strip().strip('"') if eq else None
    return found


def _expires_lifetime(expires: str, date: str | None) -> float:
    when = _http_date(expires)
    if when is None:
        return 0.0  # an invalid date is in the past (§5.3)
    sent = _http_date(date) if date else None
    return when - (time.time() if sent is None else sent)


def _http_date(value: str) -> float | None:
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def _after_fork_in_child() -> None:
    for cache in list(_caches):
        cache._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
