"""After a tracking outage, `tunelab sync` restores the whole study: every trial's run as a
live one (curves, confusion matrix, model summary), the parent run finished with its study
plots and best trial, nothing left RUNNING."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import tiny_study
from mlflow import MlflowClient

import tunelab
from tunelab.cli import main

LIVE_TRIAL_FILES = {"learning_curves.png", "confusion_matrix.png", "model_summary.txt",
                    "config.yaml", "environment.json"}
STUDY_FILES = {"best_trial.json", "study/optimization_history.png", "study/slice.png"}


# the benchmark's crash(): SIGKILL a `tunelab server` and the MLflow server in its own session
_spec = importlib.util.spec_from_file_location(
    "tunelab_benchmark_faults", Path(__file__).resolve().parents[2] / "benchmarks" / "faults.py")
_faults = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _faults  # its dataclasses look their module up there
_spec.loader.exec_module(_faults)
crash = _faults.crash


def runs_of(uri: str, name: str):
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None, f"no experiment {name!r} at {uri}"
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("tunelab.role") == "study"]
    trials = [r for r in runs if r.data.tags.get("tunelab.role") == "trial"]
    return client, parents, trials


def files_of(client, run_id: str) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id):
        found |= ({f.path for f in client.list_artifacts(run_id, item.path)} if item.is_dir
                  else {item.path})
    return found


def assert_restored(uri: str, name: str, study) -> None:
    client, parents, trials = runs_of(uri, name)
    assert len(parents) == 1, parents
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert STUDY_FILES <= files_of(client, parent.info.run_id)
    assert parent.data.tags["tunelab.best_trial"] == str(study.best_trial.number)
    numbers = sorted(int(r.data.tags["tunelab.trial"]) for r in trials)
    assert numbers == sorted(t.number for t in study.trials if t.state.name == "COMPLETE")
    assert not [r for r in trials if r.info.status == "RUNNING"]
    fingerprint = study.user_attrs["tunelab.identity"]["data"]["fingerprint"]
    for run in trials:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.params["data_fingerprint"] == fingerprint  # no trial of other data
        assert LIVE_TRIAL_FILES <= files_of(client, run.info.run_id), run.data.tags
        trial = study.trials[int(run.data.tags["tunelab.trial"])]
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert len(history) == len(trial.user_attrs["history"]["val_accuracy"])


def test_sync_after_tracking_was_down_restores_runs_and_finishes_the_parent(tmp_path, tools,
                                                                           monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    down = f"http://127.0.0.1:{tools.free_port()}"  # nothing listens there
    raw = tiny_study(tmp_path, n_trials=2, tracking_uri=down)
    study = tunelab.tune(raw, in_process=True)
    assert "tunelab sync --study-name tiny" in capsys.readouterr().err
    assert {t.state.name for t in study.trials} == {"COMPLETE"}
    back = f"sqlite:///{tmp_path / 'back' / 'mlflow.db'}"  # where tracking is now
    sync = ["sync", "--study-name", "tiny", "--storage", raw["storage"], "--tracking-uri", back]
    assert main(sync) == 0
    out = capsys.readouterr().out
    assert "logged 2 trial(s)" in out and "finished the study's parent run" in out
    assert_restored(back, "tiny", study)
    client, _, trials = runs_of(back, "tiny")
    assert "augmentation.png" in trials[0].data.tags["tunelab.synced.not_restored"]
    assert main(sync) == 0  # a second sync changes nothing
    out = capsys.readouterr().out
    assert "every trial was already there" in out and "finished" not in out
    assert len(runs_of(back, "tiny")[2]) == 2


@pytest.mark.slow
def test_tracking_server_killed_mid_study_then_sync(tmp_path, tools):
    """The server dies while trial 1 trains: the parent run and trial 1's run stay RUNNING in
    its store; once it is back, sync replaces trial 1's run, logs trial 2 and finishes the
    parent run."""
    port = tools.free_port()
    url = f"http://127.0.0.1:{port}"
    backend = f"sqlite:///{tmp_path / 'server' / 'mlflow.db'}"

    def server():
        proc = subprocess.Popen([sys.executable, "-m", "tunelab", "server", "--port", str(port),
                                 "--no-dashboard", "--backend-store-uri", backend],
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        from tunelab.tracking.server import wait_until_up

        wait_until_up(url, timeout=180, process=proc)
        return proc

    raw = tiny_study(tmp_path, n_trials=3, max_epochs=6, tracking_uri=url,
                     **{"early_stopping.enabled": False})
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(raw))
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",  # a dead server: at once
           "MLFLOW_HTTP_REQUEST_TIMEOUT": "60"}  # a live one on a loaded machine: seconds

    def trials():
        try:
            storage = optuna.storages.JournalStorage(
                optuna.storages.journal.JournalFileBackend(raw["storage"]))
            return optuna.load_study(study_name="tiny", storage=storage).trials
        except (FileNotFoundError, KeyError):  # the study is not made yet
            return []

    first = server()
    try:
        tune = subprocess.Popen([sys.executable, "-m", "tunelab", "tune", "study.yaml"],
                                cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 400
        while time.time() < deadline:
            if any(t.number == 1 and t.state.name == "RUNNING"
                   and len(t.intermediate_values) >= 2 for t in trials()):
                break
            time.sleep(0.3)
        else:
            tune.kill()
            pytest.fail("trial 1 never trained")
        _, parents, live = runs_of(url, "tiny")  # tracking worked until now
        assert len(parents) == 1 and {r.data.tags["tunelab.trial"] for r in live} == {"0", "1"}
    except BaseException:
        tune.kill()
        raise
    finally:
        crash(first)  # also when the test failed: no server outlives it
    out, _ = tune.communicate(timeout=600)
    assert tune.returncode == 0, out[-3000:]
    assert "tracking error" in out
    study = optuna.load_study(study_name="tiny", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(raw["storage"])))
    assert sum(t.state.name == "COMPLETE" for t in study.trials) == 3
    second = server()
    try:
        _, parents, trials = runs_of(url, "tiny")
        assert parents[0].info.status == "RUNNING"  # what the outage left
        result = tools.run_cli("sync", "--study-name", "tiny", "--storage", raw["storage"],
                               cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "finished the study's parent run" in result.stdout
        assert_restored(url, "tiny", study)
    finally:
        os.killpg(second.pid, signal.SIGTERM)
        second.wait(timeout=30)
