"""The proxy's Prometheus metrics, counted with ``prometheus_client``.

Under gunicorn every worker counts into files of its own in the multiprocess
directory (``PROMETHEUS_MULTIPROC_DIR``; one made for the server when the operator
set none, :func:`prepare_multiprocess_dir`, called by ``gunicorn_settings.on_starting``)
and a scrape, answered by whichever worker, sums them all: a worker that exited (or
was killed) keeps its counts, its replacement counts in new files. Outside gunicorn
(the app in a test, another WSGI server, no such directory) the counts are this
process's own.

Counters (``_total``): ``js_host_proxy_requests_total{cache,function}`` (``cache``: the
answer's X-Cache, NONE for the proxy's own refusals; ``function``: the name once the host
has answered a call of it with another status than 404 (in this process, or an entry of the
cache: only the host's 200s are stored), else ``_unknown`` (a client's made-up name, refused by
the host or by the proxy, never becomes a label); ``_other`` past ``MAX_FUNCTIONS`` (cache,
function) pairs in one process),
``js_host_proxy_coalesced_waiters_total``, ``js_host_proxy_stale_answers_total``,
``js_host_proxy_upstream_errors_total{cause}`` (connect, timeout, 5xx, invalid) and
``js_host_proxy_cache_evictions_total``; the histogram
``js_host_proxy_upstream_duration_seconds`` (every call to a host, answered or not).
Gauges, measured when scraped: ``js_host_proxy_cache_entries`` and ``_cache_bytes`` (from
the backend: the file cache's shared usage record, when it has a size bound; the memory
cache of the answering worker; none for Redis) and ``js_host_proxy_upstream_up{upstream}``
(``health.py``).

The hit path costs one dictionary lookup and one counter increment (a write into the
worker's mmap'ed file): see ``bench/proxy_metrics.py``.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import logging
import os
import re
from collections.abc import Iterator
from typing import Any

from js_host_proxy.cache.base import CacheBackend
from js_host_proxy.health import UpstreamHealth, shown

logger = logging.getLogger(__name__)

PATH = "/metrics"
#: The environment variable prometheus_client reads for its multiprocess mode.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Distinct (cache, function) label pairs one process gives before counting the others as
#: ``_other``; also the most names it keeps as answered by the host.
MAX_FUNCTIONS = 200
UNKNOWN = "_unknown"
#: X-Cache values of answers made from a stored entry: the host answered that name 200.
_STORED = frozenset({"HIT", "STALE"})
CAUSES = ("connect", "timeout", "5xx", "invalid")


class ProxyMetrics:
    """The metrics of one app; ``multiprocess_dir``: prometheus_client's directory, or None."""

    def __init__(self, backend: CacheBackend, health: UpstreamHealth, multiprocess_dir: str | None) -> None:
        # Imported here: prometheus_client picks its mode from the environment when imported,
        # which must be after gunicorn_settings.on_starting has set it, in the worker.
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.backend = backend
        self.health = health
        self.multiprocess_dir = multiprocess_dir
        # A registry per app, never the global one: several apps in one process (tests).
        self.registry = registry = CollectorRegistry(auto_describe=True)
        counter = functools.partial(Counter, registry=registry)
        self._requests = counter(
            "js_host_proxy_requests",
            "Requests for functions, by the answer's X-Cache and the function",
            ["cache", "function"],
        )
        self._coalesced = counter(
            "js_host_proxy_coalesced_waiters",
            "Requests answered by another request's call to the host (waited for it)",
        )
        self._stale = counter("js_host_proxy_stale_answers", "Answers served stale (X-Cache: STALE)")
        self._errors = counter(
            "js_host_proxy_upstream_errors",
            "Calls to a host that failed: connect, timeout, 5xx (an answer >= 500), invalid",
            ["cause"],
        )
        self._evictions = counter(
            "js_host_proxy_cache_evictions", "Entries evicted to keep the cache under its bound"
        )
        self._duration = Histogram(
            "js_host_proxy_upstream_duration_seconds",
            "Seconds of each call to a host, answered or not",
            registry=registry,
        )
        self._causes = {cause: self._errors.labels(cause) for cause in CAUSES}
        # (cache, function) -> the labelled counter: labels() costs more than inc().
        self._children: dict[tuple[str, str], Any] = {}
        # Names (as the request's path holds them) the host answered with another status than
        # 404 in this process: the only ones a miss or a refusal is labelled with.
        self._answered: set[str] = set()
        self._live = LiveCollector(backend, health)
        if multiprocess_dir is None:
            registry.register(self._live)

    # -- counting (called on every request: keep it cheap) --------------------------------

    def request(self, cache: str, function: str, status: str) -> None:
        child = self._children.get((cache, function))
        if child is None:
            child = self._child(cache, function, status)
        child.inc()
        if cache == "STALE":
            self._stale.inc()

    def _child(self, cache: str, function: str, status: str) -> Any:
        if status.startswith("404") or (cache not in _STORED and function not in self._answered):
            return self._requests.labels(cache, UNKNOWN)  # not kept: names are the client's
        if len(self._children) >= MAX_FUNCTIONS:
            return self._requests.labels(cache, "_other")
        child = self._children[(cache, function)] = self._requests.labels(cache, function)
        return child

    def host_answered(self, function: str, status: int) -> None:
        """The host answered a call of ``function`` with ``status``: a name it has unless 404."""
        if status != 404 and function not in self._answered and len(self._answered) < MAX_FUNCTIONS:
            self._answered.add(function)

    def coalesced(self) -> None:
        self._coalesced.inc()

    def evicted(self, count: int) -> None:
        self._evictions.inc(count)

    def upstream_answered(self, seconds: float, status: int) -> None:
        self._duration.observe(seconds)
        if status >= 500:
            self._causes["5xx"].inc()

    def upstream_failed(self, seconds: float, cause: str) -> None:
        self._duration.observe(seconds)
        self._causes[cause].inc()

    # -- the scrape ----------------------------------------------------------------------

    def render(self) -> bytes:
        """The text of ``GET /metrics``: every worker's counts, and the gauges measured now."""
        from prometheus_client import CollectorRegistry, generate_latest

        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry(auto_describe=True)
        registry.register(WorkersCollector(self.multiprocess_dir))
        registry.register(self._live)
        return generate_latest(registry)


