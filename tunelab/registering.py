"""What ``tunelab best``, ``register``, ``predict`` and ``continue`` do, as library functions.

The CLI parses and calls these; notebooks and tests call them too. They reopen a finished
study from its storage: the resolved config lives in ``study.user_attrs["config"]``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunelab.config import (
    DEFAULT_STORAGE,
    DEFAULT_TRACKING_URI,
    ConfigError,
    StudyConfig,
    config_from_dict,
)
from tunelab.text_table import table
from tunelab.wiring import checkpoint_store, load_data, objective_rule, training_settings

TOP_SHOWN = 10


# -- reopening a study --------------------------------------------------------------------
@dataclass
class OpenedStudy:
    study: Any  # optuna.Study
    config: StudyConfig
    storage: str

    @property
    def tracking_uri(self) -> str:
        return self.study.user_attrs.get("tracking_uri") or self.config.resolved_tracking_uri


def open_finished_study(study_name: str | None = None, storage: str | None = None,
                        ) -> OpenedStudy:
    """A study made by ``tunelab tune``; without a name, the only study in the storage."""
    import dataclasses
    import os

    from tunelab.search import open_study
    from tunelab.search.study import study_names

    storage = storage or DEFAULT_STORAGE
    if "://" not in storage and not os.path.exists(storage.removeprefix("journal:")):
        raise ConfigError(f"--storage: {storage}: no such journal file; run `tunelab tune` "
                          "first, or pass --storage with the study's journal or database URL")
    if study_name is None:
        names = study_names(storage)
        if len(names) != 1:
            raise ConfigError(f"--study-name: {storage} holds {len(names)} studies "
                              f"({', '.join(names) or 'none'}); name one with --study-name")
        study_name = names[0]
    try:
        study = open_study(storage=storage, study_name=study_name)
    except ValueError as err:
        raise ConfigError(f"--study-name: {err}") from None
    raw = study.user_attrs.get("config")
    if raw is None:
        raise ConfigError(f"study {study_name!r} in {storage} has no tunelab config; it was "
                          "not made by `tunelab tune`")
    config = dataclasses.replace(config_from_dict(raw), storage=storage)
    return OpenedStudy(study, config, storage)


# -- tunelab best -------------------------------------------------------------------------
def best(study_name: str | None = None, storage: str | None = None):
    """The selection rule over a stored study: returns a ``search.selection.Selection``."""
    from tunelab.search.selection import select_from_study

    opened = open_finished_study(study_name, storage)
    return select_from_study(opened.study, objective_rule(opened.config))


def selection_table(selection, top: int = TOP_SHOWN) -> str:
    rule = selection.rule
    rows = []
    for v in selection.verdicts[:top]:
        r = v.record
        rows.append([v.rank, r.number, r.value, r.metric, r.gap, r.gap_loss, r.fold_std,
                     f"{r.best_epoch}/{r.epochs_trained}" if r.best_epoch else None,
                     *([("yes" if v.on_front else "")] if rule.multi else []),
                     ",".join(r.flags) or None, ("CHOSEN: " if v.chosen else "") + v.reason])
    objective = "objective" if rule.kind == "metric" else f"objective ({rule.kind})"
    return table(["rank", "trial", objective, rule.metric, "gap acc", "gap loss", "fold std",
                  "best ep", *(["Pareto front"] if rule.multi else []), "flags", "verdict"],
                 rows)


def print_selection(selection, out=None) -> None:
    out = out or sys.stdout
    rule = selection.rule
    n = len(selection.verdicts)
    front = sum(v.on_front for v in selection.verdicts)
    print(f"{n} complete trial(s), ranked by {rule.metric} ({rule.direction}, kind "
          f"{rule.kind}"
          + (f": two objectives, {front} trial(s) on the Pareto front of {rule.metric} and "
             "the gap, only those are selected" if rule.multi else "")
          + f"); gap tolerance {rule.gap_tolerance:g}"
          + (f", max_gap {rule.max_gap:g}" if rule.max_gap is not None else ""), file=out)
    if n:
        print(selection_table(selection), file=out)
        if n > TOP_SHOWN:
            print(f"... {n - TOP_SHOWN} more", file=out)
    print(f"\n{selection.explanation()}", file=out)


# -- tunelab register ---------------------------------------------------------------------
@dataclass
class Registration:
    name: str
    version: str
    trial: int
    champion: bool  # the alias now points at this version
    compared: str  # what was compared, in words
    val_accuracy: float
    test_metrics: dict[str, float]
    model_source: str  # "checkpoint <path>" or "retrained"
    run_id: str


def to_uint8(x) -> Any:
    """Model inputs in [0, 1] -> raw 8-bit images, as a user would pass them."""
    import numpy as np

    return np.clip(np.round(np.asarray(x) * 255.0), 0, 255).astype("uint8")


def trial_model(config: StudyConfig, data, record):
    """The trial's model from its checkpoint, or retrained with its seed and hyperparameters.
    Returns (model, meta, source, keras_path or None)."""
    from tunelab.models.model_files import CheckpointError, load_checkpoint

    path = checkpoint_store(config).path(record.number)
    if path.is_file():
        try:
            model, meta = load_checkpoint(path, compile=False)
            return model, meta, f"checkpoint {path}", path
        except CheckpointError as err:
            print(f"tunelab: {err}; retraining trial {record.number} instead", file=sys.stderr)
    model, meta = retrain(config, data, record)
    if meta["trained_on"] == "train+validation":
        return model, meta, "retrained on train+validation (cross-validated trial)", None
    return model, meta, "retrained", None


def retrain(config: StudyConfig, data, record):
    """Train the trial again: same seed (``config.seed + trial``), same hyperparameters.

    A cross-validated trial (``dataset.cv_folds`` > 1) has one model per fold and none kept:
    its model is trained on the whole train + validation pool, without early stopping, for
    the folds' mean best epoch."""
    from dataclasses import fields, replace

    from tunelab.models import Head, build_model
    from tunelab.models.training import reset_session
    from tunelab.models.transfer import train_model
    from tunelab.search.conditional import split_params

    params = dict(record.params)
    seed = record.extra.get("seed")
    seed = config.seed + record.number if seed is None else int(seed)
    reset_session(seed)
    model_name, model_params, train_params = split_params(params, config.model)
    loss = train_params.get("loss") or ("binary_crossentropy" if data.n_classes == 2
                                        else "categorical_crossentropy")
    head = Head(loss, data.n_classes)
    model = build_model(model_name, data.input_shape, data.n_classes, loss=loss,
                        **model_params)
    settings = training_settings(config)
    names = {f.name for f in fields(settings)}
    settings = replace(settings, seed=seed, **{k: v for k, v in train_params.items()
                                               if k in names and k != "loss"})
    fit_data, pooled = data, (config.dataset.cv_folds or 1) > 1
    if pooled:
        from tunelab.models.data.folds import pool_of

        best_epoch = (record.extra.get("summary") or {}).get("best_epoch") or record.best_epoch
        settings = replace(settings, early_stopping=False,
                           max_epochs=max(1, round(best_epoch or settings.max_epochs)))
        fit_data = replace(data, train=pool_of(data), test=None)
    result = train_model(model, head, fit_data, settings)
    meta = {"model": model_name, "loss": loss, "params": params, "seed": seed,
            "input_shape": list(data.input_shape), "class_names": list(data.class_names),
            "data_fingerprint": data.fingerprint(), "history": result.history,
            "epochs_trained": result.epochs_trained, "trial": record.number,
            "trained_on": "train+validation" if pooled else "train"}
    return model, meta


