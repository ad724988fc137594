"""Which upstreams answer ``GET /health``: the proxy's readiness and its ``upstream_up`` gauges.

An upstream is up when it answers ``GET /health`` with a status below 500 within the
timeout (a pool that has no worker ready answers 503; npm js-host 0.11 has no such
route and answers 404, which still says it is there). The upstreams are asked at once,
each on a thread of its own, and what they answered is reused for ``max_age`` seconds,
so that probes and scrapes arriving together ask once.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from js_host.peer_owner import ForeignListener, OwnerCheck
from js_host_proxy.connections import upstream_owners
from js_host_proxy.upstream import _reason


def shown(url: str) -> str:
    """``url`` as the metrics and the readiness answer name it: without credentials."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


class UpstreamHealth:
    def __init__(
        self, urls: Sequence[str], *, timeout: float, max_age: float = 1.0, owners: OwnerCheck | None = None
    ) -> None:
        self.urls = list(urls)
        self.owners = owners if owners is not None else upstream_owners()
        self.timeout = timeout
        self.max_age = max_age
        self._checked: tuple[float, dict[str, str | None]] | None = None
        self._lock = threading.Lock()

    def check(self) -> dict[str, str | None]:
        """upstream URL -> None when it is up, else why it is not."""
        with self._lock:
            checked = self._checked
            if checked is not None and time.monotonic() - checked[0] < self.max_age:
                return checked[1]
            found: dict[str, str | None] = {}
            threads = [
                threading.Thread(target=self._probe, args=(url, found), daemon=True) for url in self.urls
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(self.timeout + 1)
            result = {url: found.get(url, "no answer") for url in self.urls}
            self._checked = (time.monotonic(), result)
            return result

    def _probe(self, url: str, found: dict[str, str | None]) -> None:
        parts = urlsplit(url)
        kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        conn = kind(parts.hostname or "127.0.0.1", parts.port, timeout=self.timeout)
        try:
            conn.connect()
            self.owners.check(conn.sock.getpeername())  # another user's listener is not up
            conn.request("GET", "/health", headers={"Accept": "application/json"})
            status = conn.getresponse().status
            found[url] = None if status < 500 else f"GET /health answered {status}"
        except (OSError, http.client.HTTPException, ForeignListener) as err:
            found[url] = _reason(err) or type(err).__name__
        finally:
            conn.close()
