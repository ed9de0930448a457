"""The selection rule on synthetic trial records, then on a real tiny study."""

import math

import pytest

from tunelab.search.selection import ObjectiveRule, TrialRecord, select
from tunelab.search.summary import summarize


def rec(number, value, gap, overfitting=False, feasible=True):
    return TrialRecord(number=number, value=value, metric=value, gap=gap,
                       overfitting=overfitting, feasible=feasible)


def test_best_validation_accuracy_with_large_gap_and_rising_val_loss_is_not_chosen():
    records = [rec(0, 0.94, gap=0.06, overfitting=True),  # BreastMNIST's 0.94 that tested 0.85
               rec(1, 0.90, gap=0.02), rec(2, 0.91, gap=0.12), rec(3, 0.80, gap=0.0)]
    selection = select(records, ObjectiveRule(gap_tolerance=0.05))
    assert selection.best_by_objective.number == 0
    assert selection.chosen.number == 1
    why = {v.record.number: v.reason for v in selection.verdicts}
    assert "gap 0.0600 > tolerance 0.05" in why[0] and "validation loss rose" in why[0]
    assert "gap 0.1200 > tolerance" in why[2]
    assert why[3] == "eligible, but trial 1 ranks higher"
    assert [v.rank for v in selection.verdicts] == [1, 2, 3, 4]
    assert "trial 0 has the best objective" in selection.explanation()


def test_minimized_objective_ranks_low_first_and_infeasible_is_skipped():
    records = [rec(0, 0.10, gap=0.0, feasible=False), rec(1, 0.20, gap=0.01),
               rec(2, 0.15, gap=0.01), rec(3, math.nan, gap=0.0)]
    selection = select(records, ObjectiveRule(metric="val_loss", direction="minimize",
                                              max_gap=0.1))
    assert [v.record.number for v in selection.verdicts] == [0, 2, 1]  # NaN dropped
    assert selection.chosen.number == 2
    assert selection.verdicts[0].reason.startswith("infeasible")


def test_no_trusted_trial_means_no_selection_and_says_what_to_do():
    selection = select([rec(0, 0.9, gap=0.3)], ObjectiveRule(gap_tolerance=0.05))
    assert selection.chosen is None
    assert "gap_tolerance" in selection.explanation()
    assert select([], ObjectiveRule()).chosen is None


def test_ties_go_to_the_smaller_gap():
    selection = select([rec(0, 0.9, gap=0.04), rec(1, 0.9, gap=0.01)], ObjectiveRule())
    assert selection.chosen.number == 1


@pytest.mark.parametrize("kind, direction, metric, expected", [
    ("metric", "maximize", 0.9, 0.9),
    ("penalized", "maximize", 0.9, 0.9 - 2.0 * (0.15 - 0.05)),
    ("penalized", "minimize", 0.3, 0.3 + 2.0 * (0.15 - 0.05)),
])
def test_objective_kinds(kind, direction, metric, expected):
    name = "val_accuracy" if direction == "maximize" else "val_loss"
    rule = ObjectiveRule(metric=name, direction=direction, kind=kind, gap_tolerance=0.05,
                         gap_penalty=2.0, max_gap=0.1)
    summary = {f"best_{name}": metric, "gap_accuracy": 0.15}
    assert rule.value(summary) == pytest.approx(expected)
    assert rule.constraint(summary) == pytest.approx(0.05)  # 0.15 - max_gap > 0: infeasible
    assert rule.value({f"best_{name}": metric, "gap_accuracy": 0.01}) == pytest.approx(metric)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="choose one of metric, penalized, pareto"):
        ObjectiveRule(kind="hypervolume")


def test_summary_has_the_overfitting_signals():
    history = {"loss": [1.0, 0.6, 0.4, 0.3, 0.2], "val_loss": [1.1, 0.7, 0.8, 0.9, 1.0],
               "accuracy": [0.5, 0.8, 0.9, 0.95, 0.99],
               "val_accuracy": [0.45, 0.75, 0.74, 0.73, 0.72]}
    s = summarize(history, "val_accuracy", "maximize")
    assert s["best_epoch"] == 2 and s["epochs_since_best"] == 3
    assert s["best_val_accuracy"] == 0.75 and s["best_accuracy"] == 0.8  # train at that epoch
    assert s["gap_accuracy"] == pytest.approx(0.05)
    assert s["gap_loss"] == pytest.approx(0.1)
    assert s["overfitting"] == 1.0
