"""objective.kind: pareto: a real two-objective study (metric, gap) on 8x8 digits, the Pareto
front on the parent run, `tunelab best` on the front, no pruning, and resume mismatches."""

import json
import warnings

import optuna
import pytest
from conftest import tiny_study
from mlflow import MlflowClient

import tunelab
from tunelab.cli import main
from tunelab.config import ConfigError, ConfigWarning, config_from_dict
from tunelab.registering import best, open_finished_study
from tunelab.search.selection import ObjectiveRule, TrialRecord, dominated_by, select
from tunelab.wiring import open_study

TOLERANCE = 0.5  # 2 epochs on digits: every gap is small, so the rule always has a choice


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pareto")
    # the default pruner (median) is asked for: the study must run with pruning off
    raw = tiny_study(tmp, **{"objective.kind": "pareto", "objective.gap_tolerance": TOLERANCE,
                             "pruner.kind": "median", "pruner.n_startup_trials": 0,
                             "pruner.n_warmup_steps": 0, "n_trials": 3})
    with pytest.warns(ConfigWarning, match="cannot prune multi-objective studies"):
        tunelab.tune(raw, in_process=True)
    return tmp, raw


def _front(study):
    return {t.number for t in study.best_trials}


def test_the_study_has_two_objectives_and_every_trial_two_values(study):
    _, raw = study
    opened = open_finished_study("tiny", raw["storage"])
    s = opened.study
    assert s.directions == [optuna.study.StudyDirection.MAXIMIZE,
                            optuna.study.StudyDirection.MINIMIZE]
    assert opened.config.pruner.kind == "none"
    trials = s.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 3
    for t in trials:
        summary = t.user_attrs["summary"]
        assert t.values == pytest.approx([summary["best_val_accuracy"],
                                          max(0.0, summary["gap_accuracy"])])
        assert t.intermediate_values == {}  # nothing reported: no pruning


def test_the_parent_run_has_the_pareto_front_plot(study):
    _, raw = study
    opened = open_finished_study("tiny", raw["storage"])
    client = MlflowClient(raw["tracking_uri"])
    parent = opened.study.user_attrs["mlflow_parent_run_id"]
    names = {a.path for a in client.list_artifacts(parent, "study")}
    assert "study/pareto_front.png" in names
    png = client.download_artifacts(parent, "study/pareto_front.png", str(study[0]))
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    summary = json.loads(open(client.download_artifacts(parent, "best_trial.json",
                                                        str(study[0]))).read())
    assert set(summary["pareto_front"]) == _front(opened.study)  # our front is Optuna's
    assert summary["best_trial"] in _front(opened.study)
    assert client.get_run(parent).data.metrics["n_pareto_front"] == len(_front(opened.study))


def test_best_picks_the_best_metric_on_the_front_and_marks_the_front(study, capsys):
    _, raw = study
    opened = open_finished_study("tiny", raw["storage"])
    front = [t for t in opened.study.best_trials
             if t.user_attrs["summary"]["gap_accuracy"] <= TOLERANCE]
    expected = max(front, key=lambda t: (t.values[0], -t.values[1], -t.number))
    selection = best("tiny", raw["storage"])
    assert selection.chosen is not None and selection.chosen.number == expected.number
    assert {v.record.number for v in selection.verdicts if v.on_front} == _front(opened.study)

    assert main(["best", "--storage", raw["storage"]]) == 0
    out = capsys.readouterr().out
    assert "Pareto front" in out and f"selected Pareto-front trial {expected.number}" in out


def test_resuming_with_the_other_kind_is_refused_and_writes_nothing(study):
    _, raw = study
    single = {**raw, "objective": {**raw["objective"], "kind": "metric"}}
    with pytest.raises(ConfigError, match="objective.kind: stored pareto vs new metric"):
        tunelab.tune(single, in_process=True)
    stored = open_finished_study("tiny", raw["storage"]).study
    assert stored.user_attrs["config"]["objective"]["kind"] == "pareto"
    assert len(stored.trials) == 3


def test_a_single_objective_study_cannot_become_multi_objective(tmp_path):
    raw = tiny_study(tmp_path)
    open_study(config_from_dict(raw), create=True)
    pareto = config_from_dict({**raw, "objective": {"kind": "pareto"}})
    with pytest.raises(ConfigError, match="exists with one objective.*asks for 2 objectives"):
        open_study(pareto, create=True)


def test_pareto_with_pruning_warns_and_turns_it_off_and_keras_tuner_is_refused(tmp_path):
    raw = tiny_study(tmp_path, **{"objective.kind": "pareto"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pruner none: nothing to warn about
        assert config_from_dict(raw).pruner.kind == "none"
    del raw["pruner"]  # the default pruner, median
    with pytest.warns(ConfigWarning, match=r"pruner\.kind 'median' is turned off"):
        config = config_from_dict(raw)
    assert config.pruner.kind == "none" and config.early_stopping.enabled
    with pytest.raises(ConfigError, match="pareto.*needs engine: optuna"):
        config_from_dict({**raw, "engine": "keras-tuner", "pruner": {"kind": "none"}})


def test_selection_keeps_to_the_front_and_the_gap_tolerance():
    rule = ObjectiveRule(kind="pareto", gap_tolerance=0.1)
    records = [TrialRecord(0, 0.95, metric=0.95, gap=0.20),  # front, gap too large
               TrialRecord(1, 0.90, metric=0.90, gap=0.05),  # front, chosen
               TrialRecord(2, 0.89, metric=0.89, gap=0.06),  # dominated by 1
               TrialRecord(3, 0.80, metric=0.80, gap=0.00),  # front
               TrialRecord(4, 0.79, metric=0.79, gap=-0.1)]  # a negative gap is no better
    assert dominated_by(records, "maximize") == {2: 1, 4: 3}
    selection = select(records, rule)
    assert selection.chosen.number == 1
    assert [v.on_front for v in selection.verdicts] == [True, True, False, True, False]
    assert "off the Pareto front (trial 1" in selection.verdicts[2].reason
    assert rule.directions == ["maximize", "minimize"]
    assert rule.objectives({"best_val_accuracy": 0.9, "gap_accuracy": 0.05}) == (0.9, 0.05)
    assert rule.objectives({"best_val_accuracy": 0.9, "gap_accuracy": -0.2}) == (0.9, 0.0)
