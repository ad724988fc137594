"""The proxy's settings, read from ``JS_HOST_PROXY_*`` environment variables.

Every setting has a default that works on one machine next to a host on
``127.0.0.1:9009``; ``gunicorn_settings.py`` and ``js_host_proxy/README.md``
document them.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from js_host.exceptions import ConfigError
from js_host_proxy.host_check import allowed_hosts

logger = logging.getLogger(__name__)

#: Where the proxy listens unless JS_HOST_PROXY_BIND says otherwise.
DEFAULT_BIND = "127.0.0.1:9010"
#: The host's own default address (js-host 0.11 listens there).
DEFAULT_UPSTREAM = "http://127.0.0.1:9009"
#: Same limit as the host's default requestDataLimit ("10mb").
DEFAULT_MAX_BODY = 10 * 1024 * 1024
#: Largest answer the proxy reads from a host (it holds an answer whole to store it).
DEFAULT_MAX_RESPONSE = 10 * 1024 * 1024
#: Shortest JS_HOST_PROXY_PURGE_TOKEN accepted (guessing must stay out of reach).
MIN_TOKEN = 16
#: Bound of the file and memory caches' entries, in bytes.
DEFAULT_MAX_SIZE = 512 * 1024 * 1024
_UNITS = {"": 1, "b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30}


def parse_size(text: str, setting: str) -> int:
    """Bytes for ``text``: a number, or one with kb/mb/gb (powers of 1024, as the host's
    ``requestDataLimit``); raises ConfigError naming ``setting``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ConfigError(f"{setting}={text!r} is not a size; expected bytes, e.g. 536870912 or 512mb")
    return int(float(match.group(1)) * _UNITS[unit])


def parse_uids(text: str) -> tuple[int, ...]:
    """The user ids of JS_HOST_PROXY_UPSTREAM_UIDS (comma separated), or a ConfigError."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not all(item.isdigit() for item in items):
        raise ConfigError(
            f"JS_HOST_PROXY_UPSTREAM_UIDS={text!r} is not a list of user ids; expected e.g. 999 or "
            "999,1001 (`id -u <user>` prints the uid a host runs as)"
        )
    return tuple(sorted({int(item) for item in items}))


#: The name the proxy gives itself in Cache-Status (RFC 9211 §2: a String or a Token).
DEFAULT_CACHE_NAME = "js-host-proxy"
#: A Structured Fields token (RFC 8941 §3.3.4): the cache name is sent unquoted.
_TOKEN = re.compile(r"[A-Za-z*][A-Za-z0-9!#$%&'*+\-.^_`|~:/]*\Z")


def default_cache_url() -> str:
    """``file://<tmpdir>/js-host-proxy-<uid>/cache``: one folder shared by all
    the workers of this machine (TMPDIR when set, else /tmp).

    When another user has taken ``js-host-proxy-<uid>`` there (anyone can make it
    first in a shared /tmp), the per-user ``$XDG_CACHE_HOME/js-host-proxy`` (else
    ``~/.cache/js-host-proxy``) instead: nobody else can prepare that one.
    """
    tmpdir = os.environ.get("TMPDIR") or "/tmp"
    base = os.path.join(tmpdir, f"js-host-proxy-{os.getuid()}")
    try:
        info = os.lstat(base)
    except OSError:
        return f"file://{base}/cache"  # ours to make (FileCache makes it private)
    if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
        return f"file://{base}/cache"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    home_cache = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    fallback = os.path.join(home_cache, "js-host-proxy")
    logger.warning(
        "%r is not a folder of yours (another user may have made it): the proxy's file cache "
        "is %r instead. Set JS_HOST_PROXY_CACHE to choose.",
        base,
        fallback,
    )
    return f"file://{fallback}"


@dataclass(frozen=True)
class ProxyConfig:
    # Base URLs of the hosts; requests are spread over them, one that is down is skipped.
    upstreams: tuple[str, ...] = (DEFAULT_UPSTREAM,)
    # file:///path (default, shared by the workers of a machine), redis://host:port/db, memory://
    cache_url: str = field(default_factory=default_cache_url)
    # Freshness in seconds when the host says nothing about it (no s-maxage, max-age or
    # Expires; 0: store nothing by default). Used inside the proxy, never written into an answer.
    ttl: float = 300.0
    # How long an expired entry is kept to be served when the host is down (stale-if-error).
    stale_ttl: float = 86400.0
    # Seconds after expiry an entry is served at once while one background call refreshes
    # it, for answers without their own stale-while-revalidate (RFC 5861); 0: off.
    stale_while_revalidate: float = 0.0
    # This proxy's name in the Cache-Status field of its answers (RFC 9211).
    cache_name: str = DEFAULT_CACHE_NAME
    # Part of every cache key, for what the code version cannot know (e.g. a data version).
    namespace: str = ""
    # Bytes of entries the file or memory cache holds at most (0: no bound); past it the
    # least recently used are removed, stale and expired ones first.
    max_size: int = DEFAULT_MAX_SIZE
    # The token of POST /purge (Authorization: Bearer <token>); empty: no such endpoint.
    purge_token: str = field(default="", repr=False)
    # Seconds an upstream's code version is trusted before it is asked again, even
    # while the connection that watches the host stays open.
    version_ttl: float = 60.0
    # Seconds to wait for the host's answer (a function's own timeout is 30 s by default).
    upstream_timeout: float = 35.0
    # Seconds to wait for a connection to the host before trying the next one.
    connect_timeout: float = 2.0
    # Seconds an upstream that refused a connection is skipped.
    retry_down_after: float = 5.0
    # Uids besides the proxy's own and root's that may hold a loopback upstream's port (hosts
    # run as another service user on purpose); another one's listener gets no call (502).
    upstream_uids: tuple[int, ...] = ()
    # Longest wait for another request's identical upstream call (then call it yourself).
    lock_timeout: float = 40.0
    # Largest request body accepted (413 above).
    max_body: int = DEFAULT_MAX_BODY
    # Largest answer read from a host, in bytes: past it the call is a 502 naming this
    # setting, nothing is stored, and no more of the answer is read.
    max_response: int = DEFAULT_MAX_RESPONSE
    # GET /metrics and the counting behind it (JS_HOST_PROXY_METRICS=0: off, nothing counted).
    metrics: bool = True
    # The bearer token GET /metrics then needs (empty: none).
    metrics_token: str = field(default="", repr=False)
    # host:port of a second socket that alone serves /metrics (with /health); empty: the public one.
    metrics_bind: str = ""
    # Host names (no port) a request that arrived on loopback may carry besides localhost,
    # 127.x.x.x and [::1]; others get 403 (DNS rebinding, host_check.py).
    allowed_hosts: tuple[str, ...] = ()
    # The log lines: "text" (gunicorn's) or "json" (one object per line, logs.py).
    log_format: str = "text"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProxyConfig:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(f"JS_HOST_PROXY_{name}")
            return value.strip() if value is not None and value.strip() else None

        def number(name: str, default: float, *, minimum: float = 0.0) -> float:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"JS_HOST_PROXY_{name}={raw!r} is not a number of seconds") from None
            if value < minimum:
                raise ConfigError(f"JS_HOST_PROXY_{name}={raw!r} must be at least {minimum}")
            return value

        def flag(name: str, default: bool) -> bool:
            raw = get(name)
            if raw is None:
                return default
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"JS_HOST_PROXY_{name}={raw!r}: expected 1 or 0")

        upstreams = tuple(u.strip().rstrip("/") for u in (get("UPSTREAM") or DEFAULT_UPSTREAM).split(","))
        for url in upstreams:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
                raise ConfigError(
                    f"JS_HOST_PROXY_UPSTREAM: {url!r} is not a host's base URL; "
                    "expected e.g. http://127.0.0.1:9009 (several separated by commas)"
                )
        upstream_timeout = number("UPSTREAM_TIMEOUT", cls.upstream_timeout, minimum=0.001)
        config = cls(
            upstreams=upstreams,
            cache_url=get("CACHE") or default_cache_url(),
            ttl=number("TTL", cls.ttl),
            stale_ttl=number("STALE_TTL", cls.stale_ttl),
            stale_while_revalidate=number("STALE_WHILE_REVALIDATE", cls.stale_while_revalidate),
            cache_name=get("CACHE_NAME") or DEFAULT_CACHE_NAME,
            namespace=get("NAMESPACE") or "",
            max_size=parse_size(get("MAX_SIZE") or str(cls.max_size), "JS_HOST_PROXY_MAX_SIZE"),
            version_ttl=number("VERSION_TTL", cls.version_ttl),
            purge_token=get("PURGE_TOKEN") or "",
            upstream_timeout=upstream_timeout,
            connect_timeout=number("CONNECT_TIMEOUT", cls.connect_timeout, minimum=0.001),
            retry_down_after=number("RETRY_DOWN_AFTER", cls.retry_down_after),
            upstream_uids=parse_uids(get("UPSTREAM_UIDS") or ""),
            lock_timeout=number("LOCK_TIMEOUT", upstream_timeout + 5),
            max_body=int(number("MAX_BODY", cls.max_body, minimum=1)),
            max_response=int(number("MAX_RESPONSE", cls.max_response, minimum=1)),
            metrics=flag("METRICS", cls.metrics),
            metrics_token=get("METRICS_TOKEN") or "",
            metrics_bind=get("METRICS_BIND") or "",
            allowed_hosts=allowed_hosts(get("ALLOWED_HOSTS") or ""),
            log_format=(get("LOG_FORMAT") or "text").lower(),
        )
        config.check_cache_url()
        _check_token("JS_HOST_PROXY_PURGE_TOKEN", config.purge_token)
        config.check_cache_name()
        config.check_observability()
        return config

    def check_observability(self) -> None:
        _check_token("JS_HOST_PROXY_METRICS_TOKEN", self.metrics_token)
        if self.metrics_bind and split_bind(self.metrics_bind) is None:
            raise ConfigError(
                f"JS_HOST_PROXY_METRICS_BIND={self.metrics_bind!r} is not host:port "
                "(e.g. 127.0.0.1:9110 or 0.0.0.0:9110; not a unix socket)"
            )
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"JS_HOST_PROXY_LOG_FORMAT={self.log_format!r}: expected text or json")

    def check_cache_url(self) -> None:
        scheme = urlsplit(self.cache_url).scheme
        if scheme not in ("file", "redis", "rediss", "unix", "memory"):
            raise ConfigError(
                f"JS_HOST_PROXY_CACHE={self.cache_url!r}: expected file:///path, "
                "redis://host:port/db or memory://"
            )

    def check_cache_name(self) -> None:
        if not _TOKEN.match(self.cache_name):
            raise ConfigError(
                f"JS_HOST_PROXY_CACHE_NAME={self.cache_name!r} is not a token (RFC 8941 §3.3.4): "
                "use letters, digits and -._:/ starting with a letter, e.g. js-host-proxy or web-1"
            )


def _check_token(setting: str, token: str) -> None:
    """Refuse a bearer token (``setting``'s value; empty: none) too short to resist guessing."""
    if token and len(token) < MIN_TOKEN:
        raise ConfigError(
            f"{setting} is {len(token)} characters long: use at least "
            f"{MIN_TOKEN} random ones (e.g. python3 -c 'import secrets; print(secrets.token_hex(16))')"
        )


def split_bind(bind: str) -> tuple[str, int] | None:
    """(host, port) of a TCP ``host:port`` bind (``[::1]:9110`` too); None for anything else."""
    match = re.fullmatch(r"\[?([^\[\]/]*?)\]?:(\d{1,5})", bind.strip())
    if match is None or not 0 < int(match.group(2)) < 65536 or bind.startswith(("unix:", "fd://")):
        return None
    return match.group(1), int(match.group(2))
