"""Every trial of a study as one row of plain values, the way the labs tabulate them.

For each trial (complete, pruned or failed): its parameters, train and validation accuracy
and loss at the best epoch and at the final epoch, the train-validation accuracy gap at the
best epoch, its state, its epochs, and the epoch at which its training accuracy first reached
the reference trial's final training accuracy (the reference is the selected trial: "how
fast does each variant learn what the champion learnt"). ``tunelab report`` renders them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

COLUMNS = ("trial", "state", "params", "epochs", "best_epoch",
           "train_acc_best", "val_acc_best", "train_loss_best", "val_loss_best",
           "train_acc_final", "val_acc_final", "train_loss_final", "val_loss_final",
           "gap", "reached_reference_at", "objective")


def _at(history: Mapping[str, Sequence[float]], key: str, index: int | None) -> float | None:
    values = history.get(key) or []
    if index is None or not values or index >= len(values):
        return None
    return float(values[index])


def first_epoch_reaching(history: Mapping[str, Sequence[float]], target: float | None
                         ) -> int | None:
    """1-based epoch at which training accuracy first reached ``target``; None if never."""
    if target is None:
        return None
    for i, value in enumerate(history.get("accuracy") or []):
        if value >= target:
            return i + 1
    return None


def trial_rows(trials: Sequence[Any], reference: int | None) -> list[dict[str, Any]]:
    """One dict per trial (``COLUMNS``), ordered by trial number. ``reference``: the number
    of the trial whose final training accuracy the ``reached_reference_at`` column measures
    against (the selected one)."""
    by_number = {t.number: t for t in trials}
    ref_history = (by_number[reference].user_attrs.get("history") or {}) \
        if reference in by_number else {}
    ref_acc = (ref_history.get("accuracy") or [None])[-1]
    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        attrs = t.user_attrs
        history = attrs.get("history") or {}
        summary = attrs.get("summary") or {}
        n = len(history.get("loss") or [])
        best = summary.get("best_epoch")
        best_i = int(best) - 1 if best else None
        last = n - 1 if n else None
        train_best, val_best = _at(history, "accuracy", best_i), _at(history, "val_accuracy",
                                                                      best_i)
        rows.append({
            "trial": t.number, "state": t.state.name.lower(),
            "params": dict(attrs.get("hparams") or t.params), "epochs": n,
            "best_epoch": int(best) if best else None,
            "train_acc_best": train_best, "val_acc_best": val_best,
            "train_loss_best": _at(history, "loss", best_i),
            "val_loss_best": _at(history, "val_loss", best_i),
            "train_acc_final": _at(history, "accuracy", last),
            "val_acc_final": _at(history, "val_accuracy", last),
            "train_loss_final": _at(history, "loss", last),
            "val_loss_final": _at(history, "val_loss", last),
            "gap": (None if train_best is None or val_best is None else train_best - val_best),
            "reached_reference_at": first_epoch_reaching(history, ref_acc),
            "objective": (float(t.values[0]) if getattr(t, "values", None) else None),
        })
    return rows


def varying_params(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The parameters whose values differ between trials (a grid's toggles)."""
    names = sorted({p for r in rows for p in r["params"]})
    return [p for p in names if len({str(r["params"].get(p)) for r in rows}) > 1]


def histories(trials: Sequence[Any], numbers: Sequence[int]) -> dict[int, dict[str, list]]:
    """The learning curves of the given trials, by number (those that have one)."""
    by_number = {t.number: t for t in trials}
    out = {}
    for n in numbers:
        h = by_number[n].user_attrs.get("history") if n in by_number else None
        if h and h.get("loss"):
            out[n] = {k: list(v) for k, v in h.items()}
    return out


__all__ = ["COLUMNS", "first_epoch_reaching", "histories", "trial_rows", "varying_params"]
