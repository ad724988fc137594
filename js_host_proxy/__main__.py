"""``js-host-proxy``: run the proxy, or purge its cache.

    js-host-proxy serve [--upstream URL[,URL]] [--bind ADDR] [--cache URL] [--workers N] ...
    js-host-proxy purge (--all | --function NAME | --version V | --namespace NS | --expired) [--cache URL]
    js-host-proxy status [--proxy URL] [--host URL[,URL]] [--proxy-metrics URL] [--token T]

``serve`` runs gunicorn with the settings shipped in the package
(``js_host_proxy.gunicorn_settings``), or the file given with ``--gunicorn-conf`` (e.g. the
project's ``gunicorn.conf.py``); never one found in the current folder, which may belong to
another user. Its options set the matching ``JS_HOST_PROXY_*`` variables. ``status``
shows the running stack on one screen (``js_host.stack_status``): by default the proxy at
``JS_HOST_PROXY_BIND`` and the hosts of ``JS_HOST_PROXY_UPSTREAM``.

Run it as the console script. ``python -m js_host_proxy`` puts the current folder first on
``sys.path`` before any of this runs, so a module planted there (``argparse.py``) would be
imported instead of the real one; where a ``-m`` form is needed, use ``python -P -m
js_host_proxy`` (Python 3.11+), which leaves it off.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from js_host.exceptions import ConfigError

#: serve's options and the environment variables they set.
SERVE_OPTIONS = {
    "upstream": ("JS_HOST_PROXY_UPSTREAM", "host base URL(s), comma separated"),
    "bind": ("JS_HOST_PROXY_BIND", "address to listen on (default 127.0.0.1:9010)"),
    "cache": ("JS_HOST_PROXY_CACHE", "file:///path, redis://host:port/db or memory://"),
    "ttl": ("JS_HOST_PROXY_TTL", "seconds fresh when the host sends no Cache-Control"),
    "namespace": ("JS_HOST_PROXY_NAMESPACE", "part of every cache key (what the code version cannot know)"),
    "max_size": ("JS_HOST_PROXY_MAX_SIZE", "bytes the file or memory cache holds at most (e.g. 512mb)"),
    "workers": ("JS_HOST_PROXY_WORKERS", "worker processes (default: one per core)"),
    "threads": ("JS_HOST_PROXY_THREADS", "threads per worker"),
    "upstream_timeout": ("JS_HOST_PROXY_UPSTREAM_TIMEOUT", "seconds to wait for the host"),
}


#: The packaged gunicorn settings serve runs with by default: a module inside the package,
#: so that it works from any folder after ``pip install`` (never a file looked up through
#: the current directory).
PACKAGED_CONF = "python:js_host_proxy.gunicorn_settings"


def find_gunicorn_conf(explicit: str | None = None) -> str:
    """The gunicorn config serve runs with: ``explicit`` (made absolute) or PACKAGED_CONF.

    A ``./gunicorn.conf.py`` is never used unless named: whoever can write the folder a
    privileged user starts the proxy from would otherwise run code as that user.
    """
    if not explicit:
        return PACKAGED_CONF
    path = Path(explicit).resolve()
    if not path.is_file():
        raise ConfigError(f"no gunicorn config at {path}: pass an existing file to --gunicorn-conf")
    return str(path)


def _without_dir(paths: list[str], folder: str) -> list[str]:
    """sys.path without ``folder`` (nor ``""``, the current one): gunicorn would otherwise
    import modules planted there, in the master and in every worker."""
    return [p for p in paths if p not in ("", ".", folder)]


def serve(args: argparse.Namespace) -> int:
    for option, (variable, _) in SERVE_OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            os.environ[variable] = str(value)
    conf = find_gunicorn_conf(args.gunicorn_conf)
    from gunicorn.app.wsgiapp import WSGIApplication

    started_in = os.getcwd()

    class ProxyApplication(WSGIApplication):
        # gunicorn's chdir() puts its folder first on sys.path, by default the current one;
        # only a chdir the config asks for is added.
        def chdir(self) -> None:
            os.chdir(self.cfg.chdir)
            if self.cfg.chdir != started_in and self.cfg.chdir not in sys.path:
                sys.path.insert(0, self.cfg.chdir)

    sys.path[:] = _without_dir(sys.path, started_in)
    # An explicit --config: gunicorn's own default is ./gunicorn.conf.py.
    sys.argv = ["js-host-proxy", "--config", conf]
    ProxyApplication("%(prog)s serve [OPTIONS]", prog="js-host-proxy").run()  # exits itself
    return 0


def purge(args: argparse.Namespace) -> int:
    from js_host_proxy.cache.factory import open_cache
    from js_host_proxy.config import ProxyConfig

    named = (args.function, args.version, args.namespace)
    if not (args.all or args.expired) and all(v is None for v in named):
        print(
            "js-host-proxy purge: say what to remove: --all, --expired, --function NAME, "
            "--version V or --namespace NS (they combine: all given at once)",
            file=sys.stderr,
        )
        return 2
    config = ProxyConfig.from_env()
    cache_url = args.cache or config.cache_url
    backend = open_cache(cache_url)
    if hasattr(backend, "stale_ttl"):  # the file cache's --expired
        backend.stale_ttl = config.stale_ttl
    what = {"namespace": args.namespace, "version": args.version, "function": args.function}
    try:
        removed = backend.purge(**what, expired_only=args.expired)
    except Exception as err:  # e.g. Redis unreachable: say so, without a traceback
        print(f"js-host-proxy purge: {cache_url}: {err}", file=sys.stderr)
        return 1
    finally:
        backend.close()
    if args.expired and cache_url.startswith(("redis", "rediss", "unix")):
        print("js-host-proxy purge --expired: Redis expires entries itself; nothing to do")
    scope = ", ".join(f"{k} {v!r}" for k, v in what.items() if v is not None) or "all namespaces"
    if args.expired:
        scope = f"expired, {scope}"
    # The file cache also removes what killed workers left (temporary and unheld lock files).
    leftovers = getattr(backend, "leftovers", 0)
    extra = f" and {leftovers} leftover temporary or lock files" if leftovers else ""
    print(f"js-host-proxy: removed {removed} entries ({scope}){extra} from {cache_url}")
    return 0


def bind_url(bind: str) -> str:
    """The URL to reach a proxy listening at ``bind`` (``JS_HOST_PROXY_BIND``) from this
    machine: a wildcard address becomes the loopback one."""
    address, _, port = bind.rpartition(":")
    if address in ("", "0.0.0.0"):
        address = "127.0.0.1"
    elif address == "[::]":
        address = "[::1]"
    return f"http://{address}:{port}"


def status(args: argparse.Namespace) -> int:
    from js_host.stack_status import run
    from js_host_proxy.config import ProxyConfig

    proxy = None
    bind = os.environ.get("JS_HOST_PROXY_BIND", DEFAULT_STATUS_BIND).split(",")[0].strip()
    if not bind.startswith("unix:"):
        proxy = bind_url(bind)
    elif not args.proxy:
        print(
            f"js-host-proxy status: the proxy listens on {bind}: give its URL with --proxy", file=sys.stderr
        )
        return 2
    metrics_bind = os.environ.get("JS_HOST_PROXY_METRICS_BIND", "").strip()
    if not args.proxy_metrics and metrics_bind and not args.proxy:
        args.proxy_metrics = bind_url(metrics_bind)
    return run(args, default_hosts=list(ProxyConfig.from_env().upstreams), default_proxy=proxy)


#: Where ``status`` looks for the proxy without JS_HOST_PROXY_BIND (gunicorn_settings' default).
DEFAULT_STATUS_BIND = "127.0.0.1:9010"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="js-host-proxy", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = _command(commands, "serve", serve, "run the proxy under gunicorn")
    for option, (variable, text) in SERVE_OPTIONS.items():
        serve_parser.add_argument("--" + option.replace("_", "-"), help=f"{text} (sets {variable})")
    serve_parser.add_argument(
        "--gunicorn-conf",
        help="gunicorn config file (default: the settings in the package, js_host_proxy.gunicorn_settings)",
    )
    purge_parser = _command(
        commands,
        "purge",
        purge,
        "remove cache entries",
        description="Remove the cache's entries: all of them, or those of a function, a code "
        "version or a namespace (given together: those of all at once), or the expired ones.",
    )
    purge_parser.add_argument("--cache", help="cache URL (default: JS_HOST_PROXY_CACHE)")
    purge_parser.add_argument("--all", action="store_true", help="every entry (of every namespace)")
    purge_parser.add_argument("--function", metavar="NAME", help="only the entries of this function")
    purge_parser.add_argument(
        "--version", metavar="V", help="only the entries of this code version (JS-Host-Code-Version)"
    )
    purge_parser.add_argument("--namespace", metavar="NS", help="only this namespace")
    purge_parser.add_argument(
        "--expired",
        action="store_true",
        help="only entries past their stale window, and leftovers of killed workers (file, memory)",
    )
    from js_host.stack_status import add_arguments

    status_parser = _command(
        commands,
        "status",
        status,
        "show the running stack: hosts, workers, hit ratio, slowest functions, last errors",
        description="Show the running stack on one screen: the proxy (hit ratio, upstreams, cache) and "
        "its hosts (workers, calls, slowest functions, last errors), from their /status, /health and "
        "/metrics.",
    )
    add_arguments(
        status_parser,
        host_default="JS_HOST_PROXY_UPSTREAM, else http://127.0.0.1:9009",
        proxy_default="JS_HOST_PROXY_BIND's address, else http://127.0.0.1:9010",
    )
    return parser


def _command(
    commands: Any,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    summary: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """The parser of subcommand ``name`` (``summary``: its line in the list of commands),
    which :func:`main` runs by calling ``handler`` with the parsed arguments."""
    command: argparse.ArgumentParser = commands.add_parser(name, help=summary, description=description)
    command.set_defaults(handler=handler)
    return command


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as err:
        print(f"js-host-proxy: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
