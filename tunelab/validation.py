"""Checks that need the data and the model registry, run before any store is touched."""

from __future__ import annotations

import importlib.util
import itertools

from tunelab.config import ConfigError, StudyConfig
from tunelab.models import allowed_losses, check_model_input, get_model_spec, resolve_hparams
from tunelab.models.data import Dataset
from tunelab.models.training_keys import TRAINING_KEYS
from tunelab.search.conditional import FamilySpace, family_views
from tunelab.search.space import candidate_values


def _check_data_knobs(config: StudyConfig, data: Dataset) -> None:
    """Augmentation values and class weights in the space."""
    from tunelab.models.data.augment import AUGMENT_KEYS, check_augment_value

    space = config.search_space
    for name in AUGMENT_KEYS:
        if name in space.dimensions:
            for value in candidate_values(space.dimensions[name]):
                allowed = check_augment_value(name, value)
                if allowed:
                    raise ConfigError(f"space.{name}: {value!r} is not allowed ({allowed})")
    if "class_weight" in space.dimensions:
        for value in candidate_values(space.dimensions["class_weight"]):
            if value not in ("balanced", "none"):
                raise ConfigError(f"space.class_weight: {value!r} is not allowed (balanced or "
                                  "none)")


def check_logged_metrics(config: StudyConfig, data: Dataset) -> None:
    """The objective metric and the early-stopping monitor are metrics a trial on this data
    logs (the per-class ones depend on the class names); else a trial would train for
    nothing and fail when it reads them."""
    from tunelab.models.metric_names import logged_metrics

    logged = logged_metrics(data.class_names)
    for key, metric in (("objective.metric", config.objective.metric),
                        ("early_stopping.monitor", config.monitor)):
        if metric not in logged:
            raise ConfigError(f"{key}: {metric!r} is not logged for {data.name} "
                              f"({data.n_classes} classes: {', '.join(data.class_names)}); "
                              f"choose one of {', '.join(logged)}")


def _check_model(model_name: str, view: dict, data: Dataset) -> None:
    """Every value the space may give ``model_name`` is valid and fits the image size;
    ``view`` maps its hyperparameter names to (space key, dimension)."""
    model_dims = {n: kd for n, kd in view.items() if n not in TRAINING_KEYS}
    for name, (key, dim) in model_dims.items():
        for value in candidate_values(dim):
            try:
                resolve_hparams(model_name, **{name: value})
            except ValueError as err:
                raise ConfigError(f"space.{key}: {err}") from None
    # The smallest input a model needs can depend on depth-like hyperparameters: try every
    # combination of theirs (few values each) against the data's image size.
    shape_keys = [k for k in ("n_stages", "padding", "kernel_size", "n_blocks")
                  if k in model_dims]
    combos = itertools.product(*(candidate_values(model_dims[k][1]) for k in shape_keys))
    for combo in combos:
        try:
            check_model_input(model_name, data.input_shape,
                              **dict(zip(shape_keys, combo, strict=True)))
        except ValueError as err:
            where = ", ".join(f"{k}={v}" for k, v in zip(shape_keys, combo, strict=True))
            raise ConfigError(f"model: {err}" + (f" (with {where})" if where else "")) from None


def validate_against_data(config: StudyConfig, data: Dataset) -> None:
    check_logged_metrics(config, data)
    space = config.search_space
    for name in (space.families() if isinstance(space, FamilySpace) else [config.model]):
        try:
            get_model_spec(name)  # also imports a user model (package.module:function)
        except ValueError as err:
            raise ConfigError(f"model: {err}") from None
    try:
        views = family_views(config.model, space)  # one per model a trial may build
    except ValueError as err:
        raise ConfigError(str(err)) from None
    losses = allowed_losses(data.n_classes)
    if "loss" in space.dimensions:
        for loss in candidate_values(space.dimensions["loss"]):
            if loss not in losses:
                raise ConfigError(
                    f"space.loss: {loss!r} needs two classes but {data.name} has "
                    f"{data.n_classes}; allowed: {', '.join(losses)}")
    for model_name, view in views:
        _check_model(model_name, view, data)
    _check_data_knobs(config, data)
    check_folds(config, data)
    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("tensorboard: true needs the tensorboard package; "
                          "pip install 'tunelab[tensorboard]'")


def check_folds(config: StudyConfig, data: Dataset) -> None:
    """With ``dataset.cv_folds``, the folds exist: enough images of every class, and enough
    groups with ``dataset.group_pattern``."""
    from tunelab.models.data.folds import fold_rows, pool_labels
    from tunelab.models.data.sources import DataError

    k = config.dataset.folds
    if k < 2:
        return
    y, groups = pool_labels(data)
    try:
        fold_rows(y, k, config.seed, groups)
    except DataError as err:
        raise ConfigError(str(err)) from None
