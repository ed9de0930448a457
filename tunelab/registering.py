"""What ``tunelab best``, ``register``, ``predict`` and ``continue`` do, as library functions.

The CLI parses and calls these; notebooks and tests call them too. They reopen a finished
study from its storage: the resolved config lives in ``study.user_attrs["config"]``.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from collections.abc import Mapping
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
from tunelab.wiring import (
    checkpoint_store,
    feature_cache_dir,
    load_data,
    study_selection,
    training_settings,
)

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
    opened = open_finished_study(study_name, storage)
    return study_selection(opened.study, opened.config)


def selection_table(selection, top: int = TOP_SHOWN) -> str:
    from tunelab.search.selection_methods import confirmation_text

    rule = selection.rule
    confirms = selection.choice is not None and selection.choice.method.startswith("confirm")
    rows = []
    for v in selection.verdicts[:top]:
        r = v.record
        rows.append([v.rank, r.number, r.value, r.metric, r.gap, r.gap_loss, r.fold_std,
                     f"{r.best_epoch}/{r.epochs_trained}" if r.best_epoch else None,
                     *([("yes" if v.on_front else "")] if rule.multi else []),
                     *([confirmation_text(r)] if confirms else []),
                     ",".join(r.flags) or None, ("CHOSEN: " if v.chosen else "") + v.reason])
    objective = "objective" if rule.kind == "metric" else f"objective ({rule.kind})"
    return table(["rank", "trial", objective, rule.metric, "gap acc", "gap loss", "fold std",
                  "best ep", *(["Pareto front"] if rule.multi else []),
                  *(["confirmed (mean +/- sd)"] if confirms else []), "flags", "verdict"],
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
    evaluation_run_id: str | None = None  # with a test split: the clinical evaluation's run


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
    """Train the trial again through the trial lifecycle: same seed (``config.seed +
    trial``), same hyperparameters.

    A cross-validated trial (``dataset.cv_folds`` > 1) has one model per fold and none kept:
    its model is trained on the whole train + validation pool, without early stopping, for
    the folds' mean best epoch."""
    from tunelab.search.trial import retrain as retrain_trial

    seed = record.extra.get("seed")
    seed = config.seed + record.number if seed is None else int(seed)
    pooled = None
    if config.dataset.folds > 1:
        best_epoch = (record.extra.get("summary") or {}).get("best_epoch") or record.best_epoch
        pooled = round(best_epoch or config.max_epochs)
    return retrain_trial(record.params, number=record.number, seed=seed, model=config.model,
                         data=data, training=training_settings(config), pooled_epochs=pooled,
                         feature_cache_dir=feature_cache_dir(config))


def ensemble_members(config: StudyConfig, selection, k: int, out=None) -> list:
    """The records of the top ``k`` confirmed candidates of ``selection`` (best first), or
    [] for a single model: ``k`` < 2, or (said on ``out``) fewer than 2 confirmed."""
    out = out or sys.stdout
    if k < 2:
        return []
    if config.dataset.folds > 1:
        raise ConfigError("--ensemble / registry.ensemble: a cross-validated study's trials "
                          "keep no single model each to average; register the single pick")
    choice = selection.choice
    members = [c.record for c in choice.candidates][:k] if (
        choice is not None and choice.confirmed) else []
    if len(members) < 2:
        print(f"tunelab: --ensemble {k}: {len(members)} confirmed candidate(s) (selection."
              f"method {config.selection.method!r}); registering the single pick",
              file=out)
        return []
    if len(members) < k:
        print(f"tunelab: --ensemble {k}: only {len(members)} confirmed candidates; the "
              f"ensemble has {len(members)} members", file=out)
    return members


