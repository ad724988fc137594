"""bench/compare.py's chart: per-call time of each subject, log scale (matplotlib)."""

from __future__ import annotations

from pathlib import Path

from support.tables import fmt_time

from .names import ORDER, PAYLOADS, THREADS
from .results import Results

COLORS = {1: "#1f77b4", 2: "#ff7f0e", 8: "#2ca02c"}


def tick(us: float) -> str:
    if us >= 1e6:
        return f"{us / 1e6:g} s"
    if us >= 1e3:
        return f"{us / 1e3:g} ms"
    return f"{us:g} µs"


def chart(results: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    names = [n for n in ORDER if n in results.subjects and results.subjects[n].calls]
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.55 * len(names) + 2.2), sharey=True)
    height = 0.26
    for ax, payload in zip(axes, PAYLOADS):
        for k, threads in enumerate(THREADS):
            ys, xs = [], []
            for i, name in enumerate(names):
                value = results.subjects[name].median_call(payload, threads)
                if value is not None:
                    ys.append(i + (k - 1) * height)
                    xs.append(value * 1e6)
            label = f"{threads} thread{'s' * (threads > 1)}"
            ax.barh(ys, xs, height=height, color=COLORS[threads], label=label)
            for y, x in zip(ys, xs):
                ax.text(x * 1.08, y, fmt_time(x / 1e6), va="center", fontsize=7)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda us, _: tick(us)))
        ax.set_title(f"{payload} echo: time per call (log scale; lower is better)", fontsize=10)
        ax.grid(axis="x", which="major", alpha=0.3)
        ax.set_xlim(right=ax.get_xlim()[1] * 4)
    axes[0].set_yticks(range(len(names)))
    axes[0].set_yticklabels(names, fontsize=9)
    axes[0].invert_yaxis()
    axes[1].legend(loc="lower right", fontsize=8)
    fig.suptitle(
        "js-host vs the alternatives (per-call time = wall time / calls of all threads, median)", fontsize=11
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
