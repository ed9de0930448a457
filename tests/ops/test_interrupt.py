"""Ctrl-C mid-study, then the same command resumes without duplicating finished trials.

The interrupted study runs on a pseudo-terminal, with the live display, as a user sees it."""

import subprocess
import sys
import time
from collections import Counter

import optuna
import pytest
import yaml
from conftest import tiny_study
from mlflow import MlflowClient
from terminal_io import PtyRun, screen_lines

pytestmark = pytest.mark.slow


def test_ctrl_c_then_resume(tmp_path):
    raw = tiny_study(tmp_path, study_name="interrupted", n_trials=3, max_epochs=40,
                     **{"early_stopping.enabled": False})
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "mlruns").mkdir(exist_ok=True)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(raw["storage"]))
    proc = PtyRun(["tune", "study.yaml"], tmp_path, columns=80)
    deadline = time.time() + 300
    while time.time() < deadline:  # wait until trial 1 is training
        proc.read(0.5)
        try:
            trials = optuna.load_study(study_name="interrupted", storage=storage).trials
        except KeyError:
            trials = []
        if any(t.number == 1 and t.state.name == "RUNNING" and t.intermediate_values
               for t in trials):
            break
    else:
        proc.finish(timeout=1)
        pytest.fail("trial 1 never started")
    assert "\x1b[?25l" in proc.text  # the live display is up (rich hid the cursor)
    proc.interrupt()  # what Ctrl-C in a terminal does
    returncode = proc.finish(timeout=180)
    out = "\n".join(screen_lines(proc.text))
    assert returncode == 130, out[-3000:]
    assert "Run the same command again" in out
    assert "trial   0 complete" in out and "trial   1 failed" in out, out[-3000:]
    assert "\x1b[?25h" in proc.text  # the display stopped and gave the cursor back
    study = optuna.load_study(study_name="interrupted", storage=storage)
    assert study.trials[1].state == optuna.trial.TrialState.FAIL
    client = MlflowClient(tracking_uri=raw["tracking_uri"])
    experiment = client.get_experiment_by_name("interrupted")
    runs = {r.data.tags["tunelab.trial"]: r for r in client.search_runs(
        [experiment.experiment_id]) if r.data.tags.get("tunelab.role") == "trial"}
    assert runs["0"].info.status == "FINISHED"
    assert runs["1"].info.status == "KILLED"

    raw["max_epochs"] = 1
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(raw))
    resumed = subprocess.run([sys.executable, "-m", "tunelab", "tune", "study.yaml"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    study = optuna.load_study(study_name="interrupted", storage=storage)
    complete = [t.number for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 3 and 0 in complete
    trial_runs = [r for r in client.search_runs([experiment.experiment_id])
                  if r.data.tags.get("tunelab.role") == "trial"]
    per_trial = Counter(r.data.tags["tunelab.trial"] for r in trial_runs)
    assert max(per_trial.values()) == 1, per_trial
    assert not [r for r in trial_runs if r.info.status == "RUNNING"]
    parents = [r for r in client.search_runs([experiment.experiment_id])
               if r.data.tags.get("tunelab.role") == "study"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
