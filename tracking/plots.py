"""Figures people would rather look at than read: learning curves and confusion matrices.

Built as plain ``Figure`` objects, not through pyplot's global figure list, so the background
tracking writer can draw a trial's figures while the main thread trains the next trial.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

TRIAL_DPI = 80  # per-trial figures: PNG encoding is most of what tracking costs a trial
ACCURACY_LIMITS = (0.0, 1.02)  # every trial's accuracy panel on the same scale


def learning_curves(history: Mapping[str, Sequence[float]], title: str = "",
                    best_epoch: int | None = None, params: str = "") -> Figure:
    """Loss and accuracy, train against validation, side by side as the labs plot them.

    ``params`` (the trial's key hyperparameters) goes under the title, wrapped; accuracy is
    drawn on the same 0-1 scale in every trial, so two trials' PNGs compare by eye."""
    panels = [k for k in ("loss", "accuracy") if k in history]
    width = 5 * max(1, len(panels))
    lines = textwrap.wrap(params, width=int(width * 12.5), max_lines=2,
                          placeholder=" \u2026") if params else []
    height = 3.6 + 0.2 * len(lines)
    fig = Figure(figsize=(width, height))
    axes = fig.subplots(1, max(1, len(panels)))
    axes = np.atleast_1d(axes)
    for ax, key in zip(axes, panels, strict=False):
        epochs = np.arange(1, len(history[key]) + 1)
        ax.plot(epochs, history[key], "o-", ms=3, label=f"train {key}")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], "s-", ms=3, label=f"validation {key}")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"best epoch {best_epoch}")
        if key == "accuracy":
            ax.set_ylim(*ACCURACY_LIMITS)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(title, y=1 - 0.08 / height, va="top", fontsize=11)
    if lines:
        fig.text(0.5, 1 - 0.36 / height, "\n".join(lines), ha="center", va="top", fontsize=8,
                 color="dimgrey")
    # fixed margins (the size is fixed): tight_layout would draw the figure twice
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.15 / width, bottom=0.55 / height,
                        top=1 - (0.5 + 0.2 * len(lines)) / height, wspace=0.25)
    return fig


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int],
                     class_names: Sequence[str], title: str = "") -> Figure:
    n = len(class_names)
    matrix = np.zeros((n, n), dtype=int)
    np.add.at(matrix, (np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)), 1)
    size = max(3.5, 0.45 * n + 2)
    rotated = n > 4
    chars = max([len(str(c)) for c in class_names] + [1])
    # fixed margins from the longest class name (tight_layout measured every text, and made
    # savefig lay the figure out again: a third of the figure's cost, once per trial)
    left, bottom = 0.75 + 0.085 * chars, 0.55 + (0.06 * chars if rotated else 0.22)
    width, height = size + 0.085 * chars, size + (0.06 * chars if rotated else 0.0)
    fig = Figure(figsize=(width, height))
    ax = fig.subplots()
    fig.subplots_adjust(left=left / width, right=1 - 0.2 / width, bottom=bottom / height,
                        top=1 - 0.62 / height)
    ax.imshow(matrix, cmap="Blues")
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if matrix[i, j] > threshold else "black")
    ax.set_xticks(range(n), class_names, rotation=45 if rotated else 0,
                  ha="right" if rotated else "center", rotation_mode="anchor")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = np.trace(matrix) / max(1, matrix.sum())
    ax.set_title(f"{title}\naccuracy {accuracy:.3f} on {matrix.sum()} images".strip())
    return fig


def close(fig: Figure) -> None:
    if fig.canvas.manager is not None:  # only pyplot's figures are in its global list
        plt.close(fig)


def image_grid(images: np.ndarray, row_labels: Sequence[str], title: str = "",
               column_titles: Sequence[str] | None = None) -> Figure:
    """``images`` of shape (rows, columns, H, W, C) with values in [0, 1]."""
    images = np.asarray(images)
    n_rows, n_cols = images.shape[:2]
    fig = Figure(figsize=(1.3 * n_cols + 0.6, 1.3 * n_rows + 0.5))
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    titles = column_titles or (["original"] + [f"augmented {i}" for i in range(1, n_cols)])
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r, c]
            image = images[r, c]
            if image.shape[-1] == 1:
                ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(np.clip(image, 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0 and c < len(titles):
                ax.set_title(titles[c], fontsize=7)
            if c == 0:
                ax.set_ylabel(str(row_labels[r]), fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return fig


def pareto_front(points: Sequence[tuple[int, float | None, float | None, bool]], *,
                 metric: str, direction: str, gap_tolerance: float | None = None,
                 chosen: int | None = None, title: str = "") -> Figure:
    """A multi-objective study's trials: validation metric against overfitting gap.

    ``points``: (trial number, metric, gap, on the Pareto front), the two objectives as the
    study optimized them. The front is joined by a line, every trial is annotated with its
    number, the chosen trial is ringed, the gap tolerance is a dashed line."""
    shown = [(n, m, g, f) for n, m, g, f in points if m is not None and g is not None]
    fig = Figure(figsize=(7, 5))
    ax = fig.subplots()
    others = [(m, g) for _, m, g, f in shown if not f]
    front = sorted(((g, m) for _, m, g, f in shown if f))
    if others:
        ax.scatter([g for _, g in others], [m for m, _ in others], c="lightgrey",
                   edgecolors="grey", label="dominated trials", zorder=2)
    if front:
        ax.plot([g for g, _ in front], [m for _, m in front], "o-", color="tab:blue",
                label="Pareto front", zorder=3)
    for number, m, g, _ in shown:
        ax.annotate(str(number), (g, m), textcoords="offset points", xytext=(5, 4),
                    fontsize=8)
    for number, m, g, _ in shown:
        if number == chosen:
            ax.scatter([g], [m], s=220, facecolors="none", edgecolors="tab:red", linewidths=2,
                       label=f"selected: trial {number}", zorder=4)
    if gap_tolerance is not None:
        ax.axvline(gap_tolerance, color="tab:orange", ls="--", lw=1,
                   label=f"gap tolerance {gap_tolerance:g}")
    ax.set_xlim(left=-0.01)  # gaps are >= 0
    better = "higher" if direction == "maximize" else "lower"
    ax.set_xlabel("overfitting gap: max(0, train - validation accuracy), lower is better")
    ax.set_ylabel(f"best-epoch {metric} ({better} is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or f"Pareto front: {metric} vs gap", fontsize=9)
    fig.tight_layout()
    return fig


def gradcam_figure(images: np.ndarray, heatmaps: np.ndarray, titles: Sequence[str],
                   n_cols: int, title: str = "") -> Figure:
    """Each image with its heatmap overlaid (jet, alpha 0.45), ``n_cols`` per row."""
    n = len(images)
    n_rows = max(1, -(-n // n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.9 * n_cols, 2.1 * n_rows),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, heat, text in zip(axes.flat, images, heatmaps, titles, strict=False):
        shown = image[..., 0] if image.shape[-1] == 1 else image
        ax.imshow(shown, cmap="gray" if image.shape[-1] == 1 else None, vmin=0, vmax=1)
        ax.imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_title(text, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
