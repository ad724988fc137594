"""What the proxy may store, and for how long: the one storage decision.

The proxy is a *shared* cache (RFC 9111 §1): one stored answer is served to every
client. Its key is the function's name and the body's sha1 (plus the namespace),
no request header, so an answer is stored only when it is the same for everyone
who sends that body. :func:`decide` is made once per answer, from its status and
header fields and its framing, before the body is read; the adapter stores by it
(``httpcache.py``) and the app shares the answer with waiting requests by it.

Not stored (each with the RFC section behind it):

- anything but a 200 (the function's output; errors and redirects never are);
- a close-delimited answer (no Content-Length, not chunked): a body cut off by a
  closed connection cannot be told from a whole one (RFC 9112 §6.3, §8);
- ``no-store`` (§5.2.2.5), unless ``must-understand`` is present too: a cache
  that understands the status code (200) ignores ``no-store`` then (§5.2.2.3);
- ``private``, in any form (§5.2.2.7: a shared cache must not store it);
- ``no-cache``, in any form (§5.2.2.4): it may only be reused after validation,
  and the proxy does not revalidate;
- ``Set-Cookie``: the answer sets one client's state (§7.3 leaves it to the cache;
  a shared one must not hand it to everyone);
- any ``Vary``, ``*`` included (§4.1): the key holds no request header to match;
- a request with ``Authorization`` (§3.5), unless ``public``, ``s-maxage`` or
  ``must-revalidate`` allow it (the app does not forward it on cached calls);
- no freshness lifetime left. The lifetime is ``s-maxage`` (a shared cache uses
  it over ``max-age``, §5.2.2.10), else ``max-age`` (§5.2.2.1), else ``Expires``
  minus ``Date`` (§5.3; an invalid date such as ``0`` is in the past), else the
  proxy's default TTL (``JS_HOST_PROXY_TTL``, a heuristic lifetime, §4.2.2),
  minus the answer's ``Age`` (§4.2.3). An invalid ``max-age`` makes it stale
  (§4.2.1). The default TTL is the proxy's own: it is never written into an answer.

``must-revalidate``, ``proxy-revalidate`` and ``s-maxage`` (§5.2.2.2, §5.2.2.8,
§5.2.2.10) forbid serving the entry stale (§4.2.4), so it is never a ``STALE``
answer, neither when the host is down nor while it is refreshed.

How long a stored answer is served stale while one background call refreshes it
(RFC 5861 §3 ``stale-while-revalidate=N``): the answer's own ``N`` when it has a
valid one (``0`` included: off), else the proxy's default
(``JS_HOST_PROXY_STALE_WHILE_REVALIDATE``), at most the time expired entries are
kept (``JS_HOST_PROXY_STALE_TTL``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from werkzeug.http import parse_list_header

#: Directives after which an entry is not served stale (RFC 9111 §4.2.4).
NO_STALE = ("must-revalidate", "proxy-revalidate", "s-maxage")


@dataclass(frozen=True)
class Storage:
    """The decision for one answer: stored for ``lifetime`` seconds (0: not stored)."""

    lifetime: float
    #: Why (for the debug log): the lifetime's source, or why it is not stored.
    reason: str
    #: May it be served after it expires, while the host is down?
    serve_stale: bool = True
    #: Seconds after expiry it is served at once while a background call refreshes it.
    revalidate_for: float = 0.0

    @property
    def storable(self) -> bool:
        return self.lifetime > 0


def decide(
    status: int,
    headers: Mapping[str, str],
    *,
    framed: bool,
    default_ttl: float,
    request_headers: Mapping[str, str] | None = None,
    now: float | None = None,
    stale_while_revalidate: float = 0.0,
    stale_ttl: float = float("inf"),
) -> Storage:
    """Whether an answer of ``status`` with ``headers`` may be stored, and for how long.

    ``headers`` must look names up case-insensitively (requests' and urllib3's do) and
    join repeated fields with commas; ``framed``: it has a Content-Length or is chunked.
    ``stale_while_revalidate``: the default window for answers that name none;
    ``stale_ttl``: how long expired entries are kept (the longest window).
    """
    if status != 200:
        return Storage(0, f"status {status}: only 200s are stored")
    if not framed:
        return Storage(0, "close-delimited (no Content-Length, not chunked): a cut-off body looks whole")
    cc = directives(headers.get("Cache-Control", ""))
    if "no-store" in cc and "must-understand" not in cc:
        return Storage(0, "Cache-Control: no-store")
    for name in ("private", "no-cache"):
        if name in cc:
            return Storage(0, f"Cache-Control: {name} (a shared cache does not store it)")
    if "set-cookie" in headers:
        return Storage(0, "Set-Cookie: the answer is for one client")
    if "vary" in headers:
        return Storage(0, f"Vary: {headers['vary']} (the key holds no request header)")
    authorized = request_headers is not None and "authorization" in request_headers
    if authorized and not {"public", "s-maxage", "must-revalidate"} & cc.keys():
        return Storage(0, "the request carried Authorization")
    lifetime, source = _lifetime(cc, headers, default_ttl, time.time() if now is None else now)
    age = headers.get("Age", "").strip()
    if age.isdigit():
        lifetime -= int(age)
        source += f" - Age {age}"
    if lifetime <= 0:
        return Storage(0, f"no freshness lifetime left ({source})")
    if any(name in cc for name in NO_STALE):
        return Storage(lifetime, source, serve_stale=False)
    window = stale_while_revalidate
    value = cc.get("stale-while-revalidate") or ""
    if value.isdigit():  # RFC 5861 §3: delta-seconds; anything else is ignored
        window = int(value)
    return Storage(lifetime, source, revalidate_for=max(0.0, min(window, stale_ttl)))


def directives(value: str) -> dict[str, str | None]:
    """Cache-Control directives by lower-case name (the first of repeated ones), values unquoted."""
    found: dict[str, str | None] = {}
    for item in parse_list_header(value):
        name, eq, arg = item.partition("=")
        name = name.strip().lower()
        if name and name not in found:
            found[name] = arg.strip().strip('"') if eq else None
    return found


def _lifetime(
    cc: Mapping[str, str | None], headers: Mapping[str, str], default_ttl: float, now: float
) -> tuple[float, str]:
    for name in ("s-maxage", "max-age"):
        if name in cc:
            value = cc[name] or ""
            # RFC 9111 §4.2.1: invalid freshness information makes the answer stale.
            return (int(value) if value.isdigit() else 0), f"{name}={value}"
    expires = headers.get("Expires")
    if expires is not None:
        when = _http_date(expires)
        if when is None:
            return 0, f"Expires: {expires!r} (invalid: in the past, RFC 9111 §5.3)"
        date = _http_date(headers.get("Date", ""))
        return when - (now if date is None else date), "Expires - Date"
    return default_ttl, "the default TTL (JS_HOST_PROXY_TTL)"


def _http_date(value: str) -> float | None:
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
