"""The names of the validation metrics a trial logs, without Keras.

Every epoch a trial logs ``val_loss`` and ``val_accuracy`` (Keras) and, from
``models.metrics.ValidationMetrics``, the names below. The config and the shell check the
objective metric and the early-stopping monitor against them before anything is trained:
a name no trial logs would otherwise train a whole trial and then fail.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

KERAS_METRICS = ("val_loss", "val_accuracy")
PER_CLASS_PREFIXES = ("val_precision_", "val_recall_", "val_f1_")
LOGGED_METRIC_FORMS = ("val_loss, val_accuracy, val_balanced_accuracy, val_f1_macro, "
                       "val_precision_<class>, val_recall_<class>, val_f1_<class>, and "
                       "val_auc (macro one-vs-rest for three or more classes)")


def metric_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("_") or "class"


def metric_names(class_names: Sequence[str], prefix: str = "val_") -> list[str]:
    """Every name ``classification_metrics`` produces for these classes."""
    names = ["balanced_accuracy", "f1_macro"]
    for c in class_names:
        names += [f"precision_{metric_safe(c)}", f"recall_{metric_safe(c)}",
                  f"f1_{metric_safe(c)}"]
    names.append("auc")
    return [prefix + n for n in names]


def logged_metrics(class_names: Sequence[str]) -> list[str]:
    """Every validation metric a trial on data with these classes logs, in log order."""
    return [*KERAS_METRICS, *metric_names(class_names)]


def may_be_logged(name: str) -> bool:
    """Whether some dataset's trials log ``name`` (the classes decide the per-class ones)."""
    if name in (*KERAS_METRICS, "val_balanced_accuracy", "val_f1_macro", "val_auc"):
        return True
    return any(name.startswith(p) and len(name) > len(p) for p in PER_CLASS_PREFIXES)
