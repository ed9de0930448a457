"""The figures of a clinical evaluation: ROC and precision-recall curves, the reliability
diagram and the confusion matrix with per-class recall.

Each function returns a plain ``matplotlib.figure.Figure`` (Agg, outside pyplot's global
figure list, as ``tracking.plots``), with the class names on the axes and legends, both axes
named, and constrained layout so that titles, labels and legends do not overlap. The numbers
come from :mod:`tracking.clinical_metrics`; nothing here computes a metric of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from . import clinical_metrics as cm  # noqa: E402


def _new_figure(**kwargs) -> Figure:
    """A figure with an Agg canvas of its own, so that ``fig.canvas.draw()`` and text
    extents work at once, outside pyplot."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


#: Above this many curves the legend moves outside the axes, to the right.
LEGEND_INSIDE_MAX = 5


def _figure(n_curves: int, labels: Sequence[str]) -> Figure:
    """A curve figure, wider when its legend goes outside, to the right of the axes."""
    if n_curves <= LEGEND_INSIDE_MAX:
        return _new_figure(figsize=(5.2, 4.8), layout="constrained")
    longest = max(len(label) for label in labels)
    return _new_figure(figsize=(4.8 + 0.075 * longest, 4.8), layout="constrained")


def _legend(fig: Figure, ax, n_curves: int, loc: str) -> None:
    if n_curves > LEGEND_INSIDE_MAX:  # constrained layout makes room for an "outside" legend
        fig.legend(fontsize=7, loc="outside right center", frameon=False)
    else:
        ax.legend(fontsize=8, loc=loc)


def _operating_points(y: np.ndarray, p: np.ndarray, points: Mapping[str, float] | None,
                      positive: int) -> list[tuple[str, float, dict[str, float]]]:
    if not points:
        return []
    if p.shape[1] != 2:
        raise ValueError("operating points (thresholds) apply to two classes only")
    out = []
    for label, threshold in points.items():
        m = cm.classification_metrics(y, p, threshold=threshold, positive=positive)
        out.append((str(label), float(threshold), m))
    return out


def roc_curve(y_true: Any, scores: Any, class_names: Sequence[str], *, positive: int = 1,
              intervals: cm.BootstrapResult | None = None,
              operating_points: Mapping[str, float] | None = None,
              title: str = "ROC curve") -> Figure:
    """ROC curve of the positive class (two classes) or one-vs-rest per class (more), the
    AUC (with its bootstrap interval when ``intervals`` is given) in the legend, the chance
    diagonal, and each named threshold of ``operating_points`` marked (two classes)."""
    y, p = cm.check_inputs(y_true, scores)
    curves = cm.roc_curves(y, p, positive=positive, class_names=class_names)
    labels = []
    for curve in curves:
        key = "roc_auc" if len(curves) == 1 else f"roc_auc_{curve.label}"
        auc = (f"AUC {intervals[key]}" if intervals is not None and key in intervals.intervals
               else f"AUC {curve.area:.3f}")
        name = curve.label if len(curves) > 1 else f"{curve.label} (positive)"
        labels.append(f"{name}: {auc}")
    fig = _figure(len(curves), labels)
    ax = fig.subplots()
    for curve, label in zip(curves, labels, strict=True):
        ax.step(curve.x, curve.y, where="post", lw=1.5, label=label)
    ax.plot([0, 1], [0, 1], ls="--", lw=1, color="grey", label="chance")
    for label, threshold, m in _operating_points(y, p, operating_points, positive):
        ax.plot(1 - m["specificity"], m["sensitivity"], "o", ms=7, mfc="none", mew=1.6,
                label=f"{label}: t={threshold:.3g}, sens {m['sensitivity']:.2f}, "
                      f"spec {m['specificity']:.2f}")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.grid(alpha=0.3)
    _legend(fig, ax, len(curves), "lower right")
    suffix = "" if len(curves) == 1 else " (one-vs-rest)"
    ax.set_title(f"{title}{suffix}, n = {len(y)}", fontsize=10)
    return fig


