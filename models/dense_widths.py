"""``dense_units`` as one width or one width per hidden dense layer, and its one encoding.

The labs write their dense stacks layer by layer (128 then 64; 256 then 64; 512, 128, 32), so
``dense_units`` is either an int (every hidden dense layer of the family that wide, as many
layers as the family has) or a sequence of ints (one layer per entry, in order).

Optuna's categorical choices take only None, bool, int, float and str, so a per-layer choice
travels as a string, ``"128-64"``: ``encode`` makes it (the search space encodes list choices
when it parses them) and ``decode`` reads it back (the ``dense_units`` validator, so every
builder receives ints). MLflow params, ``tunelab best`` and the Optuna storage then show the
readable ``128-64``. Framework-free: the config and the search space import it without Keras.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence
from typing import Any

SEPARATOR = "-"
_ENCODED = re.compile(r"^\s*\d+(\s*-\s*\d+)*\s*$")


def is_width_list(value: Any) -> bool:
    """A list or tuple of ints (not bools): per-layer widths."""
    return isinstance(value, (list, tuple)) and all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value)


def encode(value: Any) -> Any:
    """``[128, 64]`` -> ``"128-64"``; anything else unchanged."""
    if is_width_list(value) and value:
        return SEPARATOR.join(str(int(v)) for v in value)
    return value


def decode(name: str, value: Any) -> int | tuple[int, ...]:
    """An int >= 1, a list/tuple of ints >= 1, or their encoding ``"128-64"`` -> an int or a
    tuple of ints; anything else is a ValueError naming the hyperparameter."""
    given = value
    if isinstance(value, str) and _ENCODED.match(value):
        value = tuple(int(part) for part in value.split(SEPARATOR))
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1:
        return int(value)
    if is_width_list(value) and value and all(v >= 1 for v in value):
        return tuple(int(v) for v in value)
    raise ValueError(
        f"hyperparameter {name}={given!r} is invalid: must be an integer >= 1 (every hidden "
        "dense layer that wide) or one integer >= 1 per layer, as a list [128, 64] or the "
        "string '128-64'")


def widths(dense_units: int | Sequence[int], n_layers: int) -> list[int]:
    """The hidden layers' widths: ``n_layers`` times an int, or the given per-layer list."""
    if isinstance(dense_units, numbers.Integral):
        return [int(dense_units)] * n_layers
    return [int(v) for v in dense_units]