def register(name: str, study_name: str | None = None, storage: str | None = None, *,
             force: bool = False, ensemble: int | None = None, out=None) -> Registration:
    """Select, produce, log and register the trial's model; move ``champion`` if it is no
    worse than the current champion on this study's validation images (or ``force``).

    ``ensemble`` (default ``registry.ensemble``): k >= 2 registers the mean of the top k
    confirmed candidates' probabilities as one model (``EnsembleClassifier``), calibrated
    and thresholded on the validation images as one model; the version's trial is its
    first member, Grad-CAM shows that member."""

    from tunelab.models.gradcam import gradcam_examples
    from tunelab.tracking import model_registry, plots
    from tunelab.tracking.pyfunc_model import EnsembleClassifier, ImageClassifier

    out = out or sys.stdout
    opened = open_finished_study(study_name, storage)
    config, uri = opened.config, opened.tracking_uri
    selection = study_selection(opened.study, config)
    record = selection.chosen
    if record is None:
        if not force or selection.best_by_objective is None:
            raise ConfigError(selection.explanation())
        record = selection.best_by_objective
        print(f"tunelab: --force: no trial passes the rule; registering trial "
              f"{record.number}, the best objective", file=out)
    members = ensemble_members(config, selection, config.registry.ensemble
                               if ensemble is None else ensemble, out)
    if members:
        record = members[0]
    data = load_data(config)
    built = []
    for member in members or [record]:
        model, meta, source, keras_path = trial_model(config, data, member)
        if meta.get("data_fingerprint") not in (None, data.fingerprint()):
            raise ConfigError(f"the data of study {config.study_name!r} changed since trial "
                              f"{member.number} was trained (fingerprint "
                              f"{data.fingerprint()} != {meta['data_fingerprint']}); restore "
                              "the data or run a new study")
        built.append((model, meta, source, keras_path))
    model, meta, source, keras_path = built[0]  # the single model, or the first member
    meta = {**meta, "trial": record.number, "study": config.study_name}
    if members:  # one softmax-like model: its outputs are the members' mean probabilities
        numbers = [m.number for m in members]
        meta = {**meta, "loss": "categorical_crossentropy",
                "losses": [b[1]["loss"] for b in built], "members": numbers,
                "member_params": [dict(m.params) for m in members]}
        origins = "; ".join(f"trial {m.number}: {b[2]}"
                            for m, b in zip(members, built, strict=True))
        source = (f"ensemble of trials {', '.join(map(str, numbers))} (mean of their "
                  f"probabilities; {origins})")
    models = [b[0] for b in built]

    def predictor(meta_now):
        return (EnsembleClassifier(models, meta_now) if members
                else ImageClassifier(model, meta_now))

    raw_val = to_uint8(data.val.x)
    # Calibration and the operating point travel inside the model. They are fitted out of
    # sample: on the validation outputs, or, for a model retrained on train + validation,
    # on the cross-validation folds' out-of-fold outputs.
    if meta.get("trained_on") == "train+validation":
        oof = trial_out_of_fold(config, data, record, out)
        calibration = fit_model_calibration(config, data, oof.y, oof.outputs, meta,
                                            fitted_on="out-of-fold predictions")
    else:
        calibration = fit_model_calibration(config, data, data.val.y, predictor(
            meta).outputs(raw_val), meta, fitted_on="validation")
    meta["calibration"] = calibration.to_dict()
    candidate = predictor(meta)
    val_accuracy = model_registry.accuracy(candidate, raw_val, data.val.y, data.class_names)
    test_metrics: dict[str, float] = {}
    if data.test is not None:  # evaluated once, here; never seen by selection
        test_metrics = {"test_accuracy": model_registry.accuracy(
            candidate, to_uint8(data.test.x), data.test.y, data.class_names),
            "test_images": float(len(data.test))}
        if calibration.threshold is not None:  # the operating point against argmax
            at_argmax = predictor({**meta, "calibration": {
                **meta["calibration"], "threshold": None}})
            test_metrics["test_accuracy_argmax"] = model_registry.accuracy(
                at_argmax, to_uint8(data.test.x), data.test.y, data.class_names)

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
        per_class = config.registry.gradcam_images_per_class
        images, cams, titles, layer = gradcam_examples(
            model, data.val.x, data.val.y, list(data.class_names), per_class=per_class,
            layer_name=config.registry.gradcam_layer)
        report["gradcam.png"] = plots.gradcam_figure(
            images, cams, titles, n_cols=max(per_class, 2) * 2,
            title=f"Grad-CAM ({layer}), trial {record.number}"
                  + (" (the ensemble's first member)" if members else ""))
    except ValueError as err:  # an MLP has no conv layer; a bad layer name is reported
        if config.registry.gradcam_layer:
            raise ConfigError(str(err)) from None
        report["gradcam.txt"] = f"no Grad-CAM: {err}"

    with tempfile.TemporaryDirectory(prefix="tunelab-model-") as tmp:
        paths = []
        for i, (m, _, _, path) in enumerate(built):
            if path is None:
                path = Path(tmp) / f"model_{i}.keras"
                m.save(path)
            paths.append(path)
        summary = record.extra.get("summary") or {}
        metrics = {"val_accuracy": val_accuracy, **test_metrics,
                   **{k: v for k, v in summary.items() if isinstance(v, (int, float))}}
        trial_attrs = opened.study.trials[record.number].user_attrs
        tags = {"tunelab.study": config.study_name, "tunelab.trial": record.number,
                **({"tunelab.ensemble": meta["members"]} if members else {}),
                "data_fingerprint": data.fingerprint(), "class_names": list(data.class_names),
                "model_source": source,
                # links back to the study's runs (the registration run lives in its own
                # experiment, "<study> registrations")
                model_registry.TRIAL_RUN_TAG: trial_attrs.get("mlflow_run_id"),
                model_registry.STUDY_RUN_TAG: opened.study.user_attrs.get(
                    "mlflow_parent_run_id")}
        logged = model_registry.log_model(
            tracking_uri=uri, experiment_name=config.study_name,
            keras_path=paths if members else paths[0],
            meta={k: meta[k] for k in ("loss", "class_names", "input_shape", "trial", "study",
                                       "model", "params", "calibration", "losses", "members",
                                       "member_params") if k in meta},
            input_example=raw_val[:2], tags=tags, metrics=metrics, report=report)
    version_tags = {**tags, "objective": record.value, "val_metric": record.metric,
                    "gap_accuracy": record.gap, "overfitting": record.overfitting,
                    "val_accuracy": round(val_accuracy, 6),
                    **{k: round(v, 6) for k, v in test_metrics.items()},
                    "params": dict(record.params), "selection": selection.explanation(),
                    **calibration_tags(calibration)}
    version = model_registry.register(tracking_uri=uri, name=name, logged=logged, tags=version_tags)
    if move:
        model_registry.set_champion(uri, name, version)
    else:
        model_registry.tag_version(uri, name, version, {"tunelab.champion_refused": compared})
    reg = Registration(name, version, record.number, move, compared, val_accuracy,
                       test_metrics, source, logged.run_id)
    print(f"registered {name} version {version} from "
          + (f"an ensemble of trials {', '.join(map(str, meta['members']))}"
             if members else f"trial {record.number}") + f" ({source})\n"
          f"compared: {compared}\n"
          + (f"alias {model_registry.CHAMPION!r} -> version {version}" if move else
             f"alias {model_registry.CHAMPION!r} stays on version {current.version} (the new "
             "version scores worse; --force moves it anyway)")
          + f"\ncalibration: {calibration_tags(calibration)['calibration']}; decision: "
          + calibration_tags(calibration)["threshold"]
          + "".join(f"\nheld-out {k}: {v:.4f}" for k, v in test_metrics.items()
                    if k == "test_accuracy"), file=out)
    context = card_context(config, data, opened.study, selection, record, meta, source,
                           name=name, version=version, run_id=logged.run_id)
    if data.test is not None:  # the clinical evaluation, once, on the held-out split
        mv = model_registry.resolve_version(uri, f"models:/{name}/{version}")
        reg.evaluation_run_id = evaluate_and_log(
            candidate, data, "test", uri=uri, model_uri=f"models:/{name}/{version}",
            version=mv, config=config, context=context, out=out).run_id
    else:  # no test split: the card still goes on the version, without test metrics
        card = render_card(context, calibration.to_dict(), None)
        model_registry.tag_version(uri, name, version, {"tunelab.model_card": "description"})
        model_registry.describe_version(uri, name, version, card)
    return reg


