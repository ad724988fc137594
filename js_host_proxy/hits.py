"""The one hit reader: what the backend holds for a key, parsed, ready to send.

Every path that answers from the cache reads through :class:`HitReader`: a fresh
hit (sent as it is), an answer stored by another request while this one waited
(``coalesce.py``), a stale entry served while one background call refreshes it
(stale-while-revalidate, ``revalidate.py``) and one served while the host is down
(stale-if-error, ``calls.py``). Each entry is
parsed (its header line, CacheControl's bytes, the fields to send) the first time
it is read; later reads of the same key that return the very same bytes reuse
that work. Any other bytes (a new entry, one written by another process) are
parsed afresh, so what is sent is always what the backend holds. An entry that
cannot be read is logged once and ignored (a miss).

Every answer carries the stored fields plus ``Age``: the host's, plus the seconds
the entry has been stored (RFC 9111 §4.2.3, §5.1), and ``Cache-Status`` (RFC 9211).
"""

from __future__ import annotations

import logging
import time

from js_host_proxy.cache.base import CacheBackend
from js_host_proxy.cache.entry import Entry
from js_host_proxy.cache_status import FIELD as CACHE_STATUS
from js_host_proxy.cache_status import CacheStatus
from js_host_proxy.config import DEFAULT_CACHE_NAME
from js_host_proxy.fields import NOT_RETURNED_STORED, end_to_end
from js_host_proxy.httpcache_format import stored_response
from js_host_proxy.replies import Reply, StartResponse, status_line

logger = logging.getLogger(__name__)


class StoredAnswer:
    """A stored entry, parsed once, ready to be sent many times.

    Raises ValueError, KeyError or TypeError for an entry CacheControl did not write."""

    __slots__ = (
        "age",
        "body",
        "data",
        "fresh_until",
        "headers",
        "length",
        "names",
        "revalidate_until",
        "serve_stale",
        "status",
        "status_line",
        "stored_at",
    )

    def __init__(self, data: bytes, entry: Entry, names: CacheStatus) -> None:
        self.status, fields, self.body = stored_response(entry.blob)
        self.age = 0  # the host's Age, when it sent one
        for k, v in fields.items():
            if k.lower() == "age":
                self.age = int(v) if v.strip().isdigit() else 0
        self.headers = tuple(end_to_end(fields.items(), NOT_RETURNED_STORED))
        self.data = data
        self.stored_at = entry.stored_at
        self.fresh_until = entry.fresh_until
        self.serve_stale = entry.serve_stale
        self.revalidate_until = entry.fresh_until + entry.revalidate_for
        self.status_line = status_line(self.status)
        self.length = str(len(self.body))
        self.names = names

    def age_field(self, now: float | None = None) -> tuple[str, str]:
        stored_for = int((time.time() if now is None else now) - self.stored_at)
        return ("Age", str(self.age + stored_for) if stored_for > 0 else str(self.age))

    def is_fresh(self) -> bool:
        return time.time() < self.fresh_until

    def send(self, start_response: StartResponse) -> list[bytes]:
        """Send it as a fresh hit (the hit path: no :class:`Reply` in between)."""
        now = time.time()
        start_response(
            self.status_line,
            [
                *self.headers,
                self.age_field(now),
                ("X-Cache", "HIT"),
                (CACHE_STATUS, self.names.hit(self.fresh_until - now)),
                ("Content-Length", self.length),
            ],
        )
        return [self.body]

    def reply(self, state: str) -> Reply:
        """The answer as a :class:`Reply` that waiting requests may share."""
        return Reply(
            self.status,
            [*self.headers, self.age_field()],
            self.body,
            shareable=True,
            state=state,
            cache_status=self.names.hit(self.fresh_until - time.time()),
        )

    def stale(self, cache_status: str, extra: tuple[tuple[str, str], ...] = ()) -> Reply:
        """The answer served expired (``X-Cache: STALE``), for both reasons: while a background
        call refreshes it, or because the host failed; ``extra``: fields that say why."""
        return Reply(
            self.status,
            [*self.headers, self.age_field(), *extra],
            self.body,
            shareable=True,
            state="STALE",
            cache_status=cache_status,
        )


class HitReader:
    """Reads ``backend``'s entries, keeping the entries of this process's recent reads parsed.

    At most ``max_entries`` entries of ``max_bytes`` in all are kept (all are dropped
    when full: the hot keys come back at once); entries above ``max_entry_bytes`` are
    parsed on every read (reading them costs more than parsing them).
    """

    def __init__(
        self,
        backend: CacheBackend,
        max_entries: int = 1024,
        max_bytes: int = 16 << 20,
        max_entry_bytes: int = 64 << 10,
        *,
        names: CacheStatus | None = None,
    ) -> None:
        self.backend = backend
        #: This proxy's Cache-Status values.
        self.names = names if names is not None else CacheStatus(DEFAULT_CACHE_NAME)
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self._parsed: dict[str, StoredAnswer] = {}
        # The bytes of entries found unreadable, so that each is logged once.
        self._unreadable: dict[str, bytes] = {}
        self._bytes = 0

    def read(self, key: str, *, stale_for: float = 0.0, revalidating: bool = False) -> StoredAnswer | None:
        """The answer stored for ``key`` if fresh, or expired less than ``stale_for``
        seconds ago (when it may be served stale), or within its stale-while-revalidate
        window with ``revalidating``; None otherwise."""
        data = self.backend.get(key)
        if not data:
            return None
        hit = self._parsed.get(key)
        if hit is None or hit.data != data:
            hit = self._parse(key, data)
            if hit is None:
                return None
        now = time.time()
        if now < hit.fresh_until:
            return hit
        if revalidating and now < hit.revalidate_until:
            return hit
        if stale_for and hit.serve_stale and now < hit.fresh_until + stale_for:
            return hit
        return None

    def _parse(self, key: str, data: bytes) -> StoredAnswer | None:
        if self._unreadable.get(key) == data:
            return None
        entry = Entry.loads(data)  # logs a malformed entry itself
        hit = None
        if entry is not None:
            try:
                hit = StoredAnswer(data, entry, self.names)
            except (ValueError, KeyError, TypeError) as err:  # written by something else: ignore it
                logger.warning("ignoring an unreadable cache entry for %s: %s", key, err)
        if len(data) <= self.max_entry_bytes:
            if len(self._parsed) + len(self._unreadable) >= self.max_entries or self._bytes >= self.max_bytes:
                self._parsed.clear()
                self._unreadable.clear()
                self._bytes = 0
            if hit is None:
                self._parsed.pop(key, None)
                self._unreadable[key] = data
                self._bytes += len(data)
            else:
                self._parsed[key] = hit
                self._unreadable.pop(key, None)
                self._bytes += 2 * len(data)  # the entry and its body
        return hit