class WorkersCollector:
    """Every worker's counts: prometheus_client's MultiProcessCollector, less the files a
    worker is making right now (empty for a moment, which its reader cannot parse)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        from prometheus_client.multiprocess import MultiProcessCollector

        files = []
        for path in glob.glob(os.path.join(glob.escape(self.path), "*.db")):
            try:
                if os.stat(path).st_size >= 8:  # its header: the bytes used
                    files.append(path)
            except FileNotFoundError:  # a dead worker's gauges, just removed
                pass
        return MultiProcessCollector.merge(files, accumulate=True)


class LiveCollector:
    """The gauges measured at each scrape: the cache's size and each upstream's health."""

    def __init__(self, backend: CacheBackend, health: UpstreamHealth) -> None:
        self.backend = backend
        self.health = health

    def describe(self) -> list[Any]:
        return []  # collected at scrape time only: nothing to check at registration

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        try:
            entries, size = self.backend.stats()
        except Exception as err:  # e.g. the cache folder gone: the other metrics still answer
            logger.warning("the cache size could not be read: %s", err)
            entries = size = None
        if entries is not None:
            yield GaugeMetricFamily("js_host_proxy_cache_entries", "Entries in the cache", value=entries)
        if size is not None:
            yield GaugeMetricFamily("js_host_proxy_cache_bytes", "Bytes of the cache's entries", value=size)
        up = GaugeMetricFamily(
            "js_host_proxy_upstream_up",
            "1 when the upstream answers GET /health, else 0",
            labels=["upstream"],
        )
        for url, why in self.health.check().items():
            up.add_metric([shown(url)], 0 if why else 1)
        yield up


def multiprocess_dir_from_env() -> str | None:
    value = os.environ.get(MULTIPROC_ENV, "").strip()
    return value or None


def prepare_multiprocess_dir(bind: str) -> str:
    """The multiprocess directory of a server about to start, emptied of an earlier run's
    files (a server's counts start at zero): ``PROMETHEUS_MULTIPROC_DIR`` when set, else a
    folder named after the server's first ``bind``, next to the default file cache
    (``$TMPDIR/js-host-proxy-<uid>/metrics-<bind>``). Either is opened as a private folder
    of this user's (``js_host.private_dir``; made when missing): its ``*.db`` files are
    deleted, and every worker's counts are read from it. Returns its path; raises
    ConfigError naming the setting when the folder is not private."""
    from js_host.exceptions import ConfigError
    from js_host.private_dir import PrivateDir

    given = multiprocess_dir_from_env()
    if given is not None:
        folder = PrivateDir.open(given, what=f"{MULTIPROC_ENV} directory", setting=MULTIPROC_ENV)
    else:
        name = "metrics-" + re.sub(r"[^A-Za-z0-9.-]+", "_", bind)
        tmp = os.path.join(os.environ.get("TMPDIR") or "/tmp", f"js-host-proxy-{os.getuid()}", name)
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        home = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
        try:
            folder = PrivateDir.open(tmp, what="js-host-proxy metrics directory", setting=MULTIPROC_ENV)
        except ConfigError as err:  # another user made the folder first (as for the file cache)
            fallback = os.path.join(home, "js-host-proxy-metrics", name)
            logger.warning("%s; the metrics directory is %r instead", err, fallback)
            folder = PrivateDir.open(fallback, what="js-host-proxy metrics directory", setting=MULTIPROC_ENV)
    with folder:
        for entry in folder.listdir():
            if entry.endswith(".db"):
                folder.unlink(entry, missing_ok=True)
        return folder.path


def remove_multiprocess_dir(path: str) -> None:
    """Remove the directory :func:`prepare_multiprocess_dir` made (gunicorn's ``on_exit``):
    the counts end with the server, and /tmp keeps no folder per port ever used."""
    from js_host.exceptions import ConfigError
    from js_host.private_dir import PrivateDir

    what = "js-host-proxy metrics directory"
    try:
        folder = PrivateDir.open(path, what=what, setting=MULTIPROC_ENV, create=False)
    except (OSError, ConfigError) as err:  # gone already, or no longer ours: leave it
        logger.debug("not removing %r: %s", path, err)
        return
    with folder:
        for entry in folder.listdir():
            if entry.endswith(".db"):
                folder.unlink(entry, missing_ok=True)
    with contextlib.suppress(OSError):  # something else in it: leave it
        os.rmdir(path)


def worker_exited(pid: int) -> None:
    """gunicorn's ``child_exit``: drop the dead worker's live gauges (its counters stay)."""
    path = multiprocess_dir_from_env()
    if path is None:
        return
    try:
        from prometheus_client import multiprocess
    except ImportError:  # the workers count nothing either (observe.py said so)
        return
    multiprocess.mark_process_dead(pid, path)
