"""Selection methods on a synthetic study: a few truly better trials among many noisy equal
ones. Over 50 seeds each method must pick trials of higher mean true quality than the best
validation score does (the winner's curse), and never a chance-level trial."""

import numpy as np
import pytest

from tunelab.search.selection import ObjectiveRule, TrialRecord, is_chance_level, select
from tunelab.search.selection_methods import (
    SELECTION_METHODS,
    Confirmation,
    choose,
    confirmations_from_records,
    ensemble_mean,
)

RULE = ObjectiveRule(metric="val_auc", gap_tolerance=0.05, gap_penalty=1.0)


def synthetic_study(seed: int, n: int = 80, n_good: int = 4):
    """True quality q: 0.80 for most trials, 0.85 for ``n_good``. A trial's validation score is
    q + a (its fit to these particular validation images, kept by every rerun on them) + e
    (training-seed noise) + (0.03 when it overfits: best-epoch selection on the validation
    curve inflates a model that overfits, whose true quality is 0.03 lower and whose train /
    validation gap is large). Seed reruns redraw e; cross-validation folds redraw a and e."""
    rng = np.random.default_rng(seed)
    q = np.full(n, 0.80)
    q[rng.choice(n, n_good, replace=False)] = 0.85
    overfit = rng.random(n) < 0.3
    q = q - 0.03 * overfit
    a = rng.normal(0, 0.02, n)
    val = q + a + rng.normal(0, 0.025, n) + 0.03 * overfit
    gap = np.where(overfit, rng.normal(0.12, 0.03, n), rng.normal(0.02, 0.02, n))
    records = [TrialRecord(number=i, value=float(val[i]), metric=float(val[i]),
                           gap=float(gap[i])) for i in range(n)]

    def rerun(i, kind, k):
        if kind == "seeds":
            return tuple(q[i] + a[i] + rng.normal(0, 0.025, k) + 0.03 * overfit[i])
        return tuple(q[i] + rng.normal(0, 0.04, k) + rng.normal(0, 0.025, k))

    return records, q, rerun


@pytest.mark.parametrize("method, kind", [("gap_penalized", None), ("confirm_mean", "seeds"),
                                          ("confirm_lcb", "seeds"), ("confirm_mean", "cv"),
                                          ("confirm_lcb", "cv")])
def test_each_method_picks_truly_better_trials_than_best_validation(method, kind):
    baseline, picked = [], []
    for seed in range(50):
        records, q, rerun = synthetic_study(seed)
        base = choose(records, "best_validation", RULE)
        top = [r.number for r in sorted(records, key=lambda r: -r.value)[:5]]
        confirmations = {i: Confirmation(i, rerun(i, kind, 3 if kind == "seeds" else 5),
                                         kind) for i in top} if kind else {}
        choice = choose(records, method, RULE, confirmations=confirmations, top=5)
        assert choice.confirmed == (kind is not None)
        baseline.append(q[base.chosen.number])
        picked.append(q[choice.chosen.number])
    assert np.mean(picked) > np.mean(baseline) + 0.005, (np.mean(picked), np.mean(baseline))


def test_confirmed_estimate_is_less_optimistic_than_the_best_validation_score():
    drops_best, drops_cv = [], []
    for seed in range(50):
        records, q, rerun = synthetic_study(seed)
        base = choose(records, "best_validation", RULE)
        top = [r.number for r in sorted(records, key=lambda r: -r.value)[:5]]
        cv = choose(records, "confirm_mean", RULE, top=5,
                    confirmations={i: Confirmation(i, rerun(i, "cv", 5), "cv") for i in top})
        drops_best.append(base.estimate - q[base.chosen.number])
        drops_cv.append(cv.estimate - q[cv.chosen.number])
    assert np.median(drops_best) > 0.05  # the winner's curse
    assert abs(np.median(drops_cv)) < 0.02


def test_lcb_prefers_the_steady_candidate_and_unconfirmed_falls_back():
    records = [TrialRecord(0, 0.95, 0.95, 0.0), TrialRecord(1, 0.90, 0.90, 0.0),
               TrialRecord(2, 0.85, 0.85, 0.0)]
    conf = {0: Confirmation(0, (0.99, 0.71)), 1: Confirmation(1, (0.84, 0.86))}
    assert choose(records, "confirm_mean", RULE, confirmations=conf).chosen.number == 0
    lcb = choose(records, "confirm_lcb", RULE, confirmations=conf)
    assert lcb.chosen.number == 1 and lcb.estimate == pytest.approx(0.85)
    fallback = choose(records, "confirm_mean", RULE)
    assert not fallback.confirmed and "not confirmed" in fallback.reason
    assert fallback.chosen.number == 0
    with pytest.raises(ValueError, match="choose one of"):
        choose(records, "luck", RULE)
    assert set(SELECTION_METHODS) >= {"best_validation", "gap_penalized", "confirm_mean",
                                      "confirm_lcb"}


def test_chance_level_trials_are_flagged_and_never_picked():
    always_benign = {"best_val_accuracy": 0.73, "majority_share": 0.7308,
                     "best_val_balanced_accuracy": 0.5, "n_classes": 2}
    assert is_chance_level(always_benign)
    assert is_chance_level({"best_val_balanced_accuracy": 0.51, "n_classes": 2})
    assert not is_chance_level({"best_val_accuracy": 0.85, "majority_share": 0.73,
                                "best_val_balanced_accuracy": 0.8, "n_classes": 2})
    records = [TrialRecord(0, 0.99, 0.99, 0.0, chance_level=True),
               TrialRecord(1, 0.80, 0.80, 0.0)]
    for method in SELECTION_METHODS:
        assert choose(records, method, RULE,
                      confirmations={0: Confirmation(0, (1.0,))}).chosen.number == 1
    selection = select(records, RULE)
    assert selection.chosen.number == 1 and "chance-level" in records[0].flags
    assert "chance level" in selection.verdicts[0].reason


def test_confirmations_are_read_from_the_records():
    r = TrialRecord(3, 0.9, extra={"confirmations": [{"kind": "seeds", "seed": 1, "score": 0.8},
                                                     {"kind": "seeds", "seed": 2, "score": 0.7}]})
    conf = confirmations_from_records([r, TrialRecord(4, 0.5)])
    assert list(conf) == [3] and conf[3].mean == pytest.approx(0.75)


def test_ensemble_probabilities_are_the_mean_of_its_members():
    a = [[0.9, 0.1], [0.2, 0.8]]
    b = [[0.5, 0.5], [0.4, 0.6]]
    np.testing.assert_allclose(ensemble_mean([a, b]), [[0.7, 0.3], [0.3, 0.7]])


def test_unconfirmed_pick_when_the_rule_trusts_no_trial():
    """Every gap above the tolerance (a small lab set) and no confirmation yet: a confirm_*
    method falls back to the best eligible objective, not to no pick, and says why."""
    from tunelab.search.selection_methods import select_by_method

    records = [TrialRecord(0, 0.90, 0.90, 0.20), TrialRecord(1, 0.95, 0.95, 0.30)]
    assert select(records, RULE).chosen is None
    picked = select_by_method(records, RULE, "confirm_mean")
    assert picked.chosen.number == 1 and not picked.choice.confirmed
    assert "by confirm_mean: not confirmed" in picked.explanation()
    assert "gap 0.3000" in picked.explanation()
    assert select_by_method(records, RULE, "rule").chosen is None
