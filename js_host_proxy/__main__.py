"""``js-host-proxy`` / ``python -m js_host_proxy``: run the proxy, or purge its cache.

    js-host-proxy serve [--upstream URL[,URL]] [--bind ADDR] [--cache URL] [--workers N] ...
    js-host-proxy purge [--namespace NS] [--expired] [--cache URL]

``serve`` runs gunicorn with ``gunicorn.conf.py`` (the one in the current folder, else
the project's); its options set the matching ``JS_HOST_PROXY_*`` variables.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from js_host.exceptions import ConfigError

#: serve's options and the environment variables they set.
SERVE_OPTIONS = {
    "upstream": ("JS_HOST_PROXY_UPSTREAM", "host base URL(s), comma separated"),
    "bind": ("JS_HOST_PROXY_BIND", "address to listen on (default 127.0.0.1:9010)"),
    "cache": ("JS_HOST_PROXY_CACHE", "file:///path, redis://host:port/db or memory://"),
    "ttl": ("JS_HOST_PROXY_TTL", "seconds fresh when the host sends no Cache-Control"),
    "namespace": ("JS_HOST_PROXY_NAMESPACE", "part of every cache key (separates deploys)"),
    "workers": ("JS_HOST_PROXY_WORKERS", "worker processes (default: one per core)"),
    "threads": ("JS_HOST_PROXY_THREADS", "threads per worker"),
    "upstream_timeout": ("JS_HOST_PROXY_UPSTREAM_TIMEOUT", "seconds to wait for the host"),
}


def find_gunicorn_conf(explicit: str | None = None) -> Path:
    candidates = [Path(explicit)] if explicit else [Path.cwd() / "gunicorn.conf.py"]
    if not explicit:
        candidates.append(Path(__file__).resolve().parents[1] / "gunicorn.conf.py")
    for path in candidates:
        if path.is_file():
            return path
    raise ConfigError(
        f"no gunicorn config at {', '.join(map(str, candidates))}: run from the project root "
        "or pass --gunicorn-conf PATH"
    )


def serve(args: argparse.Namespace) -> int:
    for option, (variable, _) in SERVE_OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            os.environ[variable] = str(value)
    conf = find_gunicorn_conf(args.gunicorn_conf)
    from gunicorn.app.wsgiapp import run

    sys.argv = ["gunicorn", "--config", str(conf)]
    run()  # gunicorn exits the process itself
    return 0


def purge(args: argparse.Namespace) -> int:
    from js_host_proxy.cache.factory import open_cache
    from js_host_proxy.config import ProxyConfig

    config = ProxyConfig.from_env()
    cache_url = args.cache or config.cache_url
    backend = open_cache(cache_url)
    try:
        if args.expired:
            from js_host_proxy.cache.file import FileCache

            if not isinstance(backend, FileCache):
                print("js-host-proxy purge --expired: only the file cache needs it (Redis expires entries)")
                return 0
            backend.stale_ttl = config.stale_ttl
            removed = backend.purge(args.namespace, expired_only=True)
        else:
            removed = backend.purge(args.namespace)
    except Exception as err:  # e.g. Redis unreachable: say so, without a traceback
        print(f"js-host-proxy purge: {cache_url}: {err}", file=sys.stderr)
        return 1
    finally:
        backend.close()
    scope = "all namespaces" if args.namespace is None else f"namespace {args.namespace!r}"
    # The file cache also removes what killed workers left (temporary and unheld lock files).
    leftovers = getattr(backend, "leftovers", 0)
    extra = f" and {leftovers} leftover temporary or lock files" if leftovers else ""
    print(f"js-host-proxy: removed {removed} entries ({scope}){extra} from {cache_url}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="js-host-proxy", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run the proxy under gunicorn")
    for option, (variable, text) in SERVE_OPTIONS.items():
        serve_parser.add_argument("--" + option.replace("_", "-"), help=f"{text} (sets {variable})")
    serve_parser.add_argument("--gunicorn-conf", help="gunicorn config file (default ./gunicorn.conf.py)")
    serve_parser.set_defaults(handler=serve)
    purge_parser = commands.add_parser("purge", help="empty the cache")
    purge_parser.add_argument("--cache", help="cache URL (default: JS_HOST_PROXY_CACHE)")
    purge_parser.add_argument("--namespace", help="only this namespace (default: all)")
    purge_parser.add_argument(
        "--expired",
        action="store_true",
        help="only entries past their stale window, and leftovers of killed workers (file cache)",
    )
    purge_parser.set_defaults(handler=purge)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as err:
        print(f"js-host-proxy: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
