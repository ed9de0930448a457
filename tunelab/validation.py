"""Checks that need the data and the model registry, run before any store is touched."""

from __future__ import annotations

import importlib.util
import itertools

from tunelab.config import ConfigError, StudyConfig
from tunelab.models import allowed_losses, check_model_input, get_model_spec, resolve_hparams
from tunelab.models.data import Dataset
from tunelab.search.objective import TRAINING_KEYS
from tunelab.search.space import candidate_values


def validate_against_data(config: StudyConfig, data: Dataset) -> None:
    try:
        spec = get_model_spec(config.model)
    except ValueError as err:
        raise ConfigError(f"model: {err}") from None
    space = config.search_space
    allowed = sorted(set(spec.defaults) | set(TRAINING_KEYS))
    for name in space.dimensions:
        if name not in allowed:
            raise ConfigError(f"space.{name}: not a hyperparameter of model {config.model!r} "
                              f"(allowed: {', '.join(allowed)})")
    losses = allowed_losses(data.n_classes)
    if "loss" in space.dimensions:
        for loss in candidate_values(space.dimensions["loss"]):
            if loss not in losses:
                raise ConfigError(
                    f"space.loss: {loss!r} needs two classes but {data.name} has "
                    f"{data.n_classes}; allowed: {', '.join(losses)}")
    model_dims = {n: d for n, d in space.dimensions.items() if n not in TRAINING_KEYS}
    for name, dim in model_dims.items():
        for value in candidate_values(dim):
            try:
                resolve_hparams(config.model, **{name: value})
            except ValueError as err:
                raise ConfigError(f"space.{name}: {err}") from None
    # The smallest input a model needs can depend on depth-like hyperparameters: try every
    # combination of theirs (few values each) against the data's image size.
    shape_keys = [k for k in ("n_stages", "padding", "kernel_size", "n_blocks")
                  if k in model_dims]
    combos = itertools.product(*(candidate_values(model_dims[k]) for k in shape_keys))
    for combo in combos:
        try:
            check_model_input(config.model, data.input_shape, **dict(zip(shape_keys, combo)))
        except ValueError as err:
            where = ", ".join(f"{k}={v}" for k, v in zip(shape_keys, combo))
            raise ConfigError(f"model: {err}" + (f" (with {where})" if where else "")) from None
    if config.tensorboard and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("tensorboard: true needs the tensorboard package; "
                          "pip install 'tunelab[tensorboard]'")
