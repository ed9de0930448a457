"""The labs' comparison by eye, as one figure: every variant's train (solid) and validation
(dashed) curves overlaid, one colour per variant, labelled by the parameters that differ.

Drawn on the study's parent run for grid studies (a few toggles: batch norm on/off, dropout,
two learning rates), where each trial is a variant worth seeing next to the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from optuna.trial import FrozenTrial  # noqa: E402

MAX_VARIANTS = 16  # more curves than this are unreadable; the other study plots remain


def variant_label(trial: FrozenTrial, varying: Sequence[str]) -> str:
    def short(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    parts = [f"{name}={short(trial.params[name])}" for name in varying if name in trial.params]
    return f"#{trial.number} " + (", ".join(parts) if parts else "")


def comparison_figure(trials: Sequence[FrozenTrial], metrics: Sequence[str] = ("accuracy",
                                                                                 "loss")):
    """One panel per metric; None when no trial has a history to draw."""
    trials = [t for t in trials if t.user_attrs.get("history", {}).get("loss")]
    if not trials:
        return None
    names = sorted({p for t in trials for p in t.params})
    varying = [p for p in names if len({str(t.params.get(p)) for t in trials}) > 1]
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.5), squeeze=False)
    colours = plt.get_cmap("tab10" if len(trials) <= 10 else "tab20")
    for i, trial in enumerate(sorted(trials, key=lambda t: t.number)):
        history = trial.user_attrs["history"]
        colour = colours(i % colours.N)
        for ax, metric in zip(axes[0], metrics, strict=True):
            for key, style in ((metric, "-"), (f"val_{metric}", "--")):
                values = history.get(key)
                if values:
                    ax.plot(range(1, len(values) + 1), values, style, color=colour,
                            label=variant_label(trial, varying) if style == "-" else None)
    for ax, metric in zip(axes[0], metrics, strict=True):
        ax.set_title(f"{metric}: train (solid) vs validation (dashed)")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig
