"""The benchmarks' sections of docs/bench.md: each script rewrites its own, between
``<!-- begin NAME -->`` and ``<!-- end NAME -->``, and leaves the others as they are."""

from __future__ import annotations

import re
from pathlib import Path

from . import ROOT

BENCH_MD = ROOT / "docs" / "bench.md"


def write_section(name: str, text: str, path: Path = BENCH_MD) -> None:
    """Put ``text`` in the section ``name`` of ``path`` (appended when it has none yet)."""
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    block = f"{begin}\n{text.strip()}\n{end}"
    old = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(old):
        new = pattern.sub(lambda _match: block, old, count=1)
    else:
        new = f"{old.rstrip()}\n\n{block}\n" if old.strip() else f"{block}\n"
    path.write_text(new)
