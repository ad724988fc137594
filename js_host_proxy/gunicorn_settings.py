"""gunicorn settings for js-host-proxy, the caching reverse proxy in front of js-host.

The defaults, shipped inside the package: ``js-host-proxy serve`` runs gunicorn with this
module (``--config python:js_host_proxy.gunicorn_settings``) unless given ``--gunicorn-conf``.
Operators change settings in the project's top-level ``gunicorn.conf.py``, which imports
this module and overrides what it needs. Every setting can be changed from the environment;
the proxy's own settings (JS_HOST_PROXY_UPSTREAM, _CACHE, _TTL, _NAMESPACE, ...) are read
by the app in each worker and are listed below too. See js_host_proxy/README.md.
"""

from __future__ import annotations

import os


def _env(name, default):
    value = os.environ.get(name, "").strip()
    return value if value else default


# ---------------------------------------------------------------------------------------
# The proxy (read by js_host_proxy.config in each worker; listed here as documentation)
# ---------------------------------------------------------------------------------------
#   JS_HOST_PROXY_UPSTREAM          host base URL(s), comma separated   http://127.0.0.1:9009
#                                   (round-robin; one that refuses connections is skipped)
#   JS_HOST_PROXY_CACHE             file:///path | redis://host:port/db | memory://
#                                   default file://$TMPDIR/js-host-proxy-<uid>/cache (TMPDIR or /tmp);
#                                   $XDG_CACHE_HOME/js-host-proxy (~/.cache/...) if another user took it
#   JS_HOST_PROXY_TTL               seconds fresh when the host says nothing about       300
#                                   freshness (no s-maxage, max-age, Expires)
#   JS_HOST_PROXY_STALE_TTL         seconds an expired entry may still be served while
#                                   the host is down (stale-if-error)                    86400
#   JS_HOST_PROXY_STALE_WHILE_REVALIDATE  seconds after expiry an entry is served at     0
#                                   once while one background call refreshes it, for
#                                   answers without their own stale-while-revalidate=N
#   JS_HOST_PROXY_CACHE_NAME        the proxy's name in Cache-Status (RFC 9211)          js-host-proxy
#   JS_HOST_PROXY_NAMESPACE         part of every key, for what the code version         ""
#                                   cannot know (e.g. a data version)
#   JS_HOST_PROXY_MAX_SIZE          bytes of entries the file/memory cache keeps         512mb
#   JS_HOST_PROXY_VERSION_TTL       seconds a host's code version is trusted at most     60
#   JS_HOST_PROXY_PURGE_TOKEN       bearer token that enables POST /purge                ""
#   JS_HOST_PROXY_ALLOWED_HOSTS     Host names (comma separated, no port) a request on   ""
#                                   loopback may name besides localhost, 127.x, [::1]
#   JS_HOST_PROXY_UPSTREAM_TIMEOUT  seconds to wait for the host's answer (then 504)     35
#   JS_HOST_PROXY_CONNECT_TIMEOUT   seconds to wait for a connection (then next host)    2
#   JS_HOST_PROXY_RETRY_DOWN_AFTER  seconds a host that refused a connection is skipped  5
#   JS_HOST_PROXY_UPSTREAM_UIDS     uids besides yours and root's that may hold a        ""
#                                   loopback host's port, comma separated (else 502)
#   JS_HOST_PROXY_LOCK_TIMEOUT      longest wait for an identical call in flight         UPSTREAM_TIMEOUT + 5
#   JS_HOST_PROXY_MAX_BODY          largest request body in bytes (then 413)             10485760
#   JS_HOST_PROXY_MAX_RESPONSE      largest answer read from a host in bytes (then 502)  10485760
#   JS_HOST_PROXY_METRICS           1: count, and serve GET /metrics; 0: neither          1
#   JS_HOST_PROXY_METRICS_TOKEN     bearer token GET /metrics then needs                 ""
#   JS_HOST_PROXY_METRICS_BIND      host:port of a second socket that alone serves       ""
#                                   /metrics (and /health); bound below, next to BIND
#   JS_HOST_PROXY_LOG_FORMAT        text | json (one JSON object per line, logs.py)      text
#   PROMETHEUS_MULTIPROC_DIR        where the workers' counts are kept (emptied at start) a private
#                                   $TMPDIR/js-host-proxy-<uid>/metrics-<bind>

