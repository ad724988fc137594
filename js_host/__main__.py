"""``python -m js_host <config> [options]``: run the bundled js-host CLI with node.

The same as ``node <site-packages>/js_host/node/bin/js-host.js <config> ...``, for a
host started by hand or by a supervisor, without knowing where pip put the package.
``PATH_TO_NODE`` in the environment chooses the node binary (default: ``node``).
"""

from __future__ import annotations

import os
import shutil
import sys

from .conf import BUNDLED_BIN_PATH


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    node = os.environ.get("PATH_TO_NODE", "node")
    path = shutil.which(node)
    if path is None:
        sys.exit(f"js-host: node binary {node!r} not found; install Node.js 20+ or set PATH_TO_NODE")
    # exec: signals (SIGTERM from a supervisor) reach node directly.
    os.execv(path, [path, BUNDLED_BIN_PATH, *args])


if __name__ == "__main__":
    main()
