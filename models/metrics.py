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
    """scikit-learn's values (``precision_recall_fscore_support`` with ``zero_division=0``,
    ``balanced_accuracy_score``, ``roc_auc_score``; tests/models/test_metrics_numpy.py checks
    them against it) from one confusion matrix and one ranking in NumPy: scikit-learn's input
    validation cost 2.5 ms an epoch on two classes and 14 ms on ten, several times the
    validation pass it follows."""
    y_true = np.asarray(y_true).reshape(-1).astype("int64")
    proba = np.asarray(proba, dtype="float64")
    k = len(class_names)
    y_pred = proba.argmax(axis=1)
    cm = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype("float64")
    predicted, actual = cm.sum(axis=0).astype("float64"), cm.sum(axis=1).astype("float64")
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros(k), where=actual > 0)
    f1 = np.divide(2 * tp, predicted + actual, out=np.zeros(k), where=predicted + actual > 0)
    out = {"balanced_accuracy": float(recall[actual > 0].mean()) if actual.any() else 0.0,
           "f1_macro": float(np.mean(f1))}
    for i, c in enumerate(class_names):
        safe = metric_safe(c)
        out[f"precision_{safe}"] = float(precision[i])
        out[f"recall_{safe}"] = float(recall[i])
        out[f"f1_{safe}"] = float(f1[i])
    if (actual == 0).any():
        out["auc"] = float("nan")  # undefined while a class is missing from the split
    elif k == 2:
        out["auc"] = binary_auc(y_true == 1, proba[:, 1])
    else:
        # rows renormalized: hinge heads' scores need not sum to 1 (scikit-learn requires
        # it), then macro one-vs-rest
        p = np.clip(proba, 1e-12, None)
        p = p / p.sum(axis=1, keepdims=True)
        out["auc"] = float(np.mean([binary_auc(y_true == c, p[:, c]) for c in range(k)]))
    return out


def binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic, ties at half (scikit-learn's value)."""
    positive = np.asarray(positive, dtype=bool)
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse.reshape(-1)]  # average ranks
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


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
