"""Metrics that tell a classifier of rare lesions from one that ignores them.

Per epoch, ``ValidationMetrics`` predicts the validation split and adds to the Keras logs
(so early stopping, pruning and the objective may monitor any of them):

    val_balanced_accuracy, val_f1_macro,
    val_precision_<class>, val_recall_<class>, val_f1_<class>   (every class)
    val_auc              ROC AUC (two classes); macro one-vs-rest ROC AUC (three or more)

Class names are made metric-safe (letters, digits, ``_``, ``-``, ``.``).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from .metric_names import metric_names, metric_safe  # noqa: F401  (the names live there)


def classification_metrics(y_true: np.ndarray, proba: np.ndarray,
                           class_names: Sequence[str]) -> dict[str, float]:
    from sklearn.metrics import (
        balanced_accuracy_score,
        precision_recall_fscore_support,
        roc_auc_score,
    )

    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(proba).argmax(axis=1)
    labels = list(range(len(class_names)))
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    out = {"balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
           "f1_macro": float(np.mean(f1))}
    for i, c in enumerate(class_names):
        safe = metric_safe(c)
        out[f"precision_{safe}"] = float(precision[i])
        out[f"recall_{safe}"] = float(recall[i])
        out[f"f1_{safe}"] = float(f1[i])
    proba = np.asarray(proba)
    if len(np.unique(y_true)) != len(class_names):
        out["auc"] = float("nan")  # undefined while a class is missing from the split
    elif len(class_names) == 2:
        out["auc"] = float(roc_auc_score(y_true, proba[:, 1]))
    else:
        # rows renormalized: hinge heads' scores need not sum to 1, and sklearn requires it
        p = np.clip(proba, 1e-12, None)
        out["auc"] = float(roc_auc_score(y_true, p / p.sum(axis=1, keepdims=True),
                                         multi_class="ovr", average="macro", labels=labels))
    return out


class ValidationMetrics(keras.callbacks.Callback):
    """Adds ``val_<metric>`` entries to each epoch's logs; must run before the callbacks
    that read them (early stopping, pruning, the epoch hook)."""

    def __init__(self, x_val, y_val: np.ndarray, probabilities, class_names: Sequence[str],
                 batch_size: int = 256):
        super().__init__()
        self.x_val, self.y_val = x_val, np.asarray(y_val)
        self.probabilities = probabilities  # model outputs -> (N, n_classes)
        self.class_names = tuple(class_names)
        self.batch_size = batch_size

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        outputs = predict_in_batches(self.model, self.x_val, self.batch_size)
        proba = self.probabilities(outputs)
        if not np.all(np.isfinite(proba)):
            return  # a diverged model: the NaN guard reports it
        for key, value in classification_metrics(self.y_val, proba, self.class_names).items():
            logs[f"val_{key}"] = value


def predict_in_batches(model: keras.Model, x, batch_size: int = 256) -> np.ndarray:
    """``model.predict`` without its per-call set-up (a data adapter, an epoch iterator and
    callbacks: about 6x the compute of a few hundred small images, every epoch): the
    model's one predict function on each batch. Same outputs (inference mode)."""
    if not hasattr(x, "__len__") or not hasattr(x, "__getitem__"):
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    parts = [np.asarray(model.predict_on_batch(x[i:i + batch_size]))
             for i in range(0, len(x), batch_size)]
    return np.concatenate(parts) if parts else np.asarray(model.predict(x, verbose=0))


def balanced_class_weights(y: np.ndarray, n_classes: int) -> dict[int, float]:
    """``n / (k * count_c)``, as scikit-learn's ``class_weight='balanced'``."""
    counts = np.bincount(np.asarray(y).reshape(-1), minlength=n_classes).astype("float64")
    return {i: float(len(y) / (n_classes * c)) if c else 0.0 for i, c in enumerate(counts)}
