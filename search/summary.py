"""What a finished trial's learning curves say: the best epoch, the gap, overfitting flags."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def best_epoch(values: Sequence[float], direction: str) -> int:
    """Index of the best finite value (first one on ties)."""
    finite = [(v, i) for i, v in enumerate(values) if math.isfinite(v)]
    if not finite:
        raise ValueError("no finite value in the history")
    if direction == "maximize":
        return max(finite, key=lambda vi: (vi[0], -vi[1]))[1]
    return min(finite)[1]


def summarize(history: Mapping[str, Sequence[float]], metric: str, direction: str,
              rising_window: int = 3) -> dict[str, float]:
    """Best-epoch and final metrics plus overfitting signals, as flat floats for logging."""
    if metric not in history:
        raise KeyError(f"metric {metric!r} is not in the history (have {sorted(history)})")
    best = best_epoch(history[metric], direction)
    n = len(history[metric])
    out: dict[str, float] = {"best_epoch": best + 1, "epochs_trained": n,
                             "epochs_since_best": n - 1 - best}
    for key, values in history.items():
        if key == "learning_rate" or best >= len(values):
            continue
        out[f"best_{key}"] = values[best]
        out[f"final_{key}"] = values[-1]
    if "accuracy" in history and "val_accuracy" in history:
        out["gap_accuracy"] = history["accuracy"][best] - history["val_accuracy"][best]
    if "loss" in history and "val_loss" in history:
        out["gap_loss"] = history["val_loss"][best] - history["loss"][best]
        out["overfitting"] = float(val_loss_rising(history["loss"], history["val_loss"],
                                                   rising_window))
    return out


def val_loss_rising(loss: Sequence[float], val_loss: Sequence[float], window: int = 3) -> bool:
    """Validation loss rose over the last ``window`` epochs while training loss fell."""
    if len(val_loss) <= window:
        return False
    return val_loss[-1] > val_loss[-1 - window] and loss[-1] < loss[-1 - window]
