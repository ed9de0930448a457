"""tunelab studies: list, export, delete (with the MLflow runs and artifacts)."""

import csv
import subprocess
import sys
from pathlib import Path

from conftest import tiny_study
from mlflow import MlflowClient

import tunelab


def cli(*args, cwd):
    result = subprocess.run([sys.executable, "-m", "tunelab", *args], cwd=cwd,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_list_export_and_delete_with_runs(in_tmp):
    raw = tiny_study(in_tmp, fresh_store=True, study_name="managed", n_trials=2, max_epochs=1)
    tunelab.tune(raw, in_process=True)
    storage = raw["storage"]
    listing = cli("studies", "--storage", storage, cwd=in_tmp)
    assert "managed" in listing and "sqlite:///" in listing
    out = in_tmp / "trials.csv"
    cli("studies", "export", "managed", "--storage", storage, "-o", str(out), cwd=in_tmp)
    rows = list(csv.DictReader(out.open()))
    assert [r["number"] for r in rows] == ["0", "1"]
    assert all(r["state"] == "COMPLETE" for r in rows)

    client = MlflowClient(tracking_uri=raw["tracking_uri"])
    experiment = client.get_experiment_by_name("managed")
    artifacts = Path(experiment.artifact_location.removeprefix("file://"))
    assert artifacts.exists()
    said = cli("studies", "delete", "managed", "--storage", storage, "--runs", cwd=in_tmp)
    assert "deleted study 'managed'" in said
    assert "managed" not in cli("studies", "--storage", storage, cwd=in_tmp)
    assert client.get_experiment_by_name("managed") is None
    assert not artifacts.exists()
