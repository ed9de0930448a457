"""A real tiny study (in process, SQLite MLflow store in tmp_path): the overfitting signals
reach Optuna and MLflow, the gap constraint is set, checkpoints stay bounded, `tunelab best`
prints the ranked table."""

import pytest
from conftest import tiny_study
from mlflow import MlflowClient

import tunelab
from tunelab.cli import main
from tunelab.registering import best, open_finished_study
from tunelab.wiring import checkpoint_dir, checkpoint_store

SIGNALS = ("best_val_accuracy", "best_accuracy", "gap_accuracy", "gap_loss", "overfitting",
           "epochs_since_best", "objective")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sel")
    raw = tiny_study(tmp, **{"objective.kind": "penalized", "objective.gap_penalty": 2.0,
                             "objective.gap_tolerance": 0.0, "objective.max_gap": 0.02,
                             "checkpoints.keep_top": 2, "n_trials": 3})
    tunelab.tune(raw, in_process=True)
    return tmp, raw


def test_signals_are_kept_in_optuna_and_logged_in_mlflow(study):
    tmp, raw = study
    opened = open_finished_study("tiny", raw["storage"])
    trials = opened.study.get_trials()
    assert len(trials) == 3
    client = MlflowClient(raw["tracking_uri"])
    for t in trials:
        summary = t.user_attrs["summary"]
        assert set(SIGNALS) <= set(summary)
        excess = max(0.0, summary["gap_accuracy"] - 0.0)
        assert t.value == pytest.approx(summary["best_val_accuracy"] - 2.0 * excess)
        assert t.constraints["gap"] == pytest.approx(summary["gap_accuracy"] - 0.02)
        metrics = client.get_run(t.user_attrs["mlflow_run_id"]).data.metrics
        assert set(SIGNALS) <= set(metrics)


def test_checkpoints_are_bounded_and_follow_the_rule(study):
    tmp, raw = study
    opened = open_finished_study("tiny", raw["storage"])
    store = checkpoint_store(opened.config)
    assert store.directory == checkpoint_dir(opened.config)
    assert store.directory.is_relative_to(tmp)
    saved = store.saved()
    assert len(saved) == 2
    selection = best("tiny", raw["storage"])
    if selection.chosen is not None:
        assert selection.chosen.number in saved
    for number, path in saved.items():
        assert path.with_suffix(".json").is_file()
        assert opened.study.trials[number].user_attrs["checkpoint"] == str(path)


def test_best_command_prints_the_ranked_table_and_the_reason(study, capsys):
    tmp, raw = study
    code = main(["best", "--storage", raw["storage"]])
    out = capsys.readouterr().out
    assert "gap acc" in out and "verdict" in out and "max_gap 0.02" in out
    selection = best("tiny", raw["storage"])
    if selection.chosen is None:
        assert code == 3 and "no trial qualifies" in out
    else:
        assert code == 0 and f"selected trial {selection.chosen.number}" in out


def test_best_names_what_is_missing(tmp_path, capsys):
    assert main(["best", "--storage", str(tmp_path / "nope.journal")]) == 2
    assert "no such journal file" in capsys.readouterr().err


def test_continue_resumes_from_the_checkpoint_and_logs_to_the_same_run(study, capsys):
    import json

    from tunelab.registering import continue_training

    tmp, raw = study
    opened = open_finished_study("tiny", raw["storage"])
    number, path = sorted(checkpoint_store(opened.config).saved().items())[0]
    before = json.loads(path.with_suffix(".json").read_text())
    summary = continue_training(number, 2, "tiny", raw["storage"])
    after = json.loads(path.with_suffix(".json").read_text())
    assert after["epochs_trained"] == before["epochs_trained"] + 2 == summary["epochs_trained"]
    assert after["history"]["loss"][:2] == before["history"]["loss"]
    run_id = opened.study.trials[number].user_attrs["mlflow_run_id"]
    steps = [m.step for m in MlflowClient(raw["tracking_uri"]).get_metric_history(run_id,
                                                                                   "val_loss")]
    assert steps == [1, 2, 3, 4]  # epochs counted from 1: 2 trained, then 2 continued
    assert f"logged to MLflow run {run_id}" in capsys.readouterr().out
    assert main(["continue", "--storage", raw["storage"], "--trial", "99", "--epochs", "1"]) == 2
    assert "has no checkpoint" in capsys.readouterr().err
