"""Workers on PostgreSQL, a real tracking server, a killed worker, tracking down then sync."""

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml
from conftest import tiny_study
from mlflow import MlflowClient

pytestmark = pytest.mark.slow


def wait_for(predicate, timeout: float, step: float = 0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


def write_study(tmp_path, **overrides):
    raw = tiny_study(tmp_path, **overrides)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, raw


def tunelab(*args, cwd, env=None, check=True, timeout=600):
    result = subprocess.run([sys.executable, "-m", "tunelab", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def trial_runs(uri, name):
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None
    return [r for r in client.search_runs([experiment.experiment_id])
            if r.data.tags.get("tunelab.role") == "trial"]


def test_two_workers_on_postgres_finish_exactly_the_budget(tmp_path, postgres_url,
                                                           tunelab_server):
    path, _ = write_study(tmp_path, study_name="pg-two", n_trials=4, storage=postgres_url,
                          tracking_uri=tunelab_server, workers=2)
    tunelab("tune", str(path), cwd=tmp_path)
    study = optuna.load_study(study_name="pg-two", storage=postgres_url)
    finished = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE,
                                                       optuna.trial.TrialState.PRUNED)]
    assert len(finished) == 4
    assert len({tuple(sorted(t.params.items())) for t in finished}) == 4, "workers repeated"
    runs = trial_runs(tunelab_server, "pg-two")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert sorted(int(r.data.tags["tunelab.trial"]) for r in runs
                  if r.info.status == "FINISHED") == sorted(t.number for t in finished)


def test_killed_worker_trial_fails_and_is_retried(tmp_path, postgres_url, tunelab_server):
    path, _ = write_study(tmp_path, study_name="pg-kill", n_trials=3, storage=postgres_url,
                          tracking_uri=tunelab_server, heartbeat_interval=2, max_epochs=30,
                          **{"early_stopping.enabled": False})
    # create the study (budget 0 trials run: a timeout of 1 s ends it before any trial)
    tunelab("tune", str(path), "--timeout", "0.001", cwd=tmp_path)
    worker = subprocess.Popen([sys.executable, "-m", "tunelab", "worker", "--storage",
                               postgres_url, "--study-name", "pg-kill", "--tracking-uri",
                               tunelab_server], cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    def running_with_run():
        study = optuna.load_study(study_name="pg-kill", storage=postgres_url)
        return [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING
                and t.user_attrs.get("mlflow_run_id") and t.intermediate_values]

    victim = wait_for(running_with_run, timeout=240)[0]
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    tunelab("tune", str(path), "--max-epochs", "2", cwd=tmp_path)  # resumes; finds the stale
    study = optuna.load_study(study_name="pg-kill", storage=postgres_url)
    states = {t.number: t for t in study.trials}
    assert states[victim.number].state == optuna.trial.TrialState.FAIL
    # on one host the reaper sees the owner's pid gone before Optuna's heartbeat grace ends
    # (tunelab's retry: user attr retry_of); on another host Optuna's heartbeat fails it
    # (its retry: system attr failed_trial). Either way exactly one retry.
    retries = [t for t in study.trials if victim.number in (
        t.system_attrs.get("failed_trial"), t.user_attrs.get("retry_of"))]
    assert len(retries) == 1 and retries[0].params == victim.params
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(finished) == 3
    runs = trial_runs(tunelab_server, "pg-kill")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    killed = [r for r in runs if r.info.run_id == victim.user_attrs["mlflow_run_id"]][0]
    assert killed.info.status == "FAILED"
    reason = killed.data.tags["tunelab.reason"]
    assert "heartbeat" in reason or "is gone" in reason, reason


def test_study_survives_tracking_down_then_sync_logs_every_trial(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    path, raw = write_study(tmp_path, study_name="offline", tracking_uri=url)
    env = {**os.environ, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
           "MLFLOW_HTTP_REQUEST_TIMEOUT": "3"}
    result = tunelab("tune", str(path), cwd=tmp_path, env=env)
    assert "tunelab sync" in result.stderr
    study = optuna.load_study(study_name="offline", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(raw["storage"])))
    assert len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]) == 3
    server = subprocess.Popen(["tunelab", "server", "--port", str(port), "--no-dashboard",
                               "--backend-store-uri",
                               f"sqlite:///{tmp_path / 'late' / 'mlflow.db'}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        from tunelab.tracking.server import wait_until_up

        wait_until_up(url, timeout=120, process=server)
        result = tunelab("sync", "--study-name", "offline", "--storage", raw["storage"],
                         cwd=tmp_path)
        assert "logged 3 trial(s)" in result.stdout
        runs = trial_runs(url, "offline")
        assert sorted(int(r.data.tags["tunelab.trial"]) for r in runs) == [0, 1, 2]
        client = MlflowClient(tracking_uri=url)
        for run in runs:
            assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) == 2
            assert run.info.status == "FINISHED"
        again = tunelab("sync", "--study-name", "offline", "--storage", raw["storage"],
                        cwd=tmp_path)
        assert "already there" in again.stdout
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
