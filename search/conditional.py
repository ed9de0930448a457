"""The model family as a hyperparameter, with parameters that belong to one family only.

    model: [lenet, alexnet, resnet8]        # or space.model: [...]
    space:
      learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}   # every family
      dropout: [0.0, 0.3]        # every family that has a 'dropout' hyperparameter
      lenet: {n_base: [8, 16]}                                 # lenet only
      resnet8: {n_base: [8, 16], kernel_size: [3, 5]}          # resnet8 only

Define-by-run, as Optuna intends for conditional spaces: a trial suggests ``model`` first,
then only the parameters that apply to that family. A family's own parameters are named
``<family>.<name>`` in Optuna and MLflow (``lenet.n_base``), so two families may give the same
hyperparameter different ranges without clashing distributions; a family's own value wins
over a shared one. ``split_params`` turns a trial's parameters back into (model name, model
hyperparameters, training parameters).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import optuna

from tunelab.models.training_keys import TRAINING_KEYS

from .space import (
    RANGE_KEYS,
    Dimension,
    SearchSpace,
    candidate_values,
    dimension_to_yaml,
    parse_dimension,
)

FAMILY_KEY = "model"


def _accepted(model: str) -> set[str]:
    from tunelab.models import get_model_spec

    return set(get_model_spec(model).defaults)


def _is_subspace(value: Any) -> bool:
    return isinstance(value, Mapping) and not set(value) <= RANGE_KEYS


def owner_of(name: str) -> tuple[str | None, str]:
    """``lenet.n_base`` -> ("lenet", "n_base"); ``n_base`` -> (None, "n_base"). A user model's
    name holds dots (``my_lab.models:build.width``): hyperparameter names never do."""
    owner, dot, hparam = name.rpartition(".")
    return (owner, hparam) if dot else (None, name)


@dataclass(frozen=True)
class FamilySpace(SearchSpace):
    """A search space whose ``model`` dimension picks the family; ``dimensions`` is flat:
    ``model``, shared names, and ``<family>.<name>`` for one family's own parameters."""

    def families(self) -> list[str]:
        return [str(v) for v in candidate_values(self.dimensions[FAMILY_KEY])]

    def suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        family = self.dimensions[FAMILY_KEY].suggest(trial, FAMILY_KEY)
        shared_ok = _accepted(family) | set(TRAINING_KEYS)
        params: dict[str, Any] = {FAMILY_KEY: family}
        for name, dim in self.dimensions.items():
            if name == FAMILY_KEY:
                continue
            owner, hparam = owner_of(name)
            if (owner == family) if owner is not None else (hparam in shared_ok):
                params[name] = dim.suggest(trial, name)
        return params

    def to_yaml(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, dim in self.dimensions.items():
            owner, hparam = owner_of(name)
            if owner is None:
                out[name] = dimension_to_yaml(dim)
            else:
                out.setdefault(owner, {})[hparam] = dimension_to_yaml(dim)
        return out


def is_family_space(raw: Mapping[str, Any]) -> bool:
    return FAMILY_KEY in raw


def build_space(raw: Mapping[str, Any]) -> SearchSpace:
    """YAML ``space`` -> ``SearchSpace``, or ``FamilySpace`` when it searches the model."""
    if not is_family_space(raw):
        return SearchSpace.from_yaml(raw)
    family_dim = parse_dimension(FAMILY_KEY, raw[FAMILY_KEY])
    families = [str(v) for v in candidate_values(family_dim)]
    for value in candidate_values(family_dim):
        if not isinstance(value, str):
            raise ValueError(f"space.model: {value!r} is not a model name")
    dims: dict[str, Dimension] = {FAMILY_KEY: family_dim}
    for name, value in raw.items():
        if name == FAMILY_KEY:
            continue
        if _is_subspace(value) and name in families:
            for hparam, sub in value.items():
                if _is_subspace(sub):
                    raise ValueError(f"space.{name}.{hparam}: sub-spaces do not nest")
                dims[f"{name}.{hparam}"] = parse_dimension(f"{name}.{hparam}", sub)
        else:
            dims[name] = parse_dimension(name, value)
    return FamilySpace(dims)


def split_params(params: Mapping[str, Any], default_model: str,
                 training_keys: Iterable[str] | None = None,
                 ) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """A trial's parameters -> (model name, its hyperparameters, training parameters)."""
    training_keys = set(TRAINING_KEYS if training_keys is None else training_keys)
    family = str(params.get(FAMILY_KEY, default_model))
    flat: dict[str, Any] = {}
    for name, value in params.items():  # shared first, the family's own values override
        if name != FAMILY_KEY and owner_of(name)[0] is None:
            flat[name] = value
    for name, value in params.items():
        owner, hparam = owner_of(name)
        if owner is not None and owner == family:
            flat[hparam] = value
    model = {k: v for k, v in flat.items() if k not in training_keys}
    training = {k: v for k, v in flat.items() if k in training_keys}
    return family, model, training


def family_views(default_model: str, space: SearchSpace,
                 accepted: Callable[[str], set[str]] = _accepted,
                 ) -> list[tuple[str, dict[str, tuple[str, Dimension]]]]:
    """For each model the study may build: the dimensions it sees, by hyperparameter name,
    with the ``space.`` key each came from. Raises ValueError for a name no model accepts.

    A plain space has one view (``default_model``) and every name must belong to it; in a
    family space a shared name must belong to at least one family.
    """
    training = set(TRAINING_KEYS)
    if not isinstance(space, FamilySpace):
        names = accepted(default_model) | training
        for name in space.dimensions:
            if name not in names:
                raise ValueError(f"space.{name}: not a hyperparameter of model "
                                 f"{default_model!r} (allowed: {', '.join(sorted(names))})")
        return [(default_model, {n: (n, d) for n, d in space.dimensions.items()})]
    families = space.families()
    known = {f: accepted(f) | training for f in families}
    views: dict[str, dict[str, tuple[str, Dimension]]] = {f: {} for f in families}
    for name, dim in space.dimensions.items():
        if name == FAMILY_KEY:
            continue
        owner, hparam = owner_of(name)
        if owner is not None:
            if hparam not in known[owner]:
                raise ValueError(f"space.{name}: not a hyperparameter of model {owner!r} "
                                 f"(allowed: {', '.join(sorted(known[owner]))})")
            views[owner][hparam] = (name, dim)
            continue
        users = [f for f in families if hparam in known[f]]
        if not users:
            raise ValueError(f"space.{name}: not a hyperparameter of any searched model "
                             f"({', '.join(families)})")
        for family in users:
            views[family].setdefault(hparam, (name, dim))
    return [(f, views[f]) for f in families]