def fit_model_calibration(config: StudyConfig, data, y, outputs, meta, *, fitted_on: str):
    """``registry.calibration`` and ``registry.threshold`` fitted on out-of-sample raw
    outputs ``outputs`` with labels ``y`` (``tracking.evaluation.fit_calibration``)."""
    from tunelab.tracking.evaluation import fit_calibration

    reg = config.registry
    try:
        return fit_calibration(y, outputs, loss=meta.get("loss"), method=reg.calibration,
                               threshold=reg.threshold if data.n_classes == 2 else None,
                               fitted_on=fitted_on)
    except ValueError as err:
        raise ConfigError(f"registry.calibration / registry.threshold: {err}") from None


def trial_out_of_fold(config: StudyConfig, data, record, out=None):
    """A cross-validated trial's out-of-fold predictions (``search.crossval.OutOfFold``):
    kept by the study in its checkpoint folder, or, when they are not there (a study made
    before they were kept, a trial outside the top ``checkpoints.keep_top``, another
    machine), made again by training the trial's folds once more (same folds, same seeds),
    said on ``out``. Never the retrained model's own outputs: it trained on every image."""
    import numpy as np

    from tunelab.models.data.folds import pool_labels
    from tunelab.search.crossval import OutOfFold
    from tunelab.search.trial import out_of_fold

    out = out or sys.stdout
    path = checkpoint_store(config).out_of_fold_path(record.number)
    pool_y, _ = pool_labels(data)
    why = f"{path} is missing"
    if path.is_file():
        try:
            oof = OutOfFold.load(path)
        except (OSError, ValueError, KeyError) as err:
            why = f"{path} is unreadable ({type(err).__name__}: {err})"
        else:
            if oof.fingerprint == data.fingerprint() and np.array_equal(oof.y, pool_y[oof.rows]):
                return oof
            why = f"{path} was made from other data (fingerprint {oof.fingerprint})"
    n_folds = config.dataset.folds
    print(f"tunelab: trial {record.number}: its out-of-fold predictions are not kept ({why});"
          f" training its {n_folds} folds again to calibrate out of sample", file=out)
    seed = record.extra.get("seed")
    seed = config.seed + record.number if seed is None else int(seed)
    try:
        return out_of_fold(record.params, seed=seed, fold_seed=config.seed, n_folds=n_folds,
                           model=config.model, data=data, training=training_settings(config),
                           metric=config.objective.metric, direction=config.direction,
                           feature_cache_dir=feature_cache_dir(config))
    except Exception as err:  # TrialDiverged: a fold that trained in the study diverged now
        raise ConfigError(f"trial {record.number}: its folds could not be trained again for "
                          f"an out-of-sample calibration ({err})") from None


