import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in an empty folder so the default ./mlruns store lands there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def tiny_study(tmp_path: Path, **overrides) -> dict:
    """A study of tiny models on 8x8 digits that trains in seconds."""
    raw = {
        "study_name": "tiny",
        "model": "lenet",
        "dataset": {"source": "digits", "image_size": 8},
        "space": {"learning_rate": {"low": 1e-3, "high": 1e-2, "log": True},
                  "n_base": [4, 8], "batch_size": 128, "dense_units": 16},
        "n_trials": 3,
        "max_epochs": 2,
        "pruner": {"kind": "none"},
        "storage": str(tmp_path / "mlruns" / "optuna.journal"),
        "tracking_uri": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}",
    }
    for key, value in overrides.items():
        node = raw
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return raw
