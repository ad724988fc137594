"""The stored entry format: one byte string, written and read whole (so a backend
only needs get/set/delete of bytes)::

    b"JSHP1 <stored_at> <fresh_until> <len>[ no-stale][ swr=<seconds>]\\n"
    + <CacheControl's serialized response>

``fresh_until`` is computed once, when the response is stored, from the freshness
lifetime the storage decision gave (``policy.decide``), so a hit only compares two
floats. ``len`` lets a reader refuse a truncated entry. A backend keeps an entry
``stale_ttl`` seconds past its freshness so that it can be served when the host is
down, unless it is marked ``no-stale`` (its answer said ``must-revalidate``,
``proxy-revalidate`` or ``s-maxage``: RFC 9111 §4.2.4). ``swr=<seconds>``: for that
long after ``fresh_until`` the entry is served at once while a background call
refreshes it (stale-while-revalidate, RFC 5861 §3).

The blob is opaque here: only ``js_host_proxy.httpcache_format``, beside CacheControl's
adapter, reads CacheControl's format.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

logger = logging.getLogger(__name__)

MAGIC = b"JSHP1"
#: The header line's flag of an entry that must not be served stale.
NO_STALE = b"no-stale"
#: The header line's flag that gives the stale-while-revalidate window, in seconds.
SWR = b"swr="


@dataclass(frozen=True)
class Entry:
    stored_at: float
    fresh_until: float
    blob: bytes  # CacheControl's serialized response
    serve_stale: bool = True  # may it be served expired while the host is down?
    revalidate_for: float = 0.0  # seconds past fresh_until it is served while refreshed

    def dumps(self) -> bytes:
        flag = b"" if self.serve_stale else b" " + NO_STALE
        if self.revalidate_for > 0:
            flag += b" %s%.3f" % (SWR, self.revalidate_for)
        head = b"%s %.3f %.3f %d%s\n" % (MAGIC, self.stored_at, self.fresh_until, len(self.blob), flag)
        return head + self.blob

    @classmethod
    def loads(cls, data: bytes | None) -> Entry | None:
        """The entry, or None when ``data`` is empty, foreign or truncated."""
        if not data or not data.startswith(MAGIC):
            return None
        end = data.find(b"\n", 0, 80)
        try:
            _, stored_at, fresh_until, length, *flags = data[:end].split()
            blob = data[end + 1 :]
            if end < 0 or len(blob) != int(length):
                raise ValueError("truncated")
            serve_stale, revalidate_for = True, 0.0
            for flag in flags:
                if flag == NO_STALE:
                    serve_stale = False
                elif flag.startswith(SWR):
                    revalidate_for = float(flag[len(SWR) :])
                else:
                    raise ValueError("unknown flag")
            return cls(float(stored_at), float(fresh_until), blob, serve_stale, revalidate_for)
        except ValueError:
            logger.warning("ignoring a malformed cache entry (%d bytes)", len(data))
            return None

    def is_fresh(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) < self.fresh_until


def fresh_until(data: bytes, default: float) -> float:
    """The end of an entry's freshness, read from its header line alone (for eviction)."""
    try:
        return float(data[: data.index(b"\n", 0, 120)].split()[2])
    except (ValueError, IndexError):
        return default