# What on_starting made for this server (the metrics directory), for on_exit.
_made = {}

# The app is created in each worker on first use, from the environment above.
wsgi_app = "js_host_proxy.wsgi:app"

# ---------------------------------------------------------------------------------------
# Server socket
# ---------------------------------------------------------------------------------------
# Loopback by default: put the proxy on a public address on purpose (e.g. 0.0.0.0:9010 in
# a container), never by accident.
bind = [_env("JS_HOST_PROXY_BIND", "127.0.0.1:9010")]
# GET /metrics off the public port: the app serves it on this socket only (observe.py).
if _env("JS_HOST_PROXY_METRICS_BIND", ""):
    bind.append(_env("JS_HOST_PROXY_METRICS_BIND", ""))
backlog = int(_env("JS_HOST_PROXY_BACKLOG", "2048"))

# ---------------------------------------------------------------------------------------
# Worker processes
# ---------------------------------------------------------------------------------------
# Hits cost CPU, misses mostly wait on the host: one process per core, threads for the waits.
# gthread also keeps client connections alive (the sync worker closes each one, and one slow
# call would hold a whole sync worker). Measured on 2 cores with wrk (16 kept-alive
# connections, bench/proxy_gunicorn.py): 2 workers x 16 threads, 2 x 4, 3 x 4, 4 x 2 and
# sync all serve hits within the machine's noise of each other, so the defaults favour
# misses: 16 threads let 16 calls per worker wait on the host at once. More workers than
# cores only add processes contending for the same CPU.
workers = int(_env("JS_HOST_PROXY_WORKERS", str(os.cpu_count() or 1)))
# gthread that hands a connection to a thread only once its request has arrived whole (see
# "Slow clients" below); "gthread" is gunicorn's own, whose threads slow clients can hold.
worker_class = _env("JS_HOST_PROXY_WORKER_CLASS", "js_host_proxy.worker.DeadlineThreadWorker")
threads = int(_env("JS_HOST_PROXY_THREADS", "16"))
# A worker silent this long is restarted; must exceed JS_HOST_PROXY_UPSTREAM_TIMEOUT only with
# the sync worker (gthread keeps its heartbeat while threads wait on the host).
timeout = int(_env("JS_HOST_PROXY_WORKER_TIMEOUT", "60"))
graceful_timeout = int(_env("JS_HOST_PROXY_GRACEFUL_TIMEOUT", "30"))
# Seconds an idle client connection is kept open (clients keep one session per process).
keepalive = int(_env("JS_HOST_PROXY_KEEPALIVE", "15"))
# Recycle workers now and then (0: never); jitter spreads the restarts.
max_requests = int(_env("JS_HOST_PROXY_MAX_REQUESTS", "0"))
max_requests_jitter = int(_env("JS_HOST_PROXY_MAX_REQUESTS_JITTER", "0"))

# ---------------------------------------------------------------------------------------
# Slow clients (js_host_proxy.worker.DeadlineThreadWorker; handed to it by post_fork below)
# ---------------------------------------------------------------------------------------
# The worker reads each request in its event loop, without blocking, and a thread handles it
# once complete; the event loop sends the answer: a client that trickles its request, or does
# not read its answer, holds a connection, never a thread.
# Seconds from the connection (or a kept-alive one's first byte) to the end of the request
# head, then from there to the end of the body; then 408 and closed.
header_timeout = float(_env("JS_HOST_PROXY_HEADER_TIMEOUT", "10"))
body_timeout = float(_env("JS_HOST_PROXY_BODY_TIMEOUT", "30"))
# Largest request head in bytes (then 431); body bytes a worker buffers for requests still
# arriving, all connections together (then 503). Bodies are bounded by JS_HOST_PROXY_MAX_BODY.
max_head = int(_env("JS_HOST_PROXY_MAX_HEAD", "65536"))
max_buffered = int(_env("JS_HOST_PROXY_MAX_BUFFERED", str(64 * 1024 * 1024)))
# Seconds a client has to take all of an answer once it is ready (a total, however slowly it
# reads); then its connection is closed.
send_timeout = float(_env("JS_HOST_PROXY_SEND_TIMEOUT", "30"))
# Bytes of answers a worker holds for clients that have not taken them, all connections
# together; past it, the connections whose answers have waited longest are closed.
max_unsent = int(_env("JS_HOST_PROXY_MAX_UNSENT", str(64 * 1024 * 1024)))
# Connections a worker holds at once, slow ones included (gunicorn's worker_connections).
worker_connections = int(_env("JS_HOST_PROXY_WORKER_CONNECTIONS", "1000"))

