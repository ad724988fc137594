"""Figures as text: times with their unit, rows of cells as aligned columns."""

from __future__ import annotations

from collections.abc import Sequence


def fmt_time(seconds: float | None) -> str:
    """``seconds`` in the unit that reads best: "120 ms", "1.25 ms", "48 us"; None is "n/a"."""
    if seconds is None:
        return "n/a"
    if seconds >= 0.1:
        return f"{seconds * 1e3:.0f} ms"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.0f} us"


def format_table(
    rows: Sequence[Sequence[str]], *, align: str = "l", widths: Sequence[int] = (), sep: str = "  "
) -> str:
    """``rows`` as lines of columns, each as wide as its widest cell (or ``widths[i]``).

    ``align[i]`` is "l" or "r" for column i; columns past the end of ``align`` are
    right-aligned (figures). A row may be shorter than the others; trailing blanks go.
    """
    count = max(len(row) for row in rows)
    sizes = [max(len(row[i]) for row in rows if i < len(row)) for i in range(count)]
    sizes = [max(size, widths[i]) if i < len(widths) else size for i, size in enumerate(sizes)]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(size) if align[i : i + 1] == "l" else cell.rjust(size)
            for i, (cell, size) in enumerate(zip(row, sizes))
        ]
        lines.append(sep.join(cells).rstrip())
    return "\n".join(lines)


def ratio(value: float, base: float) -> str:
    """``value / base`` as "1.25x"."""
    return f"{value / base:.2f}x"
