"""The model registry: log the selected model once, register a version, move ``champion``.

Full models are logged only here, for registration, never per trial. The alias ``champion``
(stages are deprecated in MLflow 3) moves to a new version only when that version scores at
least as well as the current champion on the same validation images, or when forced.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from . import plots, pyfunc_model, ui
from .runs import ROLE_TAG, STUDY_TAG, TRIAL_TAG, create_experiment, mark_model_training
from .store import package_versions, registrations_experiment_name, resolve_tracking_uri

CHAMPION = "champion"
# What the pyfunc model needs at inference, pinned to the versions it was trained with.
RUNTIME_PACKAGES = ("mlflow", "numpy", "pandas", "scikit-image", "keras")


def pip_requirements() -> list[str]:
    from importlib import metadata

    versions = package_versions()
    reqs = [f"{name}=={versions[name]}" if name in versions else name
            for name in RUNTIME_PACKAGES]
    for name in ("pandas",):
        try:
            reqs[reqs.index(name)] = f"{name}=={metadata.version(name)}"
        except (ValueError, metadata.PackageNotFoundError):
            pass
    tf = "tensorflow-cpu" if "tensorflow-cpu" in versions else "tensorflow"
    reqs.append(f"{tf}=={versions[tf]}" if tf in versions else tf)
    return reqs


TRIAL_RUN_TAG = "tunelab.trial_run_id"
STUDY_RUN_TAG = "tunelab.study_run_id"
STUDY_EXPERIMENT_TAG = "tunelab.study_experiment_id"


def registrations_experiment(client: MlflowClient, tracking_uri: str, study_name: str,
                             study_experiment_id: str) -> str:
    name = registrations_experiment_name(study_name)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return create_experiment(client, tracking_uri, name,
                                 {STUDY_TAG: study_name, ROLE_TAG: "registrations",
                                  STUDY_EXPERIMENT_TAG: study_experiment_id})
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    mark_model_training(client, experiment)
    return experiment.experiment_id


@dataclass(frozen=True)
class LoggedModel:
    run_id: str
    model_uri: str


def log_model(*, tracking_uri: str, experiment_name: str,
              keras_path: str | Path | Sequence[str | Path],
              meta: Mapping[str, Any], input_example: np.ndarray, tags: Mapping[str, Any],
              metrics: Mapping[str, float], report: Mapping[str, Any]) -> LoggedModel:
    """A registration run with the pyfunc model and the report, in the study's
    registrations experiment (``registrations_experiment_name``), linked to the study's
    experiment and runs by tags (``tags`` may carry ``TRIAL_RUN_TAG``, ``STUDY_RUN_TAG``).

    ``report`` maps artifact names to figures (``.png``), text (``.txt``) or dicts
    (``.json``). ``keras_path``: one .keras file (an ``ImageClassifier``), or a list of
    several (an ``EnsembleClassifier`` of those members, in that order)."""
    members = [keras_path] if isinstance(keras_path, (str, Path)) else list(keras_path)
    uri = resolve_tracking_uri(tracking_uri)
    client = MlflowClient(uri)
    mlflow.set_tracking_uri(uri)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        raise ValueError(f"no MLflow experiment named {experiment_name!r} at {tracking_uri}")
    target = registrations_experiment(client, uri, experiment_name, experiment.experiment_id)
    note = (f"### Registration of trial {meta.get('trial')} of study {experiment_name}\n\n"
            f"The model of trial {meta.get('trial')} ({meta.get('model')}), logged for the "
            "Model Registry. The trials are in the experiment "
            f"`{experiment_name}`" + "".join(
                f"; {what} run `{tags[key]}`" for key, what in
                ((TRIAL_RUN_TAG, "trial"), (STUDY_RUN_TAG, "study")) if tags.get(key))
            + ".\n\n" + ui.params_text(meta.get("params") or {}))
    with tempfile.TemporaryDirectory(prefix="tunelab-register-") as tmp:
        meta_path = Path(tmp) / "meta.json"
        meta_path.write_text(json.dumps(dict(meta), indent=1))
        with mlflow.start_run(experiment_id=target,
                              run_name=f"register-trial-{meta.get('trial')}",
                              tags={ROLE_TAG: "registration", ui.NOTE_TAG: note,
                                    STUDY_EXPERIMENT_TAG: experiment.experiment_id,
                                    **_str(tags)}) as run:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
            for name, item in report.items():
                if name.endswith(".png"):
                    try:
                        mlflow.log_figure(item, name, save_kwargs={"dpi": 110})
                    finally:
                        plots.close(item)
                elif name.endswith(".json"):
                    mlflow.log_dict(dict(item), name)
                else:
                    mlflow.log_text(str(item), name)
            # Pickle the wrapper by value: the model then loads without tunelab installed.
            cloudpickle.register_pickle_by_value(pyfunc_model)
            try:
                if len(members) == 1:
                    python_model = pyfunc_model.ImageClassifier()
                    artifacts = {"model": str(members[0])}
                else:
                    python_model = pyfunc_model.EnsembleClassifier()
                    artifacts = {f"model_{i}": str(p) for i, p in enumerate(members)}
                info = mlflow.pyfunc.log_model(
                    name="model", python_model=python_model,
                    artifacts={**artifacts, "meta": str(meta_path)},
                    signature=pyfunc_model.signature(meta["class_names"],
                                                     bool(meta.get("calibration"))),
                    input_example=input_example, pip_requirements=pip_requirements())
            finally:
                cloudpickle.unregister_pickle_by_value(pyfunc_model)
    return LoggedModel(run.info.run_id, info.model_uri)


def register(*, tracking_uri: str, name: str, logged: LoggedModel,
             tags: Mapping[str, Any]) -> str:
    """A new version of registered model ``name`` (created if needed); returns its number."""
    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description="Keras image classifier selected by tunelab; predict() takes "
            "raw 8-bit images (see tunelab.tracking.pyfunc_model)")
    version = client.create_model_version(name, logged.model_uri, run_id=logged.run_id,
                                          tags=_str(tags))
    trial_run = tags.get(TRIAL_RUN_TAG)
    if trial_run:  # the trial's run says what it became
        try:
            client.set_tag(trial_run, "tunelab.registered_as", f"{name} v{version.version}")
        except MlflowException as err:
            print(f"tunelab: could not tag trial run {trial_run} ({err})")
    return str(version.version)


def resolve_version(tracking_uri: str, model_uri: str):
    """The registered version behind ``models:/NAME/3`` or ``models:/NAME@alias``, or None
    for another kind of URI (``runs:/...``)."""
    if not model_uri.startswith("models:/"):
        return None
    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    rest = model_uri.removeprefix("models:/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return client.get_model_version_by_alias(name, alias)
    name, _, version = rest.partition("/")
    return client.get_model_version(name, version)


def log_evaluation(*, tracking_uri: str, evaluation: Any, card: str | None,
                   version: Any = None, experiment_id: str | None = None,
                   model_uri: str, extra_tags: Mapping[str, Any] | None = None) -> str:
    """One evaluation run (role ``evaluation``): the report JSON, the figures, every metric
    with its interval, the model card; linked to the model version both ways (run tags
    ``tunelab.model_name`` / ``tunelab.model_version``, version tag
    ``tunelab.evaluation_run``), the headline numbers as version tags and the card as the
    version's description. Returns the run id.

    The run goes to the experiment of the version's registration run unless
    ``experiment_id`` says otherwise."""
    from .evaluation import flat_metrics, version_tags

    resolved = resolve_tracking_uri(tracking_uri)
    client = MlflowClient(resolved)
    mlflow.set_tracking_uri(resolved)
    if experiment_id is None:
        if version is None or not version.run_id:
            raise ValueError("log_evaluation needs a model version or an experiment id")
        experiment_id = client.get_run(version.run_id).info.experiment_id
    split = evaluation.report["split"]["name"]
    tags = {ROLE_TAG: "evaluation", "tunelab.model_uri": model_uri,
            "tunelab.split": split, **(extra_tags or {})}
    if version is not None:
        tags.update({"tunelab.model_name": version.name,
                     "tunelab.model_version": str(version.version),
                     "tunelab.registration_run": version.run_id or ""})
    headline = version_tags(evaluation)
    name = (f"evaluate-{version.name}-v{version.version}-{split}" if version is not None
            else f"evaluate-{split}")
    with mlflow.start_run(experiment_id=experiment_id, run_name=name,
                          tags={**_str(tags), **headline}) as run:
        mlflow.log_metrics(flat_metrics(evaluation))
        mlflow.log_dict(evaluation.report, "evaluation/report.json")
        for artifact, figure in evaluation.figures.items():
            try:
                mlflow.log_figure(figure, artifact, save_kwargs={"dpi": 110})
            finally:
                plots.close(figure)
        if card:
            mlflow.log_text(card, "model_card.md")
        if evaluation.warning:
            mlflow.log_text(evaluation.warning, "evaluation/warning.txt")
    if version is not None:
        tag_version(tracking_uri, version.name, str(version.version),
                    {**headline, "tunelab.evaluation_run": run.info.run_id})
        if card:
            client.update_model_version(version.name, str(version.version), description=card)
    return run.info.run_id


def champion_version(tracking_uri: str, name: str):
    """The version the alias points at, or None."""
    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def set_champion(tracking_uri: str, name: str, version: str) -> None:
    MlflowClient(resolve_tracking_uri(tracking_uri)).set_registered_model_alias(
        name, CHAMPION, version)


def tag_version(tracking_uri: str, name: str, version: str, tags: Mapping[str, Any]) -> None:
    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    for key, value in _str(tags).items():
        client.set_model_version_tag(name, version, key, value)


def describe_version(tracking_uri: str, name: str, version: str, description: str) -> None:
    MlflowClient(resolve_tracking_uri(tracking_uri)).update_model_version(
        name, version, description=description)


def load_pyfunc(tracking_uri: str, model_uri: str):
    mlflow.set_tracking_uri(resolve_tracking_uri(tracking_uri))
    return mlflow.pyfunc.load_model(model_uri)


def accuracy(predictor: Any, images: np.ndarray, labels: Sequence[int],
             class_names: Sequence[str]) -> float:
    """Accuracy of a pyfunc (or ``ImageClassifier``) on raw images with integer labels."""
    frame = predictor.predict(images) if hasattr(predictor, "metadata") else (
        predictor.predict(None, images))
    names = [str(c) for c in class_names]
    truth = np.array([names[i] for i in np.asarray(labels)])
    return float(np.mean(frame["label"].astype(str).to_numpy() == truth))


def _str(tags: Mapping[str, Any]) -> dict[str, str]:
    return {k: (json.dumps(v) if isinstance(v, (dict, list)) else str(v))
            for k, v in tags.items() if v is not None}


__all__ = ["CHAMPION", "STUDY_RUN_TAG", "STUDY_TAG", "TRIAL_RUN_TAG", "TRIAL_TAG", "LoggedModel",
           "accuracy", "champion_version", "describe_version", "load_pyfunc", "log_evaluation",
           "log_model", "pip_requirements", "register", "registrations_experiment_name",
           "resolve_version", "set_champion", "tag_version"]
