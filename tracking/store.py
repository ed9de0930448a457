"""Where runs go: the tracking URI, its artifact root, and the command that opens the UI."""

from __future__ import annotations

import contextlib
import functools
import platform
from importlib import metadata
from pathlib import Path

PACKAGES = ("tunelab", "tensorflow-cpu", "tensorflow", "keras", "optuna", "optuna-integration",
            "mlflow", "numpy", "scikit-learn", "scikit-image")


def resolve_tracking_uri(uri: str) -> str:
    """Make a local SQLite URI absolute and create its folder; other URIs pass through."""
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///"):]).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path}"
    if uri.startswith("file:") or "://" not in uri:
        raise ValueError(
            f"tracking_uri: {uri!r} is a bare file store, which MLflow 3 no longer accepts; "
            "use sqlite:///mlruns/mlflow.db (the default) or http://HOST:PORT of a server")
    return uri


@contextlib.contextmanager
def first_use_lock(uri: str):
    """Serialize the first use of a local SQLite store across processes: MLflow creates and
    migrates its schema on first use, and two processes doing it at once race on
    ``alembic_version`` ("expected to match one row when updating"); the loser then ran
    without tracking. A file lock (``fcntl.flock``) beside the database holds the others
    until the schema exists. Other URIs (servers, databases) pass through."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    path = Path(uri[len("sqlite:///"):])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def artifact_root(uri: str) -> str | None:
    """Artifacts of a local SQLite store live beside it, in ``artifacts/`` inside ``mlruns/``."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "artifacts").as_uri()
    return None


def ui_command(uri: str, study_name: str | None = None) -> str:
    """How to open the study's runs: the command that serves the UI, and the link that opens
    the study's runs table in model-training mode (see ui.py)."""
    from . import ui

    experiment_id = experiment_id_of(uri, study_name) if study_name else None
    if uri.startswith(("http://", "https://")):
        return f"open {ui.runs_url(uri, experiment_id)} in a browser"
    root = artifact_root(uri)
    extra = f" --default-artifact-root {root}" if root else ""
    return (f"mlflow ui --backend-store-uri {uri}{extra} --port 5000\n"
            f"  then open {ui.runs_url('http://127.0.0.1:5000', experiment_id)}\n"
            f"  (or `tunelab server --backend-store-uri {uri}`: the UI and optuna-dashboard, "
            "with these links)")


def experiment_id_of(uri: str, name: str) -> str | None:
    """The id of experiment ``name``, or None (none there, or the store unreachable)."""
    from mlflow import MlflowClient

    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        return None  # no store yet (`tracking: false`): do not create one for a link
    try:
        experiment = MlflowClient(tracking_uri=uri).get_experiment_by_name(name)
    except Exception:  # a link is a convenience; the summary must print anyway
        return None
    return None if experiment is None else experiment.experiment_id


@functools.cache
def _package_versions() -> tuple[tuple[str, str], ...]:
    versions = [("python", platform.python_version())]
    for name in PACKAGES:
        try:
            versions.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            pass
    return tuple(versions)


def package_versions() -> dict[str, str]:
    return dict(_package_versions())


def registrations_experiment_name(study_name: str) -> str:
    """Where a study's registration runs go: beside the study's experiment, not in it, so
    they never mix with the trials in its runs table and charts (a study name has no
    spaces, so this never names another study)."""
    return f"{study_name} registrations"


def delete_experiment(uri: str, name: str) -> str:
    """Delete an experiment with its runs and artifacts (for good on a local SQLite store)."""
    import shutil
    import subprocess
    import sys
    from urllib.parse import urlparse

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return f"no MLflow experiment named {name!r} at {uri}"
    # the study's registration runs live in an experiment of their own: they go too
    experiments = [experiment] + [e for e in [client.get_experiment_by_name(
        registrations_experiment_name(name))] if e is not None]
    for each in experiments:
        client.delete_experiment(each.experiment_id)
    if uri.startswith("sqlite:"):
        subprocess.run([sys.executable, "-m", "mlflow", "gc", "--backend-store-uri", uri,
                        "--tracking-uri", uri, "--experiment-ids",
                        ",".join(e.experiment_id for e in experiments)],
                       check=True, capture_output=True)
        for each in experiments:
            if each.artifact_location.startswith("file:"):
                shutil.rmtree(urlparse(each.artifact_location).path, ignore_errors=True)
        return f"deleted MLflow experiment {name!r}, its runs and artifacts" + (
            f" (and {experiments[1].name!r})" if len(experiments) > 1 else "")
    return (f"deleted MLflow experiment {name!r} (the server keeps deleted runs until "
            "`mlflow gc` runs there)")
