"""One trial as k-fold cross-validation: a fresh model per fold, the folds' summaries merged.

Folds train one after the other with the trial's hyperparameters and seed ``seed + fold``.
Epochs are counted across folds: fold ``f``'s epoch ``e`` is step ``f * max_epochs + e``, both
for pruning (every trial reports fold 0 first, so a median or successive-halving pruner
compares the same fold and epoch across trials) and for the per-epoch MLflow curves.

The trial's summary holds the mean over folds of every per-fold summary value (so the
objective is the mean best-epoch metric and the gap signals are mean gaps), ``fold_std_<metric>``
(population standard deviation, as numpy and scikit-learn report it), ``fold_<i>_<metric>``,
``cv_folds``, and ``overfitting`` set when most folds (more than half) were flagged.

Every fold's model also predicts its held-out part: the trial's **out-of-fold** raw head
outputs (:class:`OutOfFold`, one row per pool image, each from the one model that did not
train on it). The trial keeps them beside its would-be checkpoint (``top_checkpoints``), and
``tunelab register`` fits the calibration and the operating point of the model retrained on
the whole pool on them: out of sample, as scikit-learn's
``CalibratedClassifierCV(ensemble=False)`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from .summary import summarize


@dataclass(frozen=True)
class OutOfFold:
    """A cross-validated trial's out-of-fold predictions, in pool row order (train rows,
    then validation rows, as ``models.data.folds.pool_of``)."""

    outputs: np.ndarray  # (n, d) raw head outputs (margins for a hinge head)
    y: np.ndarray  # (n,) labels
    rows: np.ndarray  # (n,) pool rows
    fold: np.ndarray  # (n,) the fold whose model predicted the row
    loss: str  # the head the outputs come from
    fingerprint: str = ""  # the data's fingerprint when they were made

    @property
    def n_folds(self) -> int:
        return int(self.fold.max()) + 1 if len(self.fold) else 0

    def save(self, path: str | Path) -> Path:
        """An ``.npz`` (numpy only), written to a temporary name then moved into place."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        with open(part, "wb") as f:
            np.savez(f, **self.arrays())
        part.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> OutOfFold:
        with np.load(path, allow_pickle=False) as f:
            return cls(f["outputs"], f["y"], f["rows"], f["fold"], str(f["loss"]),
                       str(f["fingerprint"]))

    def arrays(self) -> dict[str, np.ndarray]:
        """What goes into the ``.npz`` (the trial's MLflow run logs the same file)."""
        return {"outputs": self.outputs, "y": self.y, "rows": self.rows, "fold": self.fold,
                "loss": np.array(self.loss), "fingerprint": np.array(self.fingerprint)}


@dataclass
class CrossValResult:
    history: dict[str, list[float]]  # every fold's epochs, end to end
    folds: list[dict[str, Any]]  # per fold: index, sizes, epochs, summary
    summary: dict[str, float] = field(default_factory=dict)  # see merge_summaries
    y_true: np.ndarray | None = None  # out-of-fold: every pool image, by the model that
    y_pred: np.ndarray | None = None  # did not train on it
    out_of_fold: OutOfFold | None = None  # their raw outputs, for the calibration
    diverged: bool = False
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def train_folds(trial: optuna.Trial | None, data: Any, n_folds: int, *, build: Callable[[], Any],
                head: Any, settings: Any, metric: str, direction: str, seed: int,
                fold_seed: int, callbacks: Sequence[Any] = (),
                on_epoch: Callable[[int, dict[str, float]], None] | None = None,
                feature_cache_dir: str | None = None) -> CrossValResult:
    """Train ``build()`` on each fold of ``data`` (``models.folds.k_folds`` with
    ``fold_seed``: give every trial of a study the same one, so that all see the same folds).

    ``callbacks``: the trial's Keras callbacks, given to every fold. ``on_epoch`` gets the
    step across folds (the trial lifecycle reports it to the pruner, so pruning compares the
    same fold and epoch across trials). Per-fold summaries go into the trial's ``folds`` user
    attribute as they finish (``trial`` None: outside a study, as ``trial.out_of_fold``).
    """
    from tunelab.models.data.folds import k_folds
    from tunelab.models.metrics import predict_in_batches
    from tunelab.models.training import seed_everything
    from tunelab.models.transfer import train_model

    history: dict[str, list[float]] = {}
    folds: list[dict[str, Any]] = []
    y_true, y_pred, outputs, rows, fold_of = [], [], [], [], []
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
        if trial is not None:
            trial.set_user_attr("folds", folds)
        raw = predict_in_batches(model, fold.data.val.x)  # not model.predict's set-up
        y_true.append(np.asarray(fold.data.val.y))
        y_pred.append(head.probabilities(raw).argmax(axis=1))
        outputs.append(raw)
        rows.append(np.asarray(fold.val_rows))
        fold_of.append(np.full(len(fold.val_rows), fold.index))
    rows_all = np.concatenate(rows)
    order = np.argsort(rows_all, kind="stable")  # pool row order
    oof = OutOfFold(np.concatenate(outputs)[order], np.concatenate(y_true)[order],
                    rows_all[order], np.concatenate(fold_of)[order], head.loss,
                    data.fingerprint())
    return CrossValResult(history, folds, merge_summaries([f["summary"] for f in folds], metric),
                          np.concatenate(y_true), np.concatenate(y_pred), oof,
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
