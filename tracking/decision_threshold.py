"""A thin decision-threshold fitter for binary tasks (``registry.threshold``).

``fit_threshold(y_true, prob_positive, rule)`` has the signature of
``tracking.clinical_metrics.fit_threshold`` (another branch); swap this module for that one
when both are merged. Rules: ``"accuracy"`` (the threshold of highest accuracy), ``"youden"``
(highest sensitivity + specificity - 1), ``{"sensitivity": t}`` (the highest threshold whose
sensitivity is at least t). Ties go to the threshold closest to 0.5. A sample is called
positive when ``prob_positive >= threshold``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _candidates(p: np.ndarray) -> np.ndarray:
    u = np.unique(p)
    mids = (u[:-1] + u[1:]) / 2.0 if len(u) > 1 else u
    return np.unique(np.concatenate([mids, [0.5]]))


def fit_threshold(y_true: Sequence[int], prob_positive: Sequence[float],
                  rule: str | Mapping[str, Any]) -> float:
    y = np.asarray(y_true).astype(int)
    p = np.asarray(prob_positive, dtype="float64")
    if rule in (None, "argmax"):
        return 0.5
    cands = _candidates(p)
    pos, neg = max(1, int((y == 1).sum())), max(1, int((y == 0).sum()))
    called = p[None, :] >= cands[:, None]
    tpr = (called & (y == 1)).sum(axis=1) / pos
    tnr = (~called & (y == 0)).sum(axis=1) / neg
    if isinstance(rule, Mapping):
        target = float(rule["sensitivity"])
        ok = np.flatnonzero(tpr >= target - 1e-12)
        return float(cands[ok.max()]) if ok.size else float(cands.min())
    if rule == "accuracy":
        score = (called == (y == 1)).mean(axis=1)
    elif rule == "youden":
        score = tpr + tnr - 1.0
    else:
        raise ValueError(f"threshold rule {rule!r}: use accuracy, youden or "
                         "{sensitivity: t}")
    best = np.flatnonzero(score >= score.max() - 1e-12)
    return float(cands[best[np.argmin(np.abs(cands[best] - 0.5))]])
