"""The one seam from a ``StudyConfig`` to the rooms' objects.

Everything that turns configuration into framework objects lives here, so ``tune``,
``worker``, ``best``, ``register``, ``continue``, the CLI and the benchmarks build them the
same way: the resolved config (overrides applied once), the dataset, the training settings,
the objective rule, the checkpoint store, the study with its sampler and pruner, the trial
budget and the objective.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunelab.config import DEFAULT_STORE, ConfigError, StudyConfig, config_from_dict, load_config


def resolve_config(config: StudyConfig | str | Path | Mapping[str, Any] | None,
                   overrides: Mapping[str, Any]) -> StudyConfig:
    """A config object, YAML path, mapping or None (the default), with dotted overrides."""
    if isinstance(config, StudyConfig):
        if overrides:
            raw = config.to_dict()
            for dotted, value in overrides.items():
                node = raw
                *parents, leaf = dotted.split(".")
                for key in parents:
                    node = node.setdefault(key, {})
                node[leaf] = value
            return config_from_dict(raw)
        return config
    if isinstance(config, Mapping):
        return load_config(None, {**config, **overrides})
    return load_config(config, overrides)


def cache_dir(config: StudyConfig) -> Path:
    """Decoded images, keyed by a hash of the files and options, so every worker process
    (and every later study of the same data) opens them instead of decoding again. Outside
    the stores: a config refused after the data loaded still leaves ./mlruns untouched."""
    if config.dataset.cache_dir:
        return Path(config.dataset.cache_dir)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tunelab" / "datasets"


def feature_cache_dir(config: StudyConfig) -> str:
    """Frozen-backbone features shared by every trial and worker (models/feature_cache.py)."""
    return str((cache_dir(config) / "features").resolve())


def image_size(config: StudyConfig) -> tuple[int | None, str]:
    """The side images are resized to (None: native) and why, for the study header."""
    from tunelab.models.data.dataset import auto_image_size

    d = config.dataset
    if d.image_size == "auto":
        return auto_image_size(d.source, label_pattern=d.label_pattern,
                               labels_csv=d.labels_csv)
    if d.image_size in (None, "native"):
        return None, "native (dataset.image_size)"
    return int(d.image_size), f"{d.image_size}x{d.image_size} (dataset.image_size)"


def load_data(config: StudyConfig):
    """The study's dataset (``tunelab.models.data.Dataset``); bad data is a ConfigError.
    ``data.info["image_size_rule"]`` says how the image size was chosen."""
    from tunelab.models.data import DataError, load_dataset

    d = config.dataset
    try:
        side, why = image_size(config)
        data = load_dataset(d.source, image_size=side, color_mode=d.color_mode,
                            validation_fraction=d.validation_fraction,
                            test_fraction=d.test_fraction, seed=config.seed,
                            label_pattern=d.label_pattern, labels_csv=d.labels_csv,
                            group_pattern=d.group_pattern, skip_bad_images=d.skip_bad_images,
                            max_image_pixels=d.max_image_pixels, cache_dir=cache_dir(config),
                            class_names=d.class_names)
    except DataError as err:
        raise ConfigError(str(err)) from None
    data.info["image_size_rule"] = why
    return data


def resolve_for_data(config: StudyConfig, data) -> StudyConfig:
    """``config`` with ``dataset.cv_folds: auto`` and ``selection.method: auto`` decided for
    ``data`` (``config.resolve_auto``: by the validation split's smallest class); the
    decision's line goes to ``data.info["auto_rule"]`` for the study header. Called once,
    before the study is created: the stored config holds the decision, so a resumed study,
    its workers, ``best`` and ``register`` never decide again."""
    from tunelab.config import resolve_auto

    counts = data.class_counts().get("val") or {}
    smallest = min(counts.values()) if counts else 0
    auto = config.dataset.cv_folds == "auto"
    resolved, line = resolve_auto(config, smallest)
    if auto and resolved.dataset.folds > 1:
        from tunelab.validation import check_folds

        try:  # too few images of a class (or groups) for the folds: plain trials
            check_folds(resolved, data)
        except ConfigError as err:
            resolved, _ = resolve_auto(config, 1 << 30)
            reason = str(err).split(";")[0].removeprefix("dataset.cv_folds: ")
            line = (f"no cross-validation (dataset.cv_folds auto: {reason}); selection "
                    f"{resolved.selection.method} (selection.method auto)")
    config = resolved
    if line:
        data.info["auto_rule"] = line
    return config


def training_settings(config: StudyConfig):
    """``models.training.TrainingSettings`` from the config (trial parameters go on top)."""
    from tunelab.models.training import TrainingSettings

    es, lr = config.early_stopping, config.lr_schedule
    mode = "max" if not config.monitor.endswith("loss") else "min"
    return TrainingSettings(
        max_epochs=config.max_epochs, monitor=config.monitor, monitor_mode=mode,
        early_stopping=es.enabled, patience=es.patience, min_delta=es.min_delta,
        restore_best_weights=es.restore_best_weights, lr_schedule=lr.kind, lr_factor=lr.factor,
        lr_patience=lr.patience, lr_step_size=lr.step_size, min_lr=lr.min_lr,
        memory_limit_mb=config.dataset.memory_limit_mb)


def objective_rule(config: StudyConfig):
    """``search.selection.ObjectiveRule``: the objective kind, direction and gap limits."""
    from tunelab.search.selection import ObjectiveRule

    return ObjectiveRule.from_config(config.objective, config.direction)


def checkpoint_dir(config: StudyConfig) -> Path:
    """``checkpoints.dir``, else ``checkpoints/<study>`` beside the journal (or under
    ./mlruns for a database storage). Absolute, so every worker finds the same folder."""
    if config.checkpoints.dir:
        return Path(config.checkpoints.dir).expanduser().resolve()
    base = (DEFAULT_STORE if "://" in config.storage_url
            else Path(config.storage_url.removeprefix("journal:")).expanduser().parent)
    return (base / "checkpoints" / config.study_name).resolve()


def checkpoint_store(config: StudyConfig):
    """``search.top_checkpoints.CheckpointStore``: the top trials' weights, only those."""
    from tunelab.search.top_checkpoints import CheckpointStore

    return CheckpointStore(checkpoint_dir(config), config.checkpoints.keep_top,
                           objective_rule(config))


def trial_epochs(config: StudyConfig) -> int:
    """Epochs a trial may train: with cross-validation, counted across its folds (pruning
    steps and progress lines count them that way)."""
    return config.max_epochs * config.dataset.folds


def trial_budget(config: StudyConfig) -> int | None:
    """The search's trials: ``n_trials`` less the confirmation runs, which count as trials
    (``selection``); a grid study without ``n_trials`` runs every grid point."""
    if config.n_trials is None and config.sampler.kind == "grid":
        return len(list(itertools.product(*config.search_space.grid().values())))
    if config.n_trials is None:
        return None
    return config.n_trials - config.selection.runs(config.n_trials)


def search_deadline(config: StudyConfig, deadline: float | None) -> float | None:
    """With ``timeout``, the search stops ``selection.reserve_fraction`` of it early so that
    the confirmation runs finish within the study's timeout."""
    if deadline is None or config.timeout is None or not config.selection.confirms:
        return deadline
    return deadline - config.timeout * config.selection.reserve_fraction


def study_selection(study, config: StudyConfig):
    """The study's pick: the objective's rule, re-ranked by ``selection.method`` (confirmed
    means when the confirmation ran). A ``search.selection.Selection``."""
    from tunelab.search.selection_methods import select_study

    s = config.selection
    method = s.method if s.method != "auto" else (  # a config never resolved (tune does)
        "best_validation" if config.dataset.folds > 1 else "confirm_mean")
    return select_study(study, objective_rule(config), method, top=s.confirm_top, z=s.z)


def will_confirm(config: StudyConfig) -> bool:
    """Whether ``tune`` retrains top candidates after the search (``confirm``)."""
    s = config.selection
    return s.confirms and s.candidates(config.n_trials) > 0 and not objective_rule(config).multi


def confirm(study, config: StudyConfig, data, deadline: float | None, tracker=None) -> dict:
    """Run the confirmation of the study's top candidates (``tune``'s parent only)."""
    from tunelab.search.confirm import confirm_candidates

    s = config.selection
    top = s.candidates(config.n_trials)
    if not will_confirm(config):
        return {}
    on_run = None
    if tracker is not None:
        def on_run(record, entry, history):
            tracker.log_confirmation(record.extra.get("mlflow_run_id"), record.number, entry,
                                     history)
    return confirm_candidates(study, rule=objective_rule(config), data=data, model=config.model,
                              training=training_settings(config), seed=config.seed, top=top,
                              kind=s.confirm_kind, runs=s.per_candidate, deadline=deadline,
                              feature_cache_dir=feature_cache_dir(config), on_run=on_run)


def open_study(config: StudyConfig, *, create: bool, on_stale=None, worker_index: int = 0):
    """The study in ``config``'s storage with its sampler and pruner (``create``: make it
    if missing, with the objective's directions)."""
    from tunelab.search import make_pruner, make_sampler
    from tunelab.search import open_study as open_optuna_study

    space = config.search_space
    # The sampler reseeds itself per trial from the study's seed and the trial's number
    # (search.study.trial_seed): recycled, parallel and resumed workers, and a second
    # `tunelab tune`, draw new points; a fresh study with the same seed repeats its trials.
    sampler = make_sampler(config.sampler.kind, seed=config.seed,
                           n_startup_trials=config.sampler.n_startup_trials,
                           grid=space.grid() if config.sampler.kind == "grid" else None)
    p = config.pruner
    rule = objective_rule(config)
    pruner = make_pruner("none" if rule.multi else p.kind, max_epochs=trial_epochs(config),
                         n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps,
                         min_resource=p.min_resource, reduction_factor=p.reduction_factor)
    try:
        return open_optuna_study(storage=config.storage_url, study_name=config.study_name,
                                 directions=rule.directions if create else None,
                                 sampler=sampler, pruner=pruner,
                                 heartbeat_interval=config.heartbeat_interval,
                                 on_stale=on_stale)
    except ValueError as err:
        if not create:
            raise
        raise ConfigError(f"objective.kind: {config.objective.kind}: {err} (objective.kind "
                          "pareto has two objectives, (metric, overfit gap); the others one)"
                          ) from None


def make_objective(config: StudyConfig, data, tracker, n_trials: int | None,
                   started_at: float | None, progress=None, worker: int | None = None):
    """The trial objective both engines record through (``search.objective.Objective``);
    ``progress`` receives its trials' events (``search/progress.py``), ``worker`` names this
    process in them."""
    from tunelab.search import Objective
    from tunelab.signals import raise_if_stopped, stops_deferred

    return Objective(model_name=config.model, space=config.search_space, data=data,
                     training=training_settings(config), metric=config.objective.metric,
                     direction=config.direction, n_trials=n_trials, seed=config.seed,
                     config=config.to_dict(), tracker=tracker, progress=progress,
                     tensorboard=config.tensorboard, rule=objective_rule(config),
                     checkpoints=checkpoint_store(config),
                     feature_cache_dir=feature_cache_dir(config),
                     cv_folds=config.dataset.folds, worker=worker,
                     heartbeat_interval=config.heartbeat_interval,
                     no_repeats=config.sampler.kind == "grid",
                     stop_check=raise_if_stopped, stop_guard=stops_deferred)
