"""The status screen's lines, for a person: each host's (``GET /status``, ``/health``,
the calls, workers' heaps and slowest functions from ``/metrics``, its ``lastErrors``),
the proxy's (``/health`` and readiness, the hit ratio, upstreams, the cache), and the
values in them (seconds, counts, sizes, ``key: value`` pairs). The endpoints are read
through :mod:`js_host.metrics_text`; the command around it is :mod:`js_host.stack_status`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from .metrics_text import FunctionTimes, fetch, function_times, function_times_all, parse_metrics

#: Seconds to wait for each endpoint.
DEFAULT_TIMEOUT = 5.0
#: Functions shown under "slowest functions".
SLOWEST = 5
#: X-Cache values that count as answered from the cache in the hit ratio.
HIT_STATES = ("HIT", "STALE")
#: X-Cache values that count as not answered from the cache.
MISS_STATES = ("MISS",)


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
    lines += last_error_lines(status.get("lastErrors"))
    return lines, True


def last_error_lines(errors: object) -> list[str]:
    """A host's ``lastErrors``: each one's time, function, status, kind and request id, and
    its message when the host sends it (its config's ``lastErrorMessages``); else a line
    saying where the messages are. The host's own logfile is private to its user, while
    ``/status?errors`` answers anyone who can reach the port."""
    if not isinstance(errors, list):
        return ["  last errors: not reported by this host (no lastErrors in /status)"]
    if not errors:
        return ["  last errors: none"]
    lines = [f"  last errors ({len(errors)}, newest last):"]
    without_message = False
    for error in errors[-5:]:
        if not isinstance(error, dict):
            continue
        fields = [error.get("time", "?"), error.get("function", "?"), error.get("status", "?")]
        if error.get("kind"):
            fields.append(error["kind"])
        if error.get("requestId"):
            fields.append(f"request id {error['requestId']}")
        lines.append("    " + "  ".join(shown(field) for field in fields))
        if "message" in error:
            lines.append(f"      {shown(error['message'])[:100]}")
        else:
            without_message = True
    if without_message:
        lines.append("    their messages are in the host's logfile, under each request id")
    return lines


def shown(value: object) -> str:
    """``value`` as text for a terminal: a caller's text (a made-up function name, an error
    message) may hold control characters, shown escaped rather than sent to the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(value))


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
