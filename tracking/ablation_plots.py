"""The ablation figure: a knob's variants overlaid, train (solid) and validation (dashed), the
mean over seeds with a band of one standard deviation, the table of numbers underneath.

Takes plain data (``search.ablation.figure_series`` and ``KnobTable.header()/cells()``), so it
knows nothing of studies; drawn as a plain ``Figure`` like ``plots.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def ablation_figure(series: Sequence[Mapping[str, Any]], *, title: str,
                    header: Sequence[str] = (), cells: Sequence[Sequence[Any]] = (),
                    metrics: Sequence[str] = ("accuracy", "loss"),
                    note: str = "") -> Figure:
    """One panel per metric (shared epoch axis from 1): each variant's train curve solid and
    validation curve dashed in one colour, the base in black, each with its mean over seeds
    and a band of +-1 sd; then the table (``header``, ``cells``) and ``note`` (the stated
    effects) below the panels."""
    panels = [m for m in metrics if any(m in s["curves"] for s in series)] or list(metrics[:1])
    n_rows = len(cells)
    table_height = 0.5 + 0.28 * (n_rows + 1) if header else 0.0
    note_height = 0.25 * max(1, note.count("\n") + 1) if note else 0.0
    height = 4.0 + table_height + note_height
    fig = Figure(figsize=(6.2 * len(panels), height))
    grid = fig.add_gridspec(2, len(panels), height_ratios=[4.0, table_height + note_height
                                                           + 1e-3])
    axes = [fig.add_subplot(grid[0, 0])]
    axes += [fig.add_subplot(grid[0, i], sharex=axes[0]) for i in range(1, len(panels))]
    colours = plt.get_cmap("tab10")
    others = 0
    for s in series:
        if s.get("base"):
            colour = "black"
        else:
            colour = colours(others % 10)
            others += 1
        label = f"{s['label']} ({s.get('n_seeds', '?')} seeds)"
        for ax, metric in zip(axes, panels, strict=True):
            for key, style, suffix in ((metric, "-", "train"), (f"val_{metric}", "--",
                                                                 "validation")):
                curve = s["curves"].get(key)
                if not curve:
                    continue
                mean, std = np.asarray(curve["mean"]), np.asarray(curve["std"])
                epochs = np.arange(1, len(mean) + 1)
                ax.plot(epochs, mean, style, color=colour, lw=1.6,
                        label=f"{label}, {suffix}")
                ax.fill_between(epochs, mean - std, mean + std, color=colour, alpha=0.15,
                                lw=0)
    for ax, metric in zip(axes, panels, strict=True):
        ax.set_title(f"{metric}: train (solid) vs validation (dashed), mean +-1 sd over seeds",
                     fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(left=1)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    if header or note:
        bottom = fig.add_subplot(grid[1, :])
        bottom.axis("off")
        if header:
            table = bottom.table(cellText=[[_cell(c) for c in row] for row in cells],
                                 colLabels=list(header), loc="upper center", cellLoc="center")
            table.auto_set_font_size(False)
            table.set_fontsize(7)
            table.scale(1.0, 1.25)
        if note:
            bottom.text(0.0, 0.0, note, fontsize=7.5, va="bottom", ha="left", wrap=True,
                        transform=bottom.transAxes)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
