"""The audit's plots: matplotlib (Agg) figures returned as PNG data URIs, so the HTML page
embeds them and needs no other file."""

from __future__ import annotations

import base64
import io
from collections import Counter
from typing import Iterable


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _integer_axis(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def png_uri(fig) -> str:
    """The figure as a data URI (PNG), so the page needs no other file."""
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


COLORS = {"accepted": "#2b6cb0", "rejected": "#c05621", "samples": "#2b6cb0"}


def histogram_png(series: dict[str, list[float]], xlabel: str, bins: list[float],
                  lines: Iterable[float] = (), band: tuple[float, float] | None = None) -> str:
    """Stacked histogram of named series, with optional vertical lines and a shaded band."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    names = [name for name, values in series.items() if values]
    ax.hist([series[n] for n in names], bins=bins, stacked=True,
            label=[f"{n} (n = {len(series[n])})" for n in names], color=[COLORS.get(n, "#718096") for n in names])
    if band:
        ax.axvspan(*band, color="#38a169", alpha=0.15, label="band")
    for x in lines:
        ax.axvline(x, color="#2d3748", linestyle="--", linewidth=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    _integer_axis(ax.yaxis)
    ax.legend(frameon=False, fontsize=8)
    return png_uri(fig)


def bars_png(labels: list[str], values: list[float], xlabel: str) -> str:
    """Horizontal bars, first label on top."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 0.5 + 0.35 * len(labels)))
    ax.barh(range(len(labels)), values, color="#c05621")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    _integer_axis(ax.xaxis)
    return png_uri(fig)


def grouped_bars_png(by_order: dict[str, dict[str, float | None]], ylabel: str) -> str:
    """One bar per order within each domain ("all" last); values in [0, 1], None drawn as 0."""
    plt = _pyplot()
    domains = sorted({d for values in by_order.values() for d in values}, key=lambda d: (d == "all", d))
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    width = 0.8 / max(len(by_order), 1)
    for i, (order, by_domain) in enumerate(by_order.items()):
        values = [by_domain.get(d) or 0 for d in domains]
        ax.bar([x + i * width for x in range(len(domains))], values, width, label=order)
    ax.set_xticks([x + width * (len(by_order) - 1) / 2 for x in range(len(domains))], domains)
    ax.set_ylim(0, 1.3)
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False, fontsize=8, loc="upper center", ncol=2)
    return png_uri(fig)


def position_png(positions: list[int], lengths: list[int]) -> str:
    """Observed presented positions of the top-ranked passage against the uniform expectation
    given each list's length."""
    plt = _pyplot()
    longest = max(lengths)
    counts = Counter(positions)
    expected = [sum(1 / n for n in lengths if n >= p) for p in range(1, longest + 1)]
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    ax.bar(range(1, longest + 1), [counts.get(p, 0) for p in range(1, longest + 1)], color="#2b6cb0",
           label=f"observed (n = {len(positions)})")
    ax.plot(range(1, longest + 1), expected, color="#2d3748", linestyle="--", marker=".", label="chance")
    ax.set_xlabel("presented position of the passage ranked first")
    ax.set_ylabel("rows")
    _integer_axis(ax.yaxis)
    ax.legend(frameon=False, fontsize=8)
    return png_uri(fig)


def tokens_png(calls: list[dict]) -> str:
    """Prompt and completion tokens per (kind, model), stacked."""
    plt = _pyplot()
    labels = [f"{c['kind']} · {c['model']}" for c in calls]
    prompt = [c["prompt_tokens"] or 0 for c in calls]
    completion = [c["completion_tokens"] or 0 for c in calls]
    fig, ax = plt.subplots(figsize=(6.4, 0.8 + 0.4 * len(labels)))
    ax.barh(range(len(labels)), prompt, color="#2b6cb0", label="prompt")
    ax.barh(range(len(labels)), completion, left=prompt, color="#c05621", label="completion")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("tokens")
    ax.legend(frameon=False, fontsize=8)
    return png_uri(fig)