def calibration_tags(calibration) -> dict[str, str]:
    """The calibration and the operating point, as model-version tags."""
    cal = calibration.calibrator.to_dict()
    how = (f"temperature scaling, T = {cal['temperature']:.4g}" if cal["kind"] == "temperature"
           else f"Platt scaling, a = {cal['a']:.4g}, b = {cal['b']:.4g}")
    t = calibration.threshold
    rule = "argmax of the calibrated probabilities"
    if t is not None:
        rule = (f"P(positive) >= {t.threshold:.6g} ({t.rule}"
                + (f" >= {t.target:g}" if t.target is not None else "")
                + f"; on {calibration.fitted_on}: sensitivity {t.sensitivity:.3f}, "
                f"specificity {t.specificity:.3f})")
    return {"calibration": f"{how}, fitted on {calibration.fitted_on} "
                           f"({calibration.n_fit} images)",
            "threshold": rule,
            "threshold_value": None if t is None else f"{t.threshold:.17g}"}


# -- the model card and tunelab evaluate ---------------------------------------------------
SPLIT_NAMES = {"test": "test", "val": "validation", "validation": "validation"}


def split_description(config: StudyConfig, data) -> str:
    """How the splits were made, in words, from the config that made them."""
    d = config.dataset
    kind = (data.info or {}).get("kind", "")
    parts = []
    if data.test is not None:
        parts.append(f"test: a stratified {d.test_fraction:.0%} hold-out carved first"
                     if d.test_fraction else "test: the source's own test split")
    parts.append(f"validation: a stratified {d.validation_fraction:.0%} of the rest"
                 if kind not in ("npz",) or d.validation_fraction else "validation: the "
                 "source's own split")
    if d.folds > 1:
        parts.append(f"selection by stratified {d.cv_folds}-fold cross-validation on train + "
                     "validation")
    return "; ".join(parts) + f" (seed {config.seed}; never used by selection: test)"


