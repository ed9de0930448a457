"""A typed search space: each hyperparameter is fixed, a list of choices, or a numeric range.

The dataclasses map one-to-one onto ``trial.suggest_*`` and onto YAML:

    learning_rate: {low: 1.0e-5, high: 1.0e-2, log: true}   # FloatRange
    n_base: {low: 8, high: 32, step: 8}                      # IntRange
    batch_size: [32, 64, 128]                                # Choice
    batch_norm: true                                         # Fixed
    dense_units: [[128, 64], [256, 64]]                      # Choice of per-layer lists

Optuna's categorical choices are scalars, so a list value (per-layer widths) is encoded as
the string ``"128-64"`` here, once, when the YAML is parsed; the ``dense_units`` validator in
``tunelab.models.dense_widths`` decodes it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import optuna

from tunelab.models.dense_widths import encode, is_width_list

Scalar = bool | int | float | str | None


@dataclass(frozen=True)
class Fixed:
    value: Scalar

    def suggest(self, trial: optuna.trial.BaseTrial, name: str) -> Scalar:
        return self.value

    def values(self) -> list[Scalar]:
        return [self.value]


@dataclass(frozen=True)
class Choice:
    choices: tuple[Scalar, ...]

    def suggest(self, trial: optuna.trial.BaseTrial, name: str) -> Scalar:
        return trial.suggest_categorical(name, list(self.choices))

    def values(self) -> list[Scalar]:
        return list(self.choices)


@dataclass(frozen=True)
class IntRange:
    low: int
    high: int
    step: int = 1
    log: bool = False

    def suggest(self, trial: optuna.trial.BaseTrial, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)

    def values(self) -> list[int]:
        return list(range(self.low, self.high + 1, self.step))


@dataclass(frozen=True)
class FloatRange:
    low: float
    high: float
    step: float | None = None
    log: bool = False

    def suggest(self, trial: optuna.trial.BaseTrial, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def values(self) -> list[float]:
        if self.step is None:
            raise ValueError("a float range without a step has no finite grid")
        n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return [round(self.low + i * self.step, 12) for i in range(n)]


Dimension = Fixed | Choice | IntRange | FloatRange
RANGE_KEYS = {"low", "high", "step", "log"}


def parse_dimension(name: str, raw: Any) -> Dimension:
    """YAML value -> dimension. Raises ValueError naming the key and what is allowed."""
    where = f"space.{name}"
    if isinstance(raw, Mapping):
        unknown = set(raw) - RANGE_KEYS
        if unknown or not {"low", "high"} <= set(raw):
            raise ValueError(
                f"{where}: a range needs 'low' and 'high' (optional 'step', 'log'); "
                f"got keys {sorted(raw)}"
            )
        low, high, step, log = raw["low"], raw["high"], raw.get("step"), raw.get("log", False)
        for key, val in (("low", low), ("high", high)):
            if isinstance(val, bool) or not isinstance(val, (int, float)):
                raise ValueError(f"{where}.{key}: expected a number, got {val!r}")
        if not isinstance(log, bool):
            raise ValueError(f"{where}.log: expected true or false, got {log!r}")
        if low > high:
            raise ValueError(f"{where}: low ({low}) is greater than high ({high})")
        if log and low <= 0:
            raise ValueError(f"{where}: a log range needs low > 0, got low={low}")
        if step is not None and (isinstance(step, bool) or not isinstance(step, (int, float))
                                 or step <= 0):
            raise ValueError(f"{where}.step: expected a positive number, got {step!r}")
        if log and step is not None and step != 1:
            raise ValueError(f"{where}: 'step' and 'log: true' cannot be combined")
        is_int = all(isinstance(v, int) for v in (low, high)) and (
            step is None or isinstance(step, int)
        )
        if is_int:
            return IntRange(low, high, step or 1, log)
        return FloatRange(float(low), float(high), None if step is None else float(step), log)
    if isinstance(raw, (list, tuple)):
        if not raw:
            raise ValueError(f"{where}: an empty list of choices")
        for value in raw:
            if (not isinstance(value, (bool, int, float, str)) and value is not None
                    and not (is_width_list(value) and value)):
                raise ValueError(f"{where}: choices must be scalars or lists of integers "
                                 f"(per-layer widths such as [128, 64]), got {value!r}")
        raw = [encode(value) for value in raw]
        if len(raw) == 1:
            return Fixed(raw[0])
        return Choice(tuple(raw))
    if isinstance(raw, (bool, int, float, str)) or raw is None:
        return Fixed(raw)
    raise ValueError(
        f"{where}: expected a value, a list of choices or a range {{low, high, step, log}}; "
        f"got {raw!r}"
    )


def dimension_to_yaml(dim: Dimension) -> Any:
    if isinstance(dim, Fixed):
        return dim.value
    if isinstance(dim, Choice):
        return list(dim.choices)
    out = {k: v for k, v in asdict(dim).items() if v is not None}
    if not out.get("log"):
        out.pop("log", None)
    if out.get("step") == 1 and isinstance(dim, IntRange):
        out.pop("step")
    return out


def distribution_of(dim: Dimension) -> optuna.distributions.BaseDistribution | None:
    """The Optuna distribution a dimension suggests from (None for a fixed value)."""
    d = optuna.distributions
    if isinstance(dim, Choice):
        return d.CategoricalDistribution(list(dim.choices))
    if isinstance(dim, IntRange):
        return d.IntDistribution(dim.low, dim.high, log=dim.log, step=dim.step)
    if isinstance(dim, FloatRange):
        return d.FloatDistribution(dim.low, dim.high, log=dim.log, step=dim.step)
    return None


def distribution_conflicts(stored: Mapping[str, Any], space: Any) -> list[str]:
    """Parameters whose new dimension Optuna refuses in a study whose trials suggested them
    from ``stored`` (name -> distribution): another kind, another log setting, or other
    choices of a categorical. Such a change cannot be resumed, even when accepted."""
    out = []
    for name, dim in space.dimensions.items():
        old, new = stored.get(name), distribution_of(dim)
        if old is None or new is None:
            continue
        try:
            optuna.distributions.check_distribution_compatibility(old, new)
        except ValueError as err:
            out.append(f"space.{name}: {err} (the study's trials suggested it from {old})")
    return out


def candidate_values(dim: Dimension) -> list[Any]:
    """Every value a dimension can take, or its two ends for a continuous range."""
    if isinstance(dim, FloatRange) and dim.step is None:
        return [dim.low, dim.high]
    if isinstance(dim, IntRange) and len(range(dim.low, dim.high + 1, dim.step)) > 1000:
        return [dim.low, dim.high]
    return dim.values()


@dataclass(frozen=True)
class SearchSpace:
    dimensions: Mapping[str, Dimension]

    def suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        return {name: dim.suggest(trial, name) for name, dim in self.dimensions.items()}

    def searched(self) -> list[str]:
        return [n for n, d in self.dimensions.items() if not isinstance(d, Fixed)]

    def grid(self) -> dict[str, list[Any]]:
        """The grid for Optuna's GridSampler; every dimension must be finite."""
        grid = {}
        for name, dim in self.dimensions.items():
            if isinstance(dim, Fixed):
                continue
            try:
                grid[name] = dim.values()
            except ValueError as err:
                raise ValueError(
                    f"space.{name}: the grid sampler needs a finite set of values ({err}); "
                    "give a list of choices or a 'step'"
                ) from None
        return grid

    def to_yaml(self) -> dict[str, Any]:
        return {name: dimension_to_yaml(dim) for name, dim in self.dimensions.items()}

    @classmethod
    def from_yaml(cls, raw: Mapping[str, Any]) -> SearchSpace:
        return cls({name: parse_dimension(name, value) for name, value in raw.items()})
