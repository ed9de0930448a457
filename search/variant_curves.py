"""Which model overfits, in one picture: the trials' train (solid) and validation (dashed)
curves on shared axes, one colour per trial, labelled by the parameters that differ, beside
each trial's generalization gap (train minus validation accuracy at its best epoch).

The labs compared learning-curve PNGs by eye, each on its own y-scale. ``overfitting_figure``
draws plain curves (``Curves``: a label, a history, the gap, the best epoch), so the study's
parent run, a grid study's variants and a registration report all draw it the same way;
``trial_curves`` makes them from Optuna trials.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from optuna.trial import FrozenTrial  # noqa: E402

MAX_VARIANTS = 16  # more curves than this are unreadable; the other study plots remain
TOP_TRIALS = 6  # a search's best trials shown (a grid study shows every variant up to 16)
LABEL_CHARS = 60  # a legend entry's parameters are cut here


@dataclass(frozen=True)
class Curves:
    label: str
    history: Mapping[str, Sequence[float]]
    gap: float | None = None  # train - validation accuracy at the best epoch
    best_epoch: int | None = None  # counted from 1


def short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def variant_label(trial: FrozenTrial, varying: Sequence[str]) -> str:
    parts = [f"{name}={short(trial.params[name])}" for name in varying if name in trial.params]
    text = ", ".join(parts)
    if len(text) > LABEL_CHARS:
        text = text[:LABEL_CHARS - 1] + "\u2026"
    return f"#{trial.number} " + text if text else f"#{trial.number}"


def varying_params(trials: Sequence[FrozenTrial]) -> list[str]:
    """The parameters that take more than one value among ``trials`` (in first-seen order)."""
    names = list(dict.fromkeys(p for t in trials for p in t.params))
    return [p for p in names if len({str(t.params.get(p)) for t in trials}) > 1]


def trial_curves(trials: Sequence[FrozenTrial]) -> list[Curves]:
    """Each trial with a history, labelled by the parameters that differ among them."""
    trials = [t for t in trials if t.user_attrs.get("history", {}).get("loss")]
    varying = varying_params(trials)
    out = []
    for t in trials:
        summary = t.user_attrs.get("summary") or {}
        best = summary.get("best_epoch")
        out.append(Curves(variant_label(t, varying), t.user_attrs["history"],
                          summary.get("gap_accuracy"),
                          int(best) if best is not None else None))
    return out


def overfitting_figure(curves: Sequence[Curves], *, title: str = "",
                       metrics: Sequence[str] = ("accuracy", "loss"),
                       gap_tolerance: float | None = None) -> Figure | None:
    """A panel per metric with every trial's train (solid) and validation (dashed) curve, the
    best epoch marked, and a panel of the gaps; None when no trial has a history."""
    curves = [c for c in curves if c.history.get("loss")][:MAX_VARIANTS]
    if not curves:
        return None
    metrics = [m for m in metrics if any(c.history.get(m) for c in curves)]
    ncol = 3 if max(len(c.label) for c in curves) <= 40 else 2
    legend_rows = math.ceil(len(curves) / ncol)
    width, height = 14.5, 4.6 + 0.24 * legend_rows
    fig = Figure(figsize=(width, height))
    panels = fig.subplots(1, len(metrics) + 1,
                          gridspec_kw={"width_ratios": [1.0] * len(metrics) + [0.7]})
    colours = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")
    for i, c in enumerate(curves):
        colour = colours(i % colours.N)
        for ax, metric in zip(panels, metrics, strict=False):
            for key, style in ((metric, "-"), (f"val_{metric}", "--")):
                values = c.history.get(key)
                if not values:
                    continue
                ax.plot(range(1, len(values) + 1), values, style, color=colour, lw=1.4,
                        label=c.label if (style == "-" and metric == metrics[0]) else None)
                if style == "--" and c.best_epoch and c.best_epoch <= len(values):
                    ax.scatter([c.best_epoch], [values[c.best_epoch - 1]], color=colour,
                               edgecolors="black", s=30, zorder=3)
    for ax, metric in zip(panels, metrics, strict=False):
        ax.set_title(f"{metric}: train (solid), validation (dashed)", fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if metric == "accuracy":
            low, high = ax.get_ylim()
            ax.set_ylim(max(low, 0.0), min(high, 1.02))
    _gap_panel(panels[-1], curves, colours, gap_tolerance)
    fig.suptitle((title or "Which model overfits?")
                 + "  (dot: best epoch; gap: train - validation accuracy there)", fontsize=10)
    handles, labels = panels[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.01))
    fig.subplots_adjust(left=0.05, right=0.98, top=1 - 0.55 / height,
                        bottom=(0.75 + 0.24 * legend_rows) / height, wspace=0.28)
    return fig


def _gap_panel(ax, curves: Sequence[Curves], colours, gap_tolerance: float | None) -> None:
    gaps = [c.gap for c in curves]
    shown = [g for g in gaps if g is not None]
    ys = list(range(len(curves)))[::-1]  # the first trial on top, as in the legend
    for y, c, i in zip(ys, curves, range(len(curves)), strict=True):
        if c.gap is not None:
            ax.barh(y, c.gap, color=colours(i % colours.N), height=0.6)
    span = max([abs(g) for g in shown] + [gap_tolerance or 0.0, 0.01])
    low = min([0.0] + shown)
    ax.set_xlim(low - (0.45 * span if low < 0 else 0.0), max(shown + [0.0]) + 0.45 * span)
    for y, g in zip(ys, gaps, strict=True):
        text = "n/a" if g is None else f"{g:+.3f}"
        x = 0.0 if g is None else g
        ax.text(x + (0.03 * span if x >= 0 else -0.03 * span), y, text, va="center",
                ha="left" if x >= 0 else "right", fontsize=7)
    if gap_tolerance is not None:
        ax.axvline(gap_tolerance, color="grey", ls="--", lw=1)
    ax.axvline(0.0, color="black", lw=0.6)
    ax.set_yticks(ys, [c.label.split(" ")[0] for c in curves], fontsize=8)
    ax.set_ylim(-0.7, len(curves) - 0.3)
    ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.set_xlabel("gap at the best epoch"
                  + (f" (dashed: tolerance {gap_tolerance:g})" if gap_tolerance else ""))
    ax.set_title("overfitting gap: train - validation accuracy", fontsize=9)
    ax.grid(alpha=0.3, axis="x")


def comparison_figure(trials: Sequence[FrozenTrial], metrics: Sequence[str] = ("accuracy",
                                                                                 "loss")):
    """A grid study's variants (every trial, in trial order); None without histories."""
    ordered = sorted(trials, key=lambda t: t.number)
    return overfitting_figure(trial_curves(ordered), metrics=metrics,
                              title=f"Which variant overfits? {len(ordered)} variants")