def card_context(config: StudyConfig, data, study, selection, record, meta, source: str, *,
                 name: str, version: str, run_id: str | None) -> dict[str, Any]:
    """Everything the model card says apart from calibration and evaluation."""
    from collections import Counter

    states = Counter(t.state.name.lower() for t in study.trials)
    cfg = config.to_dict()
    group = config.dataset.group_pattern
    return {
        "title": f"{name} version {version}",
        "model": {"name": name, "version": version, "study": config.study_name,
                  "trial": record.number, "family": meta.get("model", config.model),
                  "source": source, "trained_on": meta.get("trained_on", "train"),
                  "params": dict(record.params)},
        "data": {"source": config.dataset.source, "fingerprint": data.fingerprint(),
                 "class_counts": data.class_counts(), "splits": split_description(config, data),
                 "group_guard": (f"dataset.group_pattern {group!r}: every group (patient) in "
                                 "one split only" if group else None)},
        "selection": {"search_space": cfg.get("space"),
                      "budget": f"{config.n_trials} trials, at most {config.max_epochs} epochs "
                                f"each, sampler {config.sampler.kind}, pruner "
                                f"{config.pruner.kind}",
                      "rule": f"objective {cfg['objective']}; selection.method "
                              f"{config.selection.method}",
                      "trials": ", ".join(f"{n} {state}" for state, n in sorted(states.items())),
                      "confirmation": confirmation_summary(config, selection),
                      "explanation": selection.explanation()},
        "gradcam": (f"`runs:/{run_id}/gradcam.png` (registration run {run_id}: "
                    f"{config.registry.gradcam_images_per_class} validation images per class)"
                    if run_id else None),
        "group_pattern": group, "trained_on": meta.get("trained_on"),
    }


def confirmation_summary(config: StudyConfig, selection) -> str:
    """What the model card says about the confirmation runs: which method, which
    candidates, their fresh scores, or why there were none."""
    sel = config.selection
    if not sel.confirms:
        return f"none: selection.method {sel.method} ranks the search's own scores"
    how = (f"{sel.confirm_seeds} fresh seed(s)" if sel.confirm_kind == "seeds"
           else f"{sel.confirm_folds}-fold cross-validation")
    choice = selection.choice
    scores = [f"trial {c.record.number} {c.confirmation.mean:.4f}"
              + (f" +/- {c.confirmation.sd:.4f}" if c.confirmation.sd is not None else "")
              + f" ({c.confirmation.n} {c.confirmation.kind})"
              for c in (choice.candidates if choice is not None else [])
              if c.confirmation is not None and c.confirmation.scores]
    if not scores:
        why = choice.reason if choice is not None and choice.reason else (
            f"no confirmation runs (a budget of {config.n_trials} trials leaves "
            f"{sel.candidates(config.n_trials)} candidate(s) to confirm)")
        return (f"{sel.method}, top {sel.confirm_top} by {how}: "
                + (why if why.startswith("not confirmed") else f"not confirmed ({why})"))
    return (f"{sel.method}, top {sel.confirm_top} retrained with {how} "
            f"{config.objective.metric}: " + "; ".join(scores)
            + ("" if choice.confirmed else f" (not used: {choice.reason})"))


def render_card(context: Mapping[str, Any], calibration: Mapping[str, Any] | None,
                evaluation: Mapping[str, Any] | None) -> str:
    from tunelab.tracking.model_card import known_limits, model_card

    data = context["data"]
    limits = known_limits(data.get("class_counts") or {}, evaluation=evaluation,
                          calibration=calibration, group_pattern=context.get("group_pattern"),
                          trained_on=context.get("trained_on"))
    return model_card(title=context["title"], model=context["model"], data=data,
                      selection=context.get("selection"), calibration=calibration,
                      evaluation=evaluation, gradcam=context.get("gradcam"), limits=limits)


@dataclass
class EvaluationResult:
    evaluation: Any  # tracking.evaluation.Evaluation
    run_id: str
    model_uri: str
    card: str


