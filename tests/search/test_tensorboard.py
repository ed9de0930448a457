"""Per-trial TensorBoard logs land in the trial's MLflow run."""

import pytest
from conftest import tiny_study
from mlflow import MlflowClient

import tunelab


def test_tensorboard_logs_are_run_artifacts(in_tmp):
    pytest.importorskip("tensorboard", reason="pip install 'tunelab[tensorboard]'")
    raw = tiny_study(in_tmp, study_name="tb", n_trials=1, max_epochs=1, tensorboard=True)
    tunelab.tune(raw, in_process=True)
    client = MlflowClient(tracking_uri=raw["tracking_uri"])
    experiment = client.get_experiment_by_name("tb")
    (run,) = [r for r in client.search_runs([experiment.experiment_id])
              if r.data.tags.get("tunelab.role") == "trial"]

    def files(path):
        out = []
        for item in client.list_artifacts(run.info.run_id, path):
            out += files(item.path) if item.is_dir else [item.path]
        return out

    logged = files("tensorboard")
    assert any("events.out.tfevents" in f for f in logged), logged
