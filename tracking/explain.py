"""Figures for a registered model: Grad-CAM overlays and the top trials' learning curves."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


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