def register(name: str, study_name: str | None = None, storage: str | None = None, *,
             force: bool = False, out=None) -> Registration:
    """Select, produce, log and register the trial's model; move ``champion`` if it is no
    worse than the current champion on this study's validation images (or ``force``)."""
    import numpy as np

    from tunelab.models.gradcam import find_last_conv_layer, gradcam
    from tunelab.search.selection import select_from_study
    from tunelab.tracking import model_registry, plots
    from tunelab.tracking.pyfunc_model import ImageClassifier

    out = out or sys.stdout
    opened = open_finished_study(study_name, storage)
    config, uri = opened.config, opened.tracking_uri
    selection = select_from_study(opened.study, objective_rule(config))
    record = selection.chosen
    if record is None:
        if not force or selection.best_by_objective is None:
            raise ConfigError(selection.explanation())
        record = selection.best_by_objective
        print(f"tunelab: --force: no trial passes the rule; registering trial "
              f"{record.number}, the best objective", file=out)
    data = load_data(config)
    model, meta, source, keras_path = trial_model(config, data, record)
    if meta.get("data_fingerprint") not in (None, data.fingerprint()):
        raise ConfigError(f"the data of study {config.study_name!r} changed since trial "
                          f"{record.number} was trained (fingerprint {data.fingerprint()} != "
                          f"{meta['data_fingerprint']}); restore the data or run a new study")
    meta = {**meta, "trial": record.number, "study": config.study_name}
    candidate = ImageClassifier(model, meta)
    raw_val = to_uint8(data.val.x)
    val_accuracy = model_registry.accuracy(candidate, raw_val, data.val.y, data.class_names)
    test_metrics: dict[str, float] = {}
    if data.test is not None:  # evaluated once, here; never seen by selection
        test_metrics = {"test_accuracy": model_registry.accuracy(
            candidate, to_uint8(data.test.x), data.test.y, data.class_names),
            "test_images": float(len(data.test))}

    # What the alias decision compares: both models through their pyfunc on the same images.
    current = model_registry.champion_version(uri, name)
    move, compared = True, "no previous champion"
    if current is not None:
        champ = model_registry.load_pyfunc(uri, f"models:/{name}@{model_registry.CHAMPION}")
        champ_names = json.loads(current.tags.get("class_names", "null") or "null")
        if champ_names is not None and list(champ_names) != list(data.class_names):
            champ_acc, move = None, False
            compared = (f"champion v{current.version} predicts other classes "
                        f"({champ_names}); not comparable")
        else:
            champ_acc = model_registry.accuracy(champ, raw_val, data.val.y, data.class_names)
            move = val_accuracy >= champ_acc
            compared = (f"validation accuracy on the {len(data.val)} validation images of "
                        f"study {config.study_name!r}: new {val_accuracy:.4f} vs champion "
                        f"v{current.version} {champ_acc:.4f}")
        if force and not move:
            compared += " (--force: moving the alias anyway)"
            move = True
    if meta.get("trained_on") == "train+validation":
        folds = int((record.extra.get("summary") or {}).get("cv_folds", 0))
        compared += ("; note: a cross-validated trial, retrained on the validation images too, "
                     "so its validation accuracy is optimistic (cross-validated "
                     f"{config.objective.metric}: {record.metric} +/- {record.fold_std} over "
                     f"{folds} folds)")

    report = _selection_report(selection, record, source, compared, plots)
    try:
        layer = config.registry.gradcam_layer or find_last_conv_layer(model)
        per_class = config.registry.gradcam_images_per_class
        picks = np.concatenate([np.flatnonzero(data.val.y == c)[:per_class]
                                for c in range(data.n_classes)])
        cams, explained = gradcam(model, data.val.x[picks], layer_name=layer)
        titles = [f"true {data.class_names[t]} / cam {data.class_names[e]}"
                  for t, e in zip(data.val.y[picks], explained, strict=True)]
        report["gradcam.png"] = plots.gradcam_figure(
            data.val.x[picks], cams, titles, n_cols=max(per_class, 2) * 2,
            title=f"Grad-CAM ({layer}), trial {record.number}")
    except ValueError as err:  # an MLP has no conv layer; a bad layer name is reported
        if config.registry.gradcam_layer:
            raise ConfigError(str(err)) from None
        report["gradcam.txt"] = f"no Grad-CAM: {err}"

    with tempfile.TemporaryDirectory(prefix="tunelab-model-") as tmp:
        if keras_path is None:
            keras_path = Path(tmp) / "model.keras"
            model.save(keras_path)
        summary = record.extra.get("summary") or {}
        metrics = {"val_accuracy": val_accuracy, **test_metrics,
                   **{k: v for k, v in summary.items() if isinstance(v, (int, float))}}
        tags = {"tunelab.study": config.study_name, "tunelab.trial": record.number,
                "data_fingerprint": data.fingerprint(), "class_names": list(data.class_names),
                "model_source": source}
        logged = model_registry.log_model(
            tracking_uri=uri, experiment_name=config.study_name, keras_path=keras_path,
            meta={k: meta[k] for k in ("loss", "class_names", "input_shape", "trial", "study",
                                       "model", "params")},
            input_example=raw_val[:2], tags=tags, metrics=metrics, report=report)
    version_tags = {**tags, "objective": record.value, "val_metric": record.metric,
                    "gap_accuracy": record.gap, "overfitting": record.overfitting,
                    "val_accuracy": round(val_accuracy, 6),
                    **{k: round(v, 6) for k, v in test_metrics.items()},
                    "params": dict(record.params), "selection": selection.explanation()}
    version = model_registry.register(tracking_uri=uri, name=name, logged=logged, tags=version_tags)
    if move:
        model_registry.set_champion(uri, name, version)
    else:
        model_registry.tag_version(uri, name, version, {"tunelab.champion_refused": compared})
    reg = Registration(name, version, record.number, move, compared, val_accuracy,
                       test_metrics, source, logged.run_id)
    print(f"registered {name} version {version} from trial {record.number} ({source})\n"
          f"compared: {compared}\n"
          + (f"alias {model_registry.CHAMPION!r} -> version {version}" if move else
             f"alias {model_registry.CHAMPION!r} stays on version {current.version} (the new "
             "version scores worse; --force moves it anyway)")
          + "".join(f"\nheld-out {k}: {v:.4f}" for k, v in test_metrics.items()
                    if k == "test_accuracy"), file=out)
    return reg