def evaluate_and_log(predictor, data, split: str, *, uri: str, model_uri: str, version,
                     config: StudyConfig | None, context: Mapping[str, Any] | None,
                     out=None) -> EvaluationResult:
    """Evaluate a calibrated ``ImageClassifier`` on a split of ``data``, log the evaluation
    run linked to ``version``, put the headline on the version and print it."""
    from tunelab.tracking import model_registry
    from tunelab.tracking.evaluation import Calibration, evaluate

    out = out or sys.stdout
    meta = predictor.meta
    if not meta.get("calibration"):
        raise ConfigError(f"{model_uri}: this model was logged without a calibration (an "
                          "older tunelab); register it again to evaluate it")
    name = SPLIT_NAMES.get(split)
    part = {"test": data.test, "validation": data.val}.get(name)
    if name is None:
        raise ConfigError(f"--split: {split!r}: use test or val")
    if part is None:
        raise ConfigError("--split test: the data has no test split; set dataset."
                          "test_fraction, use a source with a test split, or --split val")
    if list(map(str, meta["class_names"])) != list(map(str, data.class_names)):
        raise ConfigError(f"{model_uri} predicts classes {meta['class_names']} but the data "
                          f"has {list(data.class_names)}")
    calibration = Calibration.from_dict(meta["calibration"])
    outputs = predictor.outputs(to_uint8(part.x))
    n_resamples = config.registry.bootstrap_resamples if config is not None else 2000
    seed = config.seed if config is not None else 0
    # the calibration was fitted on validation images (the split itself, or the pool's
    # out-of-fold predictions): evaluated there, its ECE after is in sample, and said so
    evaluation = evaluate(part.y, outputs, list(data.class_names), calibration, split=name,
                          n_resamples=n_resamples, seed=seed,
                          fitted_on_split=name == "validation")
    card = ""
    if context is not None:
        card = render_card(context, meta["calibration"], evaluation.report)
    run_id = model_registry.log_evaluation(
        tracking_uri=uri, evaluation=evaluation, card=card or None, version=version,
        model_uri=model_uri, extra_tags={
            "data_fingerprint": data.fingerprint(),
            "tunelab.evaluated_study": config.study_name if config is not None else None})
    print_evaluation(evaluation, model_uri, run_id, out)
    return EvaluationResult(evaluation, run_id, model_uri, card)


def print_evaluation(evaluation, model_uri: str, run_id: str, out=None) -> None:
    out = out or sys.stdout
    report = evaluation.report
    split = report["split"]
    boot = report["bootstrap"]
    primary = report["operating_points"][evaluation.primary]
    cal = report["calibration"]
    lines = [f"evaluation of {model_uri} on the {split['name']} split ({split['n']} images), "
             f"at {primary['decision_rule']}; {boot['confidence']:.0%} intervals from a "
             f"stratified bootstrap, {boot['n_resamples']} resamples, seed {boot['seed']} "
             "(the method in full: evaluation/report.json)"]
    for key, value in report["headline"].items():
        lines.append(f"  {key:<18} {value}")
    stored = report["operating_points"].get("stored")
    if stored is not None:
        achieved = stored[f"achieved_sensitivity_on_{split['name']}"]
        lines.append(f"  stored threshold {stored['threshold']:.6g} ({stored['rule']}"
                     + (f" >= {stored['target']:g}" if stored.get("target") is not None
                        else "") + f"): sensitivity {achieved['estimate']:.3f} "
                     f"({achieved['low']:.3f}-{achieved['high']:.3f}) on {split['name']}")
        half = report["operating_points"]["0.5"]["metrics"]
        lines.append(f"  at 0.5: sensitivity {half['sensitivity']['estimate']:.3f}, "
                     f"specificity {half['specificity']['estimate']:.3f}")
    lines.append(f"  ECE {cal['ece_before_on_' + split['name']]:.3f} before, "
                 f"{cal['ece_after_on_' + split['name']]:.3f} after "
                 f"{cal['calibrator']['kind']} scaling (fitted on {cal['fitted_on']})"
                 + (f"; in sample: the calibration was fitted on these images, its "
                    f"cross-fitted ECE there is {cal.get('ece_cross_fitted_after', math.nan):.3f}"
                    if cal.get("ece_after_in_sample") else ""))
    lines.append(f"  logged to MLflow run {run_id}")
    print("\n".join(lines), file=out)
    if evaluation.warning:
        print(f"tunelab: {evaluation.warning}", file=out)


