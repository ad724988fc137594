"""``python -m js_host <config> [options]``: run the bundled js-host CLI with node.

The same as ``node <site-packages>/js_host/node/bin/js-host.js <config> ...``, for a
host started by hand or by a supervisor, without knowing where pip put the package.
``PATH_TO_NODE`` in the environment chooses the node binary (default: ``node``).

``python -m js_host status [--host URL] [--config FILE] [--proxy URL]``: a running
stack's state on one screen (:mod:`js_host.stack_status`). (A config file named
``status`` is run as ``python -m js_host ./status``.)

A plain ``python -m`` puts the current folder first on ``sys.path`` before any of this
runs, so a module planted there (``argparse.py``) would be imported instead of the real
one: run ``python -P -m js_host ...`` (Python 3.11+), or from a folder no other user can
write.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from .conf import BUNDLED_BIN_PATH
from .endpoint import DEFAULT_ADDRESS, DEFAULT_PORT, config_url, format_url

#: The config file ``status`` reads the host's address from, when it exists.
DEFAULT_CONFIG = "host.config.js"


def status(argv: list[str]) -> int:
    from .config_status import read_config_status
    from .exceptions import JSHostError
    from .stack_status import add_arguments, run

    fallback = format_url(DEFAULT_ADDRESS, DEFAULT_PORT)
    parser = argparse.ArgumentParser(
        prog="python -m js_host status",
        description="Show a running stack's hosts, workers, hit ratio, slowest functions and last errors.",
    )
    add_arguments(parser, host_default=f"the address of --config, else {fallback}", proxy_default=None)
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"the host's config file, to find where it listens (default: ./{DEFAULT_CONFIG} if it exists)",
    )
    args = parser.parse_args(argv)
    hosts = [fallback]
    config = args.config or (DEFAULT_CONFIG if os.path.exists(DEFAULT_CONFIG) else None)
    if not args.host and config:
        node = shutil.which(os.environ.get("PATH_TO_NODE", "node")) or "node"
        try:
            found = read_config_status(node, BUNDLED_BIN_PATH, os.path.abspath(config))
        except JSHostError as err:
            print(f"python -m js_host status: {err}", file=sys.stderr)
            return 2
        hosts = [config_url(found["config"])]
    return run(args, default_hosts=hosts, default_proxy=None)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["status"]:
        sys.exit(status(args[1:]))
    node = os.environ.get("PATH_TO_NODE", "node")
    path = shutil.which(node)
    if path is None:
        sys.exit(f"js-host: node binary {node!r} not found; install Node.js 20+ or set PATH_TO_NODE")
    # exec: signals (SIGTERM from a supervisor) reach node directly.
    os.execv(path, [path, BUNDLED_BIN_PATH, *args])


if __name__ == "__main__":
    main()
