"""A real tiny study through the CLI: worker processes, a journal file, an SQLite MLflow store."""

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import tiny_study
from mlflow import MlflowClient

pytestmark = pytest.mark.slow


def run_tune(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "tunelab", "tune", *args], cwd=cwd,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    raw = tiny_study(tmp)
    (tmp / "study.yaml").write_text(yaml.safe_dump(raw))
    result = run_tune(tmp, "study.yaml")
    return tmp, result


def client_for(tmp: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}")


def test_optuna_trials_keep_results_without_mlflow(study_dir):
    tmp, _ = study_dir
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp / "mlruns" / "optuna.journal")))
    study = optuna.load_study(study_name="tiny", storage=storage)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 3
    for t in done:
        history = t.user_attrs["history"]
        assert len(history["loss"]) == len(history["val_accuracy"]) == 2
        assert 0.0 <= t.value <= 1.0
        assert t.value == pytest.approx(max(history["val_accuracy"]), abs=1e-5)
        assert t.user_attrs["summary"]["best_epoch"] in (1, 2)
        assert "gap_accuracy" in t.user_attrs["summary"]
        assert t.user_attrs["mlflow_run_id"]
    assert study.user_attrs["config"]["study_name"] == "tiny"


def test_parent_and_nested_runs_with_params_metrics_and_plots(study_dir):
    tmp, _ = study_dir
    client = client_for(tmp)
    experiment = client.get_experiment_by_name("tiny")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("tunelab.role") == "study"]
    trials = [r for r in runs if r.data.tags.get("tunelab.role") == "trial"]
    assert len(parents) == 1 and len(trials) == 3
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    parent_files = {f.path for f in client.list_artifacts(parent.info.run_id, "study")}
    assert {"study/optimization_history.png", "study/slice.png", "study/overfitting.png",
            "study/intermediate_values.png", "study/interactive.html"} <= parent_files
    note = parent.data.tags["mlflow.note.content"]  # the run's description in the UI
    assert "3 complete, 0 pruned, 0 failed" in note and "| trial | val_accuracy |" in note
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    top = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert {"config.yaml", "environment.json", "search_space.json", "best_trial.json"} <= top
    assert parent.data.params["data_fingerprint"]

    numbers = sorted(int(r.data.tags["tunelab.trial"]) for r in trials)
    assert numbers == [0, 1, 2]
    for run in trials:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["tunelab.study"] == "tiny"
        assert run.data.tags["tunelab.state"] == "COMPLETE"
        assert run.info.run_name == f"trial-{int(run.data.tags['tunelab.trial']):04d}"
        assert "best epoch" in run.data.tags["mlflow.note.content"]
        assert run.info.status == "FINISHED"
        params = run.data.params
        for key in ("learning_rate", "n_base", "batch_size", "dense_units", "model", "loss",
                    "seed", "data_fingerprint"):
            assert key in params, key
        assert params["model"] == "lenet"
        assert params["data_fingerprint"] == parent.data.params["data_fingerprint"]
        for key in ("loss", "val_loss", "accuracy", "val_accuracy", "learning_rate"):
            history = client.get_metric_history(run.info.run_id, key)
            assert [m.step for m in history] == [1, 2], key  # epochs counted from 1
        metrics = run.data.metrics
        for key in ("best_val_accuracy", "final_val_accuracy", "gap_accuracy", "best_epoch",
                    "n_params"):
            assert key in metrics, key
        files = {f.path for f in client.list_artifacts(run.info.run_id)}
        assert {"learning_curves.png", "confusion_matrix.png", "model_summary.txt",
                "config.yaml", "environment.json"} <= files
        local = Path(client.download_artifacts(run.info.run_id, "learning_curves.png",
                                               str(tmp / f"dl-{run.info.run_id}")))
        assert local.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        env = json.loads(Path(client.download_artifacts(
            run.info.run_id, "environment.json", str(tmp / f"env-{run.info.run_id}"))).read_text())
        assert env["packages"]["optuna"] and env["class_names"][0] == "0"


def test_output_names_best_trial_table_and_ui_command(study_dir):
    _, result = study_dir
    out = result.stdout
    assert "best trial: #" in out
    assert "top 3 trials" in out
    assert "browse the runs: tunelab server" in out
    # the link opens the study's runs table in model-training mode
    assert "/#/experiments/1/runs?workflowType=machine_learning&viewStateShareKey=tunelab" \
        in out
    assert "trial   0 [1/3] epoch   1/2" in out  # progress: trial, budget, epoch


def test_resume_adds_only_the_missing_trials(study_dir):
    tmp, _ = study_dir
    run_tune(tmp, "study.yaml", "--n-trials", "4")
    client = client_for(tmp)
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    trials = [r for r in runs if r.data.tags.get("tunelab.role") == "trial"]
    parents = [r for r in runs if r.data.tags.get("tunelab.role") == "study"]
    assert len(parents) == 1
    assert sorted(int(r.data.tags["tunelab.trial"]) for r in trials) == [0, 1, 2, 3]