def _selection_report(selection, record, source: str, compared: str, plots) -> dict[str, Any]:
    text = "\n".join([selection_table(selection), "", selection.explanation(),
                      f"model: {source}", f"champion: {compared}"])
    report: dict[str, Any] = {"selection/candidates.txt": text,
                              "selection/selection.json": {
                                  "chosen": record.number, "reason": selection.explanation(),
                                  "verdicts": [{"trial": v.record.number, "rank": v.rank,
                                                "objective": v.record.value,
                                                "gap": v.record.gap, "eligible": v.eligible,
                                                "reason": v.reason}
                                               for v in selection.verdicts]}}
    for v in selection.verdicts[:3]:
        r = v.record
        if r.history:
            report[f"selection/learning_curves_trial_{r.number}.png"] = plots.learning_curves(
                r.history, f"trial {r.number} (rank {v.rank}): {v.reason}"[:90], r.best_epoch)
    return report


# -- tunelab predict ----------------------------------------------------------------------
def image_files(paths: list[str]) -> list[Path]:
    """Files as given, and the image files under folders (sorted); names what is missing."""
    from tunelab.models.data.images import is_image_file

    files: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and is_image_file(p))
            if not found:
                raise ConfigError(f"{item}: no image files in this folder (looked for .png, "
                                  ".jpg, .tif, .bmp, .gif, .dcm)")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise ConfigError(f"{item}: no such file or folder")
    return files


