"""The command line the benchmark scripts share: a parser that shows the script's
docstring, the options of a wrk run, and ``--no-docs``, each written once so that they
read the same in every script; each script picks its own defaults.

Stdlib only, like the rest of ``support`` but ``client``, ``proxies`` and
``cachecontrol_hits``.
"""

from __future__ import annotations

import argparse


def parser(doc: str, *, first_line_only: bool = False) -> argparse.ArgumentParser:
    """A script's parser, its docstring under ``--help`` as written (line breaks kept), or
    only its first line when the rest is a long explanation of the figures."""
    if first_line_only:
        return argparse.ArgumentParser(description=doc.split("\n")[0])
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_wrk_options(
    parser: argparse.ArgumentParser, *, duration: float, rounds: int, connections: int
) -> None:
    """``--duration``, ``--rounds`` and ``--connections`` of a script whose load comes from
    wrk: the subjects take turns round by round, and each one's best round counts (other
    work on the machine only ever slows a round down)."""
    parser.add_argument("--duration", type=float, default=duration, help="seconds of each wrk run")
    parser.add_argument("--rounds", type=int, default=rounds, help="rounds (the best one counts)")
    parser.add_argument("--connections", type=int, default=connections, help="kept-alive connections")


def add_no_docs(parser: argparse.ArgumentParser) -> None:
    """``--no-docs``: print the table only, leaving the script's section of docs/bench.md as it is."""
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/bench.md")
