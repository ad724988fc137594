"""What a running server's endpoints answer, read for the status screen
(:mod:`js_host.stack_status`): one GET's answer or why there is none, a ``/metrics``
text's samples (summed by label), and per-function times estimated from a duration
histogram as PromQL's ``histogram_quantile`` does.

The ``/metrics`` texts are parsed with ``prometheus_client``'s parser (``pip install
js-host-server[metrics]``); without it, or when a server has no ``/metrics``, a
:class:`Metrics` without samples says why, so the rest of the screen is still shown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .endpoint import request
from .exceptions import JSHostError
from .transport import Response

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