def precision_recall_curve(y_true: Any, scores: Any, class_names: Sequence[str], *,
                           positive: int = 1,
                           operating_points: Mapping[str, float] | None = None,
                           title: str = "Precision-recall curve") -> Figure:
    """Precision (PPV) against recall (sensitivity), with average precision in the legend
    and each class's prevalence dotted (the precision of a classifier that guesses)."""
    y, p = cm.check_inputs(y_true, scores)
    curves = cm.pr_curves(y, p, positive=positive, class_names=class_names)
    labels = [f"{c.label if len(curves) > 1 else f'{c.label} (positive)'}: AP {c.area:.3f}"
              for c in curves]
    fig = _figure(len(curves), labels)
    ax = fig.subplots()
    for curve, label in zip(curves, labels, strict=True):
        line, = ax.step(curve.x, curve.y, where="post", lw=1.5, label=label)
        ax.axhline(curve.prevalence, ls=":", lw=1, color=line.get_color())
    for label, threshold, m in _operating_points(y, p, operating_points, positive):
        ax.plot(m["sensitivity"], m["ppv"], "o", ms=7, mfc="none", mew=1.6,
                label=f"{label}: t={threshold:.3g}, recall {m['sensitivity']:.2f}, "
                      f"PPV {m['ppv']:.2f}")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("recall (sensitivity)")
    ax.set_ylabel("precision (PPV)")
    ax.grid(alpha=0.3)
    _legend(fig, ax, len(curves), "lower left")
    ax.set_title(f"{title}, n = {len(y)} (dotted: prevalence)", fontsize=10)
    return fig


def reliability_diagram(y_true: Any, scores: Any, *, n_bins: int = 15,
                        uncalibrated: Any = None, title: str = "Reliability diagram"
                        ) -> Figure:
    """Top-label accuracy against mean confidence per equal-width bin (bars; the diagonal is
    perfect calibration), the count of images per bin below, ECE in the title. With
    ``uncalibrated`` (the probabilities before calibration, same images) its bins are drawn
    as a line and its ECE named too, so the figure shows what calibration changed."""
    after = cm.reliability(y_true, scores, n_bins)
    before = None if uncalibrated is None else cm.reliability(y_true, uncalibrated, n_bins)
    fig = _new_figure(figsize=(5.2, 5.6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    width = 1.0 / n_bins
    centers = after.edges[:-1] + width / 2
    filled = after.counts > 0
    top.bar(centers[filled], after.accuracy[filled], width=width * 0.9, color="tab:blue",
            alpha=0.75, label="accuracy per bin" + (" (calibrated)" if before else ""))
    top.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    if before is not None:
        shown = before.counts > 0
        top.plot(before.confidence[shown], before.accuracy[shown], "s-", ms=4,
                 color="tab:red", lw=1, label="before calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1.02)
    top.set_ylabel("accuracy (top label correct)")
    top.grid(alpha=0.3)
    top.legend(fontsize=8, loc="upper left")
    bottom.bar(centers, after.counts, width=width * 0.9, color="tab:grey")
    bottom.set_xlabel("confidence (highest class probability)")
    bottom.set_ylabel("images")
    top.tick_params(labelbottom=False)
    line = f"ECE {after.ece:.3f}"
    if before is not None:
        line += f" (before calibration {before.ece:.3f})"
    top.set_title(f"{title}\n{line}\ntop-label, {n_bins} equal-width bins, n = "
                  f"{int(after.counts.sum())}", fontsize=10)
    return fig


def confusion_matrix(y_true: Any, y_pred: Any, class_names: Sequence[str], *,
                     title: str = "Confusion matrix") -> Figure:
    """Counts (rows: true class, columns: predicted), shaded by the row's share so that
    small classes read as clearly as large ones, each row's recall (sensitivity) on the
    right and the class sizes on the left."""
    names = [str(c) for c in class_names]
    k = len(names)
    matrix = cm.confusion_counts(y_true, y_pred, k)
    rows = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = matrix / rows[:, None]
    recall = np.diagonal(share)
    longest = max(len(n) for n in names)
    side = max(4.0, 0.5 * k + 2.5) + 0.06 * longest
    fig = _new_figure(figsize=(side + 1.0, side), layout="constrained")
    ax = fig.subplots()
    ax.imshow(np.nan_to_num(share), cmap="Blues", vmin=0, vmax=1, aspect="auto")
    fontsize = 9 if k <= 6 else 7
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=fontsize,
                    color="white" if share[i, j] > 0.5 else "black")
    rotate = k * longest > 24  # the names would not fit side by side under the cells
    # vertical, not slanted: slanted labels' boxes overlap their neighbours' long before
    # the glyphs do, and vertical ones read as well
    ax.set_xticks(range(k), names, rotation=90 if rotate else 0)
    ax.set_yticks(range(k), [f"{n} (n={r})" for n, r in zip(names, rows, strict=True)])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    right = ax.secondary_yaxis("right")
    right.set_yticks(range(k), ["-" if np.isnan(r) else f"{r:.2f}" for r in recall])
    right.set_ylabel("recall (sensitivity)")
    total = int(matrix.sum())
    accuracy = np.trace(matrix) / max(1, total)
    balanced = float(np.nanmean(recall)) if np.any(rows) else float("nan")
    ax.set_title(f"{title}\naccuracy {accuracy:.3f}, balanced accuracy {balanced:.3f}, "
                 f"n = {total}", fontsize=10)
    return fig


__all__ = ["confusion_matrix", "precision_recall_curve", "reliability_diagram", "roc_curve"]
