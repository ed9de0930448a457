"""The per-epoch validation metrics, computed in NumPy, are scikit-learn's values."""

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, precision_recall_fscore_support, roc_auc_score

from tunelab.models.metrics import binary_auc, classification_metrics


def _sklearn(y, proba, k):
    y_pred = proba.argmax(axis=1)
    precision, recall, f1, _ = precision_recall_fscore_support(
        y, y_pred, labels=list(range(k)), zero_division=0)
    if k == 2:
        auc = roc_auc_score(y, proba[:, 1])
    else:
        p = np.clip(proba, 1e-12, None)
        auc = roc_auc_score(y, p / p.sum(axis=1, keepdims=True), multi_class="ovr",
                            average="macro", labels=list(range(k)))
    return balanced_accuracy_score(y, y_pred), f1.mean(), precision, recall, f1, auc


@pytest.mark.parametrize("k", [2, 3, 10])
def test_numpy_metrics_are_sklearns(k):
    names = [f"c{i}" for i in range(k)]
    checked = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(2 * k, 200))
        y = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])  # every class present
        if seed % 3 == 0:  # coarse scores: many ties, some classes never predicted
            proba = rng.integers(0, 3, (n, k)).astype(float) / 2
        elif seed % 3 == 1:  # hinge-like scores that do not sum to 1
            proba = rng.normal(size=(n, k))
        else:
            proba = rng.dirichlet(np.ones(k), size=n)
            proba[np.arange(n), y] += rng.uniform(0, 0.5, n)  # better than chance
        ours = classification_metrics(y, proba, names)
        bal, f1_macro, precision, recall, f1, auc = _sklearn(y, proba, k)
        assert ours["balanced_accuracy"] == pytest.approx(bal, abs=1e-12)
        assert ours["f1_macro"] == pytest.approx(f1_macro, abs=1e-12)
        for i, c in enumerate(names):
            assert ours[f"precision_{c}"] == pytest.approx(precision[i], abs=1e-12)
            assert ours[f"recall_{c}"] == pytest.approx(recall[i], abs=1e-12)
            assert ours[f"f1_{c}"] == pytest.approx(f1[i], abs=1e-12)
        assert ours["auc"] == pytest.approx(auc, abs=1e-12)
        checked += 1
    assert checked == 60


def test_auc_with_ties_and_a_missing_class():
    assert binary_auc(np.array([0, 0, 1, 1]), np.array([0.5, 0.5, 0.5, 0.5])) == 0.5
    assert binary_auc(np.array([0, 1]), np.array([0.9, 0.1])) == 0.0
    y = np.array([0, 0, 1, 1])
    m = classification_metrics(y, np.eye(3)[[0, 1, 1, 2]], ["a", "b", "c"])
    assert np.isnan(m["auc"])  # class c has no validation image
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, [0, 1, 1, 2]))
