"""The client's Prometheus metrics, when ``prometheus_client`` is installed.

``pip install js-host-server[metrics]`` installs it; without it this module does
nothing (no import error, no cost beyond one check per call). The metrics go to
``prometheus_client``'s default registry, so the application's own ``/metrics``
(``prometheus_client.make_wsgi_app()``, django-prometheus, ...) shows them:

- ``js_host_client_calls_total{function,outcome}``: calls of ``Function.call``; outcome
  ``ok`` (an output returned, a local cache hit included), ``error`` (an exception
  raised), ``fallback`` (the host was unavailable and the fallback answered);
- ``js_host_client_call_duration_seconds{function}``: how long each call took, as the
  view saw it (local cache hits and errors included);
- ``js_host_client_errors_total{function,error}``: the exceptions, by class name
  (``FunctionError``, ``FunctionTimeout``, ``ConnectionError``, ``WorkerDied``, ...),
  those a fallback replaced included;
- ``js_host_client_local_cache_hits_total{function}``: calls answered from this
  process's cache (``LOCAL_CACHE_SIZE``), which sent nothing.

Under gunicorn (several worker processes) set ``PROMETHEUS_MULTIPROC_DIR`` before
gunicorn starts, as ``prometheus_client`` documents: each process then writes its
values to files there, and the ``/metrics`` view collects them all with
``prometheus_client.multiprocess.MultiProcessCollector`` (see the README).

Nothing is imported or registered until the first call: importing ``js_host``
stays free of ``prometheus_client``.
"""

from __future__ import annotations

import threading
from typing import Any

#: Seconds: the host's buckets (``js_host_call_duration_seconds``, from 5 ms), below them
#: 1 and 2.5 ms for calls answered over loopback, and 0.1 to 0.5 ms for local cache hits,
#: which take tens of microseconds.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025)
BUCKETS += (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)  # the host's


class _Metrics:
    """The four metrics, and their children per label values (``labels()`` takes a lock
    and validates its arguments: done once per function and outcome, not per call)."""

    def __init__(self, prometheus_client: Any) -> None:
        counter, histogram = prometheus_client.Counter, prometheus_client.Histogram
        self.calls = counter(
            "js_host_client_calls_total", "Function calls, by function and outcome", ["function", "outcome"]
        )
        self.duration = histogram(
            "js_host_client_call_duration_seconds",
            "Time Function.call took, by function",
            ["function"],
            buckets=BUCKETS,
        )
        self.errors = counter(
            "js_host_client_errors_total",
            "Exceptions raised by Function calls (those a fallback replaced included), by class",
            ["function", "error"],
        )
        self.local_hits = counter(
            "js_host_client_local_cache_hits_total",
            "Function calls answered from this process's local cache",
            ["function"],
        )
        self._children: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()

    def child(self, metric: Any, *labels: str) -> Any:
        key = (metric, *labels)
        found = self._children.get(key)
        if found is None:
            with self._lock:
                found = self._children.setdefault(key, metric.labels(*labels))
        return found

    def record(self, function: str, outcome: str, seconds: float, error: str | None, local_hit: bool) -> None:
        self.child(self.calls, function, outcome).inc()
        self.child(self.duration, function).observe(seconds)
        if error is not None:
            self.child(self.errors, function, error).inc()
        if local_hit:
            self.child(self.local_hits, function).inc()


_metrics: _Metrics | None = None
#: None: not looked for yet; then whether prometheus_client could be imported.
_available: bool | None = None
_setup_lock = threading.Lock()


def enabled() -> bool:
    """Whether calls are counted: ``prometheus_client`` is importable (imports it once)."""
    global _metrics, _available
    if _available is None:
        with _setup_lock:
            if _available is None:
                try:
                    import prometheus_client
                except ImportError:
                    _available = False
                else:
                    _metrics = _Metrics(prometheus_client)
                    _available = True
    return bool(_available)


def record_call(function: str, outcome: str, seconds: float, error: str | None, local_hit: bool) -> None:
    """Count one call of ``function`` (see the module docstring for ``outcome``); ``error``:
    the class name of the exception it raised, if any."""
    if _available is False:
        return
    if _available is None and not enabled():
        return
    assert _metrics is not None
    _metrics.record(function, outcome, seconds, error, local_hit)
