"""One trial as k-fold cross-validation: a fresh model per fold, the folds' summaries merged.

Folds train one after the other with the trial's hyperparameters and seed ``seed + fold``.
Epochs are counted across folds: fold ``f``'s epoch ``e`` is step ``f * max_epochs + e``, both
for pruning (every trial reports fold 0 first, so a median or successive-halving pruner
compares the same fold and epoch across trials) and for the per-epoch MLflow curves.

The trial's summary holds the mean over folds of every per-fold summary value (so the
objective is the mean best-epoch metric and the gap signals are mean gaps), ``fold_std_<metric>``
(population standard deviation, as numpy and scikit-learn report it), ``fold_<i>_<metric>``,
``cv_folds``, and ``overfitting`` set when most folds (more than half) were flagged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import optuna

from .summary import summarize


@dataclass
class CrossValResult:
    history: dict[str, list[float]]  # every fold's epochs, end to end
    folds: list[dict[str, Any]]  # per fold: index, sizes, epochs, summary
    summary: dict[str, float] = field(default_factory=dict)  # see merge_summaries
    y_true: np.ndarray | None = None  # out-of-fold: every pool image, by the model that
    y_pred: np.ndarray | None = None  # did not train on it
    diverged: bool = False
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def train_folds(trial: optuna.Trial, data: Any, n_folds: int, *, build: Callable[[], Any],
                head: Any, settings: Any, metric: str, direction: str, seed: int,
                fold_seed: int, callbacks: Sequence[Any] = (),
                on_epoch: Callable[[int, dict[str, float]], None] | None = None,
                feature_cache_dir: str | None = None) -> CrossValResult:
    """Train ``build()`` on each fold of ``data`` (``models.folds.k_folds`` with
    ``fold_seed``: give every trial of a study the same one, so that all see the same folds).

    ``callbacks``: the trial's Keras callbacks, given to every fold. ``on_epoch`` gets the
    step across folds (the trial lifecycle reports it to the pruner, so pruning compares the
    same fold and epoch across trials). Per-fold summaries go into the trial's ``folds`` user
    attribute as they finish.
    """
    from tunelab.models.data.folds import k_folds
    from tunelab.models.training import predict_proba, seed_everything
    from tunelab.models.transfer import train_model

    history: dict[str, list[float]] = {}
    folds: list[dict[str, Any]] = []
    y_true, y_pred = [], []
    extras = []
    for fold in k_folds(data, n_folds, fold_seed):
        offset = fold.index * settings.max_epochs
        seed_everything(seed + fold.index)
        model = build()

        def fold_epoch(epoch: int, logs: dict[str, float], offset: int = offset) -> None:
            if on_epoch is not None:
                on_epoch(offset + epoch, logs)

        result = train_model(model, head, fold.data, replace(settings, seed=seed + fold.index),
                             callbacks=list(callbacks), on_epoch=fold_epoch,
                             feature_cache_dir=feature_cache_dir, fold=fold)
        for key, values in result.history.items():
            history.setdefault(key, []).extend(values)
        if result.extra:
            extras.append(dict(result.extra))
        if result.diverged:
            return CrossValResult(history, folds, diverged=True,
                                  reason=f"fold {fold.index}: {result.reason}",
                                  extra={"folds": extras} if extras else {})
        entry = {"fold": fold.index, "n_train": len(fold.train_rows),
                 "n_val": len(fold.val_rows),
                 "epochs": len(result.history.get("loss", [])),
                 "summary": summarize(result.history, metric, direction)}
        folds.append(entry)
        trial.set_user_attr("folds", folds)
        y_true.append(fold.data.val.y)
        y_pred.append(predict_proba(model, head, fold.data.val.x).argmax(axis=1))
    return CrossValResult(history, folds, merge_summaries([f["summary"] for f in folds], metric),
                          np.concatenate(y_true), np.concatenate(y_pred),
                          extra={"folds": extras} if extras else {})


def merge_summaries(summaries: Sequence[Mapping[str, float]], metric: str) -> dict[str, float]:
    """Fold summaries -> the trial's summary (see the module docstring)."""
    keys = [k for k in summaries[0] if all(k in s for s in summaries)]
    out: dict[str, float] = {k: float(np.mean([s[k] for s in summaries])) for k in keys}
    best = [float(s[f"best_{metric}"]) for s in summaries]
    out[f"fold_std_{metric}"] = float(np.std(best))
    for i, value in enumerate(best):
        out[f"fold_{i}_{metric}"] = value
        if "gap_accuracy" in summaries[i]:
            out[f"fold_{i}_gap_accuracy"] = float(summaries[i]["gap_accuracy"])
    if "overfitting" in out:
        flagged = sum(bool(s.get("overfitting")) for s in summaries)
        out["overfitting_folds"] = float(flagged)
        out["overfitting"] = float(flagged > len(summaries) / 2)
    out["cv_folds"] = float(len(summaries))
    return out
