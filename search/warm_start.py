"""Known-good configurations tried first: ``warm_start:`` entries become the study's first
trials (``study.enqueue_trial``), once: rerunning or resuming the study does not enqueue them
again (``skip_if_exists``).

    warm_start:
      - {learning_rate: 1.0e-4, batch_norm: true, dropout: 0.4}       # the lab's best
      - {model: resnet8, resnet8: {n_base: 16}}                         # family search

Names are the space's: shared names, ``model``, and a family's own parameters either nested
under the family or dotted (``resnet8.n_base``). Every name must be searched by the space
(a fixed value cannot be warm-started) and every value must lie in its dimension.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import optuna

from tunelab.models.dense_widths import encode

from .conditional import FAMILY_KEY, FamilySpace, owner_of
from .space import Choice, Fixed, FloatRange, IntRange, SearchSpace


def flatten_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """``{model: a, a: {n_base: 8}}`` -> ``{model: a, a.n_base: 8}``; per-layer widths
    ``[128, 64]`` -> ``"128-64"``, as the space encodes them."""
    flat: dict[str, Any] = {}
    for name, value in entry.items():
        if isinstance(value, Mapping):
            for sub, sub_value in value.items():
                flat[f"{name}.{sub}"] = encode(sub_value)
        else:
            flat[name] = encode(value)
    return flat


def _contains(dim: Any, value: Any) -> bool:
    if isinstance(dim, Choice):
        return any(value == c and type(value) is type(c) or
                   (isinstance(c, float) and isinstance(value, int) and value == c)
                   for c in dim.choices)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(dim, IntRange):
        return isinstance(value, int) and dim.low <= value <= dim.high \
            and (value - dim.low) % dim.step == 0
    if isinstance(dim, FloatRange):
        return dim.low <= value <= dim.high
    return False


def check_warm_start(entries: Sequence[Mapping[str, Any]], space: SearchSpace) -> list[dict]:
    """The entries flattened to Optuna parameter names; ValueError naming the bad one."""
    out = []
    searched = [n for n, d in space.dimensions.items() if not isinstance(d, Fixed)]
    for i, entry in enumerate(entries):
        where = f"warm_start[{i}]"
        if not entry:
            raise ValueError(f"{where}: an empty configuration")
        flat = flatten_entry(entry)
        family = flat.get(FAMILY_KEY)
        for name, value in flat.items():
            dim = space.dimensions.get(name)
            if dim is None or isinstance(dim, Fixed):
                raise ValueError(f"{where}.{name}: not a searched parameter of the space "
                                 f"(searched: {', '.join(searched) or 'none'})")
            if not _contains(dim, value):
                raise ValueError(f"{where}.{name}: {value!r} is outside space.{name} "
                                 f"({_describe(dim)})")
            owner = owner_of(name)[0] if isinstance(space, FamilySpace) else None
            if owner is not None and owner != family:
                raise ValueError(f"{where}.{name}: applies to model {owner!r} only; set "
                                 f"model: {owner} in the same entry")
        out.append(flat)
    return out


def _describe(dim: Any) -> str:
    if isinstance(dim, Choice):
        return "choices " + ", ".join(map(repr, dim.choices))
    return f"{dim.low} to {dim.high}"


def enqueue_warm_start(study: optuna.Study, entries: Sequence[Mapping[str, Any]],
                       space: SearchSpace) -> int:
    """Enqueue the entries that are not in the study yet; returns how many were added."""
    before = len(study.get_trials(deepcopy=False))
    for params in check_warm_start(entries, space):
        study.enqueue_trial(params, user_attrs={"warm_start": True}, skip_if_exists=True)
    return len(study.get_trials(deepcopy=False)) - before
