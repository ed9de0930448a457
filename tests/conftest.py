import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# ../shared/data beside the repository; TUNELAB_SHARED_DATA points elsewhere (a worktree
# nested one level deeper than the clone the data sits beside)
SHARED_DATA = Path(os.environ.get("TUNELAB_SHARED_DATA")
                   or Path(__file__).resolve().parents[1].parent / "shared" / "data")
# servers, worker processes and whole studies: minutes each
LONG_FIRST = ("tests/ops/", "tests/benchmarks/", "tests/e2e/")


def pytest_collection_modifyitems(config, items):
    """The long tests first: with one test process per core (-n auto) the short ones then fill
    the gaps, instead of the long ones running last on a single process."""
    items.sort(key=lambda item: 0 if item.nodeid.startswith(LONG_FIRST)
               or item.get_closest_marker("slow") else 1)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in an empty folder so the default ./mlruns store lands there."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def migrated_mlflow_db() -> Path:
    """An empty MLflow SQLite store with its tables created, made once per machine and MLflow
    version. Creating the tables (alembic's migrations) takes about 3 s a store; the suite's
    studies each copy this one instead. Tests of a store's first use start from nothing."""
    import fcntl
    import tempfile
    from importlib.metadata import version

    template = Path(tempfile.gettempdir()) / f"tunelab-tests-mlflow-{version('mlflow')}.db"
    if template.exists():
        return template
    with open(f"{template}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not template.exists():
            from mlflow import MlflowClient

            partial = template.with_suffix(f".{os.getpid()}.partial")
            MlflowClient(f"sqlite:///{partial}").search_experiments()
            partial.rename(template)
    return template


def tiny_study(tmp_path: Path, *, fresh_store: bool = False, **overrides) -> dict:
    """A study of tiny models on 8x8 digits that trains in seconds. Its MLflow store starts as
    a copy of an empty migrated one (``fresh_store``: from nothing, and nothing written until
    the study runs)."""
    raw = {
        "study_name": "tiny",
        "model": "lenet",
        # cv_folds pinned: a lab source (dataset.source override) would get `auto` folds
        "dataset": {"source": "digits", "image_size": 8, "cv_folds": 1},
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
    db = tmp_path / "mlruns" / "mlflow.db"
    if not fresh_store and raw.get("tracking", True) and raw["tracking_uri"] == f"sqlite:///{db}" \
            and not db.exists():
        import shutil

        db.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(migrated_mlflow_db(), db)
    return raw
