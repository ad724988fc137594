"""A running stack's state on one screen, for a person: ``js-host-proxy status`` and
``python -P -m js_host status`` (``-P``, Python 3.11+: the current folder stays off
``sys.path``, see :mod:`js_host.__main__`).

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

This module is the command: its options (:func:`add_arguments`) and :func:`run`. The
screen's lines are built in :mod:`js_host.status_report` from the endpoints as
:mod:`js_host.metrics_text` reads them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from .status_report import DEFAULT_TIMEOUT, report


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
