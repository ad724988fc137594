"""A running stack's state on one screen, for a person: ``python -m js_host status`` and
``js-host-proxy status``.

For each host: what ``GET /status`` says (versions, functions, the pool's workers and
restarts, its ``lastErrors``), ``GET /health``, and from ``GET /metrics`` the calls by
status, the slowest functions (mean, p50 and p99 estimated from the duration histogram
as PromQL's ``histogram_quantile`` does) and the event loop's delay. For the proxy:
``/health`` and readiness, and from its ``/metrics`` the hit ratio (``HIT`` and ``STALE``
answers over those and ``MISS``: ``BYPASS`` requests are not cacheable), the upstreams
up or down, upstream errors, the cache's size. An endpoint that is missing (js-host 0.11
from npm has no ``/metrics`` and no ``/health``) or unreachable gives a line saying so.

The ``/metrics`` texts are parsed with ``prometheus_client``'s parser (``pip install
js-host-server[metrics]``); without it the rest is still shown.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .endpoint import request
from .exceptions import JSHostError
from .transport import Response

#: Seconds to wait for each endpoint.
DEFAULT_TIMEOUT = 5.0
#: Functions shown under "slowest functions".
SLOWEST = 5
#: X-Cache values that count as answered from the cache in the hit ratio.
HIT_STATES = ("HIT", "STALE")
#: X-Cache values that count as not answered from the cache.
MISS_STATES = ("MISS",)

Sample = tuple[str, dict[str, str], float]


@dataclass
class Fetched:
    """One GET: its answer, or why there is none."""

    path: str
    response: Response | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.response is not None and self.response.status == 200

    def why_not(self) -> str:
        """Why there is nothing to read: unreachable, or the status it answered."""
        if self.response is None:
            return f"not reachable ({self.error})"
        first = self.response.text.strip().splitlines()[:1]
        return f"answered {self.response.status}" + (f": {first[0][:120]}" if first else "")


def fetch(url: str, path: str, *, timeout: float, token: str = "") -> Fetched:
    headers = f"Authorization: Bearer {token}\r\n".encode() if token else b""
    try:
        return Fetched(path, request(url, "GET", path, headers=headers, timeout=timeout))
    except (JSHostError, OSError) as err:
        return Fetched(path, error=str(err).splitlines()[0] if str(err) else type(err).__name__)


@dataclass
class Metrics:
    """A ``/metrics`` text's samples, or why there are none."""

    samples: list[Sample] = field(default_factory=list)
    missing: str = ""  # why there are no samples (empty: read)

    def values(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        return [
            (sample_labels, value)
            for sample_name, sample_labels, value in self.samples
            if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
        ]

    def total(self, name: str, **labels: str) -> float:
        return sum(value for _, value in self.values(name, **labels))

    def by(self, name: str, label: str) -> dict[str, float]:
        """The sums of ``name``'s samples per value of ``label``."""
        sums: dict[str, float] = {}
        for labels, value in self.values(name):
            key = labels.get(label, "")
            sums[key] = sums.get(key, 0.0) + value
        return sums

    def has(self, name: str) -> bool:
        return any(sample_name == name for sample_name, _, _ in self.samples)


def parse_metrics(fetched: Fetched, what: str) -> Metrics:
    """The samples of a fetched ``/metrics``; ``what`` names the server in the reason."""
    if not fetched.ok:
        assert fetched.response is None or fetched.response.status != 200
        if fetched.response is not None and fetched.response.status == 404:
            return Metrics(missing=f"{what} has no /metrics (it answered 404, as js-host 0.11 from npm does)")
        return Metrics(missing=f"/metrics {fetched.why_not()}")
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError:
        return Metrics(missing="/metrics not read: pip install js-host-server[metrics] (prometheus_client)")
    assert fetched.response is not None
    try:
        samples = [
            (sample.name, dict(sample.labels), float(sample.value))
            for family in text_string_to_metric_families(fetched.response.text)
            for sample in family.samples
        ]
    except ValueError as err:
        return Metrics(missing=f"/metrics is not in the Prometheus text format ({err})")
    return Metrics(samples)


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The ``q`` quantile of cumulative ``(upper bound, count)`` buckets, interpolated
    linearly inside its bucket as PromQL's ``histogram_quantile`` does; None when empty.
    In the ``+Inf`` bucket: the largest finite bound (the quantile is at least that)."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if bound == float("inf"):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


@dataclass
class FunctionTimes:
    name: str
    calls: float
    mean: float
    p50: float | None
    p99: float | None


def function_times(metrics: Metrics, histogram: str) -> list[FunctionTimes]:
    """Per function of ``histogram`` (a ``{function}`` histogram), slowest mean first."""
    counts = metrics.by(f"{histogram}_count", "function")
    sums = metrics.by(f"{histogram}_sum", "function")
    buckets: dict[str, list[tuple[float, float]]] = {}
    for labels, value in metrics.values(f"{histogram}_bucket"):
        buckets.setdefault(labels.get("function", ""), []).append((float(labels.get("le", "inf")), value))
    times = []
    for name, calls in counts.items():
        if calls <= 0:
            continue
        merged = _merge_buckets(buckets.get(name, []))
        times.append(
            FunctionTimes(
                name,
                calls,
                sums.get(name, 0.0) / calls,
                histogram_quantile(0.5, merged),
                histogram_quantile(0.99, merged),
            )
        )
    return sorted(times, key=lambda t: -t.mean)


def _merge_buckets(buckets: list[tuple[float, float]]) -> list[tuple[float, float]]:
    # The same bound may come several times (other labels): their counts add up.
    merged: dict[float, float] = {}
    for bound, count in buckets:
        merged[bound] = merged.get(bound, 0.0) + count
    return sorted(merged.items())


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def count(value: float) -> str:
    return f"{int(value):,}" if value == int(value) else f"{value:,.1f}"


def size(value: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def pairs(values: dict[str, float]) -> str:
    """``key: value, ...`` in key order, without the zeros (and without thousands
    separators, which would read as more pairs)."""
    return ", ".join(
        f"{key or '?'}: {count(value).replace(',', '')}" for key, value in sorted(values.items()) if value
    )


def host_lines(url: str, *, timeout: float) -> tuple[list[str], bool]:
    """The lines about the host at ``url``, and whether it answered ``/status``."""
    status_answer = fetch(url, "/status?errors", timeout=timeout)
    if not status_answer.ok:
        return [f"host {url}: {status_answer.why_not()}"], False
    assert status_answer.response is not None
    try:
        status: dict[str, Any] = json.loads(status_answer.response.body)
        if not isinstance(status, dict):
            raise ValueError("not an object")
    except ValueError:
        return [f"host {url}: /status is not a js-host status: {status_answer.response.text[:120]!r}"], False
    health = fetch(url, "/health", timeout=timeout)
    if health.ok:
        healthy = "healthy"
    elif health.response is not None and health.response.status == 404:
        healthy = "no /health"
    else:
        healthy = f"/health {health.why_not()}"
    version = status.get("packageVersion") or status.get("version") or "?"
    about = [f"js-host {version}"]
    if status.get("codeVersion"):
        about.append(f"code version {status['codeVersion']}")
    lines = [f"host {url}: up, {healthy} ({', '.join(about)})"]
    functions = sorted((status.get("config") or {}).get("functions") or [])
    shown = ", ".join(functions[:8]) + (f" (+{len(functions) - 8})" if len(functions) > 8 else "")
    lines.append(f"  functions: {shown or 'none'}")
    workers = status.get("workers")
    if isinstance(workers, dict):
        restarts = {k: float(v) for k, v in (workers.get("restarts") or {}).items() if isinstance(v, int)}
        line = (
            f"  workers: {workers.get('ready', '?')} ready of {workers.get('size', '?')}, "
            f"{workers.get('busy', '?')} busy, queue {workers.get('queue', '?')}; "
            f"restarts {count(sum(restarts.values()))}"
        )
        if any(restarts.values()):
            line += f" ({pairs(restarts)})"
        if workers.get("loadedAt"):
            line += f"; code loaded {workers['loadedAt']}"
        lines.append(line)
    else:
        lines.append("  workers: none (a single process)")
    metrics = parse_metrics(fetch(url, "/metrics", timeout=timeout), "this host")
    if metrics.missing:
        lines.append(f"  metrics: {metrics.missing}")
    else:
        calls = metrics.by("js_host_calls_total", "status")
        lines.append(f"  calls: {count(sum(calls.values()))}" + (f" ({pairs(calls)})" if calls else ""))
        delay = metrics.values("js_host_event_loop_delay_seconds", quantile="0.99")
        if delay:
            lines[-1] += f"; event loop delay p99 {seconds(delay[0][1])}"
        heaps = metrics.values("js_host_worker_heap_used_bytes")
        if heaps:
            shown = sorted(heaps, key=lambda item: -item[1])[:4]
            lines.append(
                "  heap used: "
                + ", ".join(f"worker {labels.get('worker', '?')} {size(value)}" for labels, value in shown)
                + (f" (+{len(heaps) - 4} workers)" if len(heaps) > 4 else "")
            )
        lines += slowest_lines(function_times(metrics, "js_host_call_duration_seconds"))
    errors = status.get("lastErrors")
    if isinstance(errors, list) and errors:
        lines.append(f"  last errors ({len(errors)}, newest last):")
        for error in errors[-5:]:
            if isinstance(error, dict):
                lines.append(
                    f"    {error.get('time', '?')}  {error.get('function', '?')}  "
                    f"{error.get('status', '?')}  {str(error.get('message', ''))[:100]}"
                )
    elif isinstance(errors, list):
        lines.append("  last errors: none")
    else:
        lines.append("  last errors: not reported by this host (no lastErrors in /status)")
    return lines, True


def slowest_lines(times: list[FunctionTimes]) -> list[str]:
    if not times:
        return ["  slowest functions: no calls yet"]
    width = max(8, *(len(t.name) for t in times[:SLOWEST]))
    lines = [
        f"  slowest functions ({len(times)} called, by mean time):",
        f"    {'function':{width}}  {'mean':>9} {'p50':>9} {'p99':>9} {'calls':>8}",
    ]
    for t in times[:SLOWEST]:
        lines.append(
            f"    {t.name:{width}}  {seconds(t.mean):>9} {seconds(t.p50):>9} {seconds(t.p99):>9} "
            f"{count(t.calls):>8}"
        )
    return lines


def proxy_lines(
    url: str, *, timeout: float, metrics_url: str = "", token: str = ""
) -> tuple[list[str], bool]:
    """The lines about the proxy at ``url`` (its ``/metrics`` at ``metrics_url`` when
    given), and whether it answered."""
    live = fetch(url, "/health", timeout=timeout)
    if live.response is None:
        return [f"proxy {url}: {live.why_not()}"], False
    if live.response.status == 404:
        state = "up (no /health: an older proxy)"
    elif live.ok:
        ready = fetch(url, "/health?ready", timeout=timeout)
        state = "up, ready" if ready.ok else f"up, not ready (/health?ready {ready.why_not()})"
    else:
        state = f"/health {live.why_not()}"
    lines = [f"proxy {url}: {state}"]
    metrics = parse_metrics(fetch(metrics_url or url, "/metrics", timeout=timeout, token=token), "this proxy")
    if metrics.missing:
        lines.append(f"  metrics: {metrics.missing}")
        return lines, True
    requests = metrics.by("js_host_proxy_requests_total", "cache")
    hits = sum(v for k, v in requests.items() if k in HIT_STATES)
    misses = sum(v for k, v in requests.items() if k in MISS_STATES)
    ratio = (
        f"hit ratio {hits / (hits + misses):.1%}" if hits + misses else "hit ratio - (no cacheable requests)"
    )
    lines.append(
        f"  requests: {count(sum(requests.values()))}, {ratio}"
        + (f" ({pairs(requests)})" if requests else "")
    )
    ups = metrics.values("js_host_proxy_upstream_up")
    if ups:
        lines.append(
            "  upstreams: "
            + ", ".join(f"{labels.get('upstream', '?')} {'up' if value else 'DOWN'}" for labels, value in ups)
        )
    errors = metrics.by("js_host_proxy_upstream_errors_total", "cause")
    others = []
    for name, label in (
        ("js_host_proxy_coalesced_waiters_total", "coalesced waiters"),
        ("js_host_proxy_stale_answers_total", "stale answers"),
    ):
        if metrics.has(name):
            others.append(f"{label} {count(metrics.total(name))}")
    lines.append(
        f"  upstream errors: {pairs(errors) or 'none'}" + (f"; {', '.join(others)}" if others else "")
    )
    upstream = function_times_all(metrics, "js_host_proxy_upstream_duration_seconds")
    if upstream is not None:
        lines.append(
            f"  upstream calls: {count(upstream.calls)}, mean {seconds(upstream.mean)}, "
            f"p50 {seconds(upstream.p50)}, p99 {seconds(upstream.p99)}"
        )
    if metrics.has("js_host_proxy_cache_entries"):
        lines.append(
            f"  cache: {count(metrics.total('js_host_proxy_cache_entries'))} entries, "
            f"{size(metrics.total('js_host_proxy_cache_bytes'))}, "
            f"{count(metrics.total('js_host_proxy_cache_evictions_total'))} evictions"
        )
    return lines, True


def function_times_all(metrics: Metrics, histogram: str) -> FunctionTimes | None:
    """All of ``histogram``'s samples as one (None without any)."""
    calls = metrics.total(f"{histogram}_count")
    if not calls:
        return None
    buckets = [
        (float(labels.get("le", "inf")), value) for labels, value in metrics.values(f"{histogram}_bucket")
    ]
    merged = _merge_buckets(buckets)
    return FunctionTimes(
        "",
        calls,
        metrics.total(f"{histogram}_sum") / calls,
        histogram_quantile(0.5, merged),
        histogram_quantile(0.99, merged),
    )


def report(
    hosts: Sequence[str],
    proxy: str | None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    proxy_metrics: str = "",
    token: str = "",
) -> tuple[list[str], bool]:
    """The whole screen, and whether every server answered."""
    lines = [f"js-host status, {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}"]
    answered = True
    for url in hosts:
        found, ok = host_lines(url, timeout=timeout)
        lines += found
        answered = answered and ok
    if proxy:
        found, ok = proxy_lines(proxy, timeout=timeout, metrics_url=proxy_metrics, token=token)
        lines += found
        answered = answered and ok
    return lines, answered


def add_arguments(parser: argparse.ArgumentParser, *, host_default: str, proxy_default: str | None) -> None:
    parser.add_argument(
        "--host",
        action="append",
        metavar="URL",
        help=f"a host's root URL; repeat it or separate URLs with commas (default: {host_default})",
    )
    parser.add_argument(
        "--proxy", metavar="URL", help=f"the proxy's root URL (default: {proxy_default or 'none, not shown'})"
    )
    parser.add_argument(
        "--proxy-metrics", metavar="URL", help="where the proxy's /metrics is, if not at --proxy"
    )
    parser.add_argument(
        "--token",
        default="",
        help="bearer token for the proxy's /metrics, if it asks for one (default: "
        "$JS_HOST_PROXY_METRICS_TOKEN, which, unlike --token, ps does not show)",
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds to wait for each endpoint"
    )


def run(args: argparse.Namespace, *, default_hosts: Sequence[str], default_proxy: str | None) -> int:
    """Print the screen for parsed ``args``; exit status 1 when a server did not answer."""
    hosts = [url.strip().rstrip("/") for given in (args.host or default_hosts) for url in given.split(",")]
    proxy = (args.proxy or default_proxy or "").rstrip("/") or None
    lines, answered = report(
        [url for url in hosts if url],
        proxy,
        timeout=args.timeout,
        proxy_metrics=(args.proxy_metrics or "").rstrip("/"),
        # The environment's token, too: one given with --token shows in ps.
        token=args.token or os.environ.get("JS_HOST_PROXY_METRICS_TOKEN", ""),
    )
    print("\n".join(lines))
    return 0 if answered else 1