# ---------------------------------------------------------------------------------------
# Logging
# ---------------------------------------------------------------------------------------
# Errors and the proxy's own log (upstream down, cache unreachable) go to stderr.
errorlog = _env("JS_HOST_PROXY_ERROR_LOG", "-")
loglevel = _env("JS_HOST_PROXY_LOG_LEVEL", "info")
# No access log by default: it costs a fair share of a cache hit. "-" for stdout.
accesslog = _env("JS_HOST_PROXY_ACCESS_LOG", "") or None
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms cache=%({x-cache}o)s id=%({x-request-id}o)s'
# JS_HOST_PROXY_LOG_FORMAT=json: every line of both logs is one JSON object (logs.py).
logger_class = "js_host_proxy.gunicorn_logger.ProxyLogger"
proc_name = "js-host-proxy"

# ---------------------------------------------------------------------------------------
# Server hooks
# ---------------------------------------------------------------------------------------


def on_starting(server):
    """Master process, before the workers start: check the settings once, so that a bad
    one stops the start with one clear message instead of failing in every worker, and
    send the proxy's log lines where gunicorn's error log goes."""
    import logging

    from js_host_proxy.config import ProxyConfig

    proxy_log = logging.getLogger("js_host_proxy")
    proxy_log.handlers = list(server.log.error_log.handlers)
    proxy_log.setLevel(server.log.error_log.level)
    proxy_log.propagate = False
    from js_host.exceptions import ConfigError

    try:
        config = ProxyConfig.from_env()
    except ConfigError as err:
        server.log.error("js-host-proxy: %s", err)
        raise SystemExit(1) from None
    server.log.info(
        "js-host-proxy: upstream %s, cache %s, ttl %gs, namespace %r",
        ", ".join(config.upstreams),
        config.cache_url,
        config.ttl,
        config.namespace,
    )
    if config.metrics:
        # Before any worker exists (they inherit the variable), and emptied: a server's
        # counts start at zero.
        from js_host_proxy.metrics import MULTIPROC_ENV, prepare_multiprocess_dir

        given = os.environ.get(MULTIPROC_ENV, "").strip()
        try:
            os.environ[MULTIPROC_ENV] = prepare_multiprocess_dir(server.cfg.bind[0])
        except (ConfigError, OSError) as err:
            server.log.error("js-host-proxy: the metrics directory: %s (or JS_HOST_PROXY_METRICS=0)", err)
            raise SystemExit(1) from None
        if not given:
            _made["metrics_dir"] = os.environ[MULTIPROC_ENV]  # ours: removed by on_exit
        server.log.info("js-host-proxy: metrics in %s", os.environ[MULTIPROC_ENV])


def post_fork(server, worker):
    """Worker process, just forked: the slow-client limits above, for the worker class."""
    if not hasattr(worker, "client_limits"):
        return  # another worker class (JS_HOST_PROXY_WORKER_CLASS)
    from js_host_proxy.config import ProxyConfig
    from js_host_proxy.request_reader import ClientLimits

    worker.client_limits = ClientLimits(
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        max_head=max_head,
        max_body=ProxyConfig.from_env().max_body,
        max_buffered=max_buffered,
        send_timeout=send_timeout,
        max_unsent=max_unsent,
    )


def on_exit(server):
    """Master process, the server stopping: remove the metrics directory it made."""
    if _made.get("metrics_dir"):
        from js_host_proxy.metrics import remove_multiprocess_dir

        remove_multiprocess_dir(_made.pop("metrics_dir"))


def child_exit(server, worker):
    """Master process, a worker gone (exited or killed): its live gauges go; its counts stay."""
    from js_host_proxy.metrics import worker_exited

    worker_exited(worker.pid)


def worker_exit(server, worker):
    """Worker process, as it exits: close the app's connections (hosts, Redis)."""
    import sys

    wsgi = sys.modules.get("js_host_proxy.wsgi")
    app = getattr(wsgi, "__dict__", {}).get("app") if wsgi is not None else None
    if app is not None:
        app.close()