def evaluate_model(model_uri: str, dataset: str | None = None, split: str = "test", *,
                   tracking_uri: str | None = None, study_name: str | None = None,
                   storage: str | None = None, out=None) -> EvaluationResult:
    """``tunelab evaluate``: a registered model on a dataset's split, logged and printed.

    The data are loaded as the model's study loaded them (its config, from the Optuna
    storage; ``dataset`` replaces only the source), or, without the study, from ``dataset``
    with the model's image size and the default split settings."""
    import dataclasses

    from tunelab.tracking import model_registry

    uri = tracking_uri or DEFAULT_TRACKING_URI
    try:
        version = model_registry.resolve_version(uri, model_uri)
        loaded = model_registry.load_pyfunc(uri, model_uri)
    except Exception as err:  # MlflowException, OSError: name the URI and the store
        raise ConfigError(f"{model_uri}: cannot load it from {uri} ({type(err).__name__}: "
                          f"{err}); check the name and alias, or pass --tracking-uri") from None
    predictor = loaded.unwrap_python_model()
    meta = predictor.meta
    study = study_name or (version.tags.get("tunelab.study") if version else None) \
        or meta.get("study")
    opened = None
    try:
        opened = open_finished_study(study, storage)
    except ConfigError:
        if dataset is None:
            raise
    if opened is not None:
        config = opened.config
        if dataset is not None:
            config = dataclasses.replace(
                config, dataset=dataclasses.replace(config.dataset, source=dataset))
    else:
        h, _, c = meta["input_shape"]
        config = config_from_dict({"dataset": {
            "source": dataset, "image_size": int(h),
            "color_mode": "rgb" if int(c) == 3 else "grayscale"}})
    data = load_data(config)
    context = None
    if opened is not None and version is not None:
        selection = study_selection(opened.study, opened.config)
        trial = int(meta.get("trial", -1))
        record = next((v.record for v in selection.verdicts if v.record.number == trial),
                      selection.chosen)
        if record is not None:
            context = card_context(config, data, opened.study, selection, record, meta,
                                   version.tags.get("model_source", ""), name=version.name,
                                   version=str(version.version), run_id=version.run_id)
    return evaluate_and_log(predictor, data, split, uri=uri, model_uri=model_uri,
                            version=version, config=config, context=context, out=out)


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


def predict(model_uri: str, paths: list[str], tracking_uri: str | None = None, *,
            skip_bad_images: bool = False, max_image_pixels: int | None = None):
    """Predict image files with a registered model: a DataFrame with ``file`` first.

    Every file is read before the model is loaded: an unreadable one, or one above
    ``max_image_pixels`` (default Pillow's limit), is an error naming it, or with
    ``skip_bad_images`` left out with a line on stderr."""
    from tunelab.models.data.images import DEFAULT_MAX_PIXELS, ImageError, read_image

    if max_image_pixels is not None and max_image_pixels < 1:
        raise ConfigError(f"--max-image-pixels: {max_image_pixels} must be > 0")
    limit = max_image_pixels or DEFAULT_MAX_PIXELS
    files = image_files(paths)
    images, kept = [], []
    for path in files:
        try:
            image, _ = read_image(path, max_pixels=limit)
        except (ImageError, OSError) as err:
            if not skip_bad_images:
                raise ConfigError(f"{path}: not a readable image ({err}); --skip-bad-images "
                                  "predicts the others") from None
            print(f"tunelab: skipped {path}: {err}", file=sys.stderr)
            continue
        images.append(to_uint8(image))
        kept.append(path)
    if not images:
        raise ConfigError(f"none of the {len(files)} file(s) is a readable image")
    files = kept
    from tunelab.tracking import model_registry

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
    from tunelab.models.model_files import load_checkpoint, save_checkpoint
    from tunelab.search.trial import continue_trial
    from tunelab.tracking import StudyTracker

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
    done = int(meta.get("epochs_trained") or 0)
    run_id = opened.study.trials[trial].user_attrs.get("mlflow_run_id")
    run = None
    if run_id:
        run = StudyTracker(opened.tracking_uri, config.study_name).reopen_trial_run(run_id,
                                                                                   trial)
    history, summary, trained = continue_trial(
        model, meta, data=data, training=training_settings(config), epochs=epochs,
        metric=config.objective.metric, direction=config.direction,
        on_epoch=(lambda e, logs: run.epoch_ended(e, logs)) if run else None,
        feature_cache_dir=feature_cache_dir(config))
    meta = {**meta, "history": history, "epochs_trained": len(history.get("loss", [])),
            "summary": summary, "continued": int(meta.get("continued", 0)) + 1}
    save_checkpoint(model, path, meta)
    if run is not None:
        run.write_pending()  # the last epochs, held back for the next write (runs.py)
        run.log_metrics({f"continued_{k}": v for k, v in summary.items()},
                        step=meta["epochs_trained"])
        run.set_tags({"tunelab.continued_to_epoch": meta["epochs_trained"]})
    metric = config.objective.metric
    print(f"trial {trial}: trained epochs {done + 1}..{done + trained}; best "
          f"{metric} {summary[f'best_{metric}']:.4f} at epoch {int(summary['best_epoch'])}, "
          f"gap {summary.get('gap_accuracy', float('nan')):.4f}; checkpoint {path}"
          + (f"; logged to MLflow run {run_id}" if run_id else ""), file=out)
    return summary
