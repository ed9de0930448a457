"""What the MLflow UI shows of a study, read back from a real SQLite store: the experiment's
kind, the saved runs view, run names that tell pruned and failed trials apart, run notes,
epochs counted from 1 (no training: the tracker is driven as the objective drives it)."""

import json

import pytest
from mlflow import MlflowClient

from tunelab.tracking import StudyTracker
from tunelab.tracking.ui import (
    EXPERIMENT_KIND_TAG,
    EXPERIMENT_KINDS,
    MODEL_TRAINING,
    NOTE_TAG,
    VIEW_NAME,
    VIEW_TAG,
    runs_url,
)

CONFIG = {"objective": {"metric": "val_accuracy"}, "model": "lenet",
          "space": {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
                    "optimizer": ["adam", "sgd"], "batch_size": 64,
                    "lenet": {"n_base": [8, 16]}}}
HISTORY = {"loss": [0.9, 0.5, 0.4], "val_loss": [0.8, 0.6, 0.7],
           "accuracy": [0.5, 0.8, 0.9], "val_accuracy": [0.55, 0.75, 0.7]}
SUMMARY = {"best_epoch": 2, "epochs_trained": 3, "best_val_accuracy": 0.75,
           "gap_accuracy": 0.05, "overfitting": 0.0}


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    """One store for the module: creating an SQLite store runs MLflow's migrations (seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('ui') / 'mlflow.db'}"


def test_experiment_view_names_and_notes(uri):
    tracker = StudyTracker(uri, "marks", background=False)
    client = MlflowClient(uri)
    experiment = client.get_experiment(tracker.experiment_id)
    assert MODEL_TRAINING in EXPERIMENT_KINDS  # a value MLflow's UI knows
    assert experiment.tags[EXPERIMENT_KIND_TAG] == "custom_model_development"

    tracker.start_study(config=CONFIG, space=CONFIG["space"], data_info={})
    view = json.loads(client.get_experiment(tracker.experiment_id).tags[VIEW_TAG])
    assert view["name"] == VIEW_NAME and isinstance(view["createdAt"], int)
    state = json.loads(view["state"])
    columns = state["selectedColumns"]
    assert {"params.`learning_rate`", "params.`optimizer`", "params.`lenet.n_base`",
            "metrics.`best_val_accuracy`", "metrics.`gap_accuracy`",
            "tags.`tunelab.state`"} <= set(columns)
    assert "params.`batch_size`" not in columns  # fixed, not searched
    assert state["orderByKey"] == "metrics.`best_val_accuracy`" and not state["orderByAsc"]

    params = {"model": "lenet", "loss": "categorical_crossentropy", "learning_rate": 0.003,
              "optimizer": "sgd", "batch_size": 64, "lenet.n_base": 8}
    ends = {0: ("COMPLETE", ""), 1: ("PRUNED", "pruned at epoch 2"),
            2: ("FAILED", "TrialDiverged: loss became NaN")}
    runs = {}
    for number, (state_name, reason) in ends.items():
        run = tracker.trial_run(number, params, seed=number, config=CONFIG, data_info={})
        for epoch in range(3):  # Keras counts epochs from 0
            run.epoch_ended(epoch, {k: v[epoch] for k, v in HISTORY.items()})
        run.finish(state=state_name, summary=SUMMARY, history=HISTORY, reason=reason)
        runs[number] = client.get_run(run.run_id)
    names = {n: r.info.run_name for n, r in runs.items()}
    assert names == {0: "trial-0000", 1: "trial-0001 (pruned)", 2: "trial-0002 (failed)"}
    assert [r.info.status for r in runs.values()] == ["FINISHED", "FINISHED", "FAILED"]
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "val_accuracy")]
    assert steps == [1, 2, 3]

    note = runs[1].data.tags[NOTE_TAG]
    assert "Trial 1: pruned (pruned at epoch 2)" in note
    assert "best epoch **2** of 3" in note and "**0.0500**" in note  # the gap
    assert "| learning_rate | 0.003 |" in note and "| lenet.n_base | 8 |" in note
    assert "batch_size" not in note  # fixed, not a key parameter
    assert tracker.parent.run_id in note
    assert "failed (TrialDiverged" in runs[2].data.tags[NOTE_TAG]

    top = [{"number": 0, "value": 0.75, "gap": 0.05, "best_epoch": 2, "epochs": 3,
            "state": "COMPLETE", "params": {"learning_rate": 0.003, "optimizer": "sgd"}}]
    tracker.finish_study(status="FINISHED", figures={},
                         summary={"n_complete": 1, "n_pruned": 1, "n_fail": 1},
                         top=top, config=CONFIG, html={"interactive": "<html></html>"})
    parent = client.get_run(tracker.parent.run_id)
    study_note = parent.data.tags[NOTE_TAG]
    assert "1 complete, 1 pruned, 1 failed" in study_note
    assert "| 0 | 0.7500 | 0.050 | 2/3 | learning_rate=0.003, optimizer=sgd |" in study_note
    assert "study/interactive.html" in {a.path for a in client.list_artifacts(
        tracker.parent.run_id, "study")}


def test_an_older_experiment_is_marked_and_links_open_model_training(uri):
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("old")  # as tunelab made them before
    StudyTracker(uri, "old", background=False)
    assert client.get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING
    url = runs_url("http://127.0.0.1:5000/", experiment_id)
    assert url == (f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs?"
                   "workflowType=machine_learning&viewStateShareKey=tunelab")