def predict(model_uri: str, paths: list[str], tracking_uri: str | None = None):
    """Predict image files with a registered model: a DataFrame with ``file`` first."""
    from tunelab.models.data.images import ImageError, read_image
    from tunelab.tracking import model_registry

    files = image_files(paths)
    images = []
    for path in files:
        try:
            image, _ = read_image(path)
        except (ImageError, OSError) as err:
            raise ConfigError(f"{path}: not a readable image ({err})") from None
        images.append(to_uint8(image))
    uri = tracking_uri or DEFAULT_TRACKING_URI
    try:
        model = model_registry.load_pyfunc(uri, model_uri)
    except Exception as err:  # MlflowException, OSError: name the URI and the store
        raise ConfigError(f"{model_uri}: cannot load it from {uri} ({type(err).__name__}: "
                          f"{err}); check the name and alias, or pass --tracking-uri") from None
    import numpy as np

    batch = np.empty(len(images), dtype=object)  # sizes differ: MLflow's ragged-batch form
    batch[:] = images
    frame = model.predict(batch)
    frame.insert(0, "file", [str(p) for p in files])
    return frame


# -- tunelab continue ---------------------------------------------------------------------
def continue_training(trial: int, epochs: int, study_name: str | None = None,
                      storage: str | None = None, out=None) -> dict[str, Any]:
    """Resume a trial from its checkpoint (weights and optimizer state) for ``epochs`` more
    epochs, log them to the trial's MLflow run, and save the checkpoint back."""
    from tunelab.models import Head
    from tunelab.models.model_files import load_checkpoint, save_checkpoint
    from tunelab.models.training import train
    from tunelab.search.summary import summarize
    from tunelab.tracking import StudyTracker, TrialRun

    out = out or sys.stdout
    if epochs < 1:
        raise ConfigError(f"--epochs: {epochs} must be >= 1")
    opened = open_finished_study(study_name, storage)
    config = opened.config
    path = checkpoint_store(config).path(trial)
    if not path.is_file():
        kept = sorted(checkpoint_store(config).saved())
        raise ConfigError(f"--trial: trial {trial} has no checkpoint ({path}); checkpoints "
                          f"are kept for the top {config.checkpoints.keep_top} trials: "
                          f"{', '.join(map(str, kept)) or 'none'}")
    model, meta = load_checkpoint(path, compile=True)
    data = load_data(config)
    if meta.get("data_fingerprint") not in (None, data.fingerprint()):
        raise ConfigError(f"the data of study {config.study_name!r} changed since trial {trial}"
                          " was trained; continuing would mix datasets")
    head = Head(meta["loss"], data.n_classes)
    from dataclasses import replace

    settings = replace(training_settings(config), max_epochs=epochs)
    done = int(meta.get("epochs_trained") or 0)
    run_id = opened.study.trials[trial].user_attrs.get("mlflow_run_id")
    run = None
    if run_id:
        tracker = StudyTracker(opened.tracking_uri, config.study_name)
        run = TrialRun(tracker.client, run_id, trial)
    result = train(model, head, data, settings, initial_epoch=done,
                   on_epoch=(lambda e, logs: run.epoch_ended(e, logs)) if run else None)
    history = {k: list(meta.get("history", {}).get(k, [])) + v
               for k, v in result.history.items()}
    summary = summarize(history, config.objective.metric, config.direction)
    meta = {**meta, "history": history, "epochs_trained": len(history.get("loss", [])),
            "summary": summary, "continued": int(meta.get("continued", 0)) + 1}
    save_checkpoint(model, path, meta)
    if run is not None:
        run.log_metrics({f"continued_{k}": v for k, v in summary.items()},
                        step=meta["epochs_trained"])
        run.set_tags({"tunelab.continued_to_epoch": meta["epochs_trained"]})
    metric = config.objective.metric
    print(f"trial {trial}: trained epochs {done + 1}..{done + result.epochs_trained}; best "
          f"{metric} {summary[f'best_{metric}']:.4f} at epoch {int(summary['best_epoch'])}, "
          f"gap {summary.get('gap_accuracy', float('nan')):.4f}; checkpoint {path}"
          + (f"; logged to MLflow run {run_id}" if run_id else ""), file=out)
    return summary
