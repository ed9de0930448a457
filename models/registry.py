"""Model registry and the one factory, ``build_model``.

Families register their builders with ``@register_model`` (timm-style), so a new model is
searchable and tested the moment its module is imported. A builder's keyword-only
parameters (other than ``loss`` and ``name``) *are* its hyperparameters: their defaults
become ``ModelSpec.defaults`` and any other name is rejected, so a typo in a config fails
loudly instead of silently training the default model.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import dense_widths
from .heads import check_loss

#: Activations every family accepts (names understood by ``keras.layers.Activation``).
ACTIVATIONS = ("relu", "elu", "selu", "tanh", "leaky_relu", "gelu", "swish")
PADDINGS = ("same", "valid")

# Builder parameters that are not hyperparameters: the factory passes them itself.
_RESERVED = ("loss", "name")

MinInputSize = int | Callable[[Mapping[str, Any]], int]
Builder = Callable[..., Any]  # returns a keras.Model


# --------------------------------------------------------------------------- validation


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"hyperparameter {name}={value!r} is invalid: must be an integer >= 1")
    return int(value)


def _odd_int(name: str, value: Any) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < 1
        or value % 2 == 0
    ):
        raise ValueError(
            f"hyperparameter {name}={value!r} is invalid: "
            "must be an odd integer >= 1 (1, 3, 5, ...)"
        )
    return int(value)


def _rate(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or not 0.0 <= value < 1.0
    ):
        raise ValueError(f"hyperparameter {name}={value!r} is invalid: must be a rate in [0, 1)")
    return float(value)


def _non_negative(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"hyperparameter {name}={value!r} is invalid: must be a number >= 0")
    return float(value)


def _unchecked(name: str, value: Any) -> Any:
    """User models (``package.module:function``) validate their own hyperparameters."""
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool) and type(value).__name__ != "bool_":  # numpy.bool_
        raise ValueError(f"hyperparameter {name}={value!r} is invalid: must be True or False")
    return bool(value)


def _choice(allowed: Sequence[str]) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if value not in allowed:
            raise ValueError(
                f"hyperparameter {name}={value!r} is invalid: choose one of {', '.join(allowed)}"
            )
        return value

    return check


#: One validator per hyperparameter name used by any family (families add their own with
#: ``add_validators``). A builder that declares a hyperparameter missing here cannot be
#: registered, so every value is checked.
VALIDATORS: dict[str, Callable[[str, Any], Any]] = {
    "n_base": _positive_int,
    "dense_units": dense_widths.decode,  # an int, or one width per layer ([128, 64], "128-64")
    "n_layers": _positive_int,
    "n_stages": _positive_int,
    "n_blocks": _positive_int,
    "blocks_per_stage": _positive_int,
    "kernel_size": _odd_int,
    "spatial_dropout": _rate,
    "conv_dropout": _rate,
    "dropout": _rate,
    "l1": _non_negative,
    "l2": _non_negative,
    "batch_norm": _flag,  # in the conv blocks: after the conv, before the activation
    "dense_batch_norm": _flag,  # in the hidden dense layers
    "convs_per_block": _positive_int,
    "activation": _choice(ACTIVATIONS),
    "padding": _choice(PADDINGS),
}


def add_validators(**validators: Callable[[str, Any], Any]) -> None:
    """A family's own hyperparameters and their checks (``transfer.py`` adds ``backbone``,
    ``weights``, ...); call it before registering builders that declare them. A name
    already checked differently is an error, so two families cannot disagree on it."""
    for name, check in validators.items():
        if VALIDATORS.get(name, check) is not check:
            raise ValueError(f"hyperparameter {name!r} already has another validator")
        VALIDATORS[name] = check


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: how to build it and what it accepts.

    ``min_input_size`` is the smallest image side (pixels) the architecture can take: an
    int, or a function of the resolved hyperparameters when it depends on them (depth,
    ``padding="valid"``, ...). ``defaults`` maps every accepted hyperparameter to its
    default; treat it as read-only.
    """

    name: str
    builder: Builder
    min_input_size: MinInputSize
    description: str
    defaults: dict[str, Any]
    check: Callable[[Mapping[str, Any]], None] | None = None

    def resolve(self, hparams: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overridden by ``hparams``, every name and value validated."""
        hparams = dict(hparams or {})
        unknown = sorted(set(hparams) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"unknown hyperparameter(s) {', '.join(map(repr, unknown))} for model "
                f"{self.name!r}; it accepts: {', '.join(sorted(self.defaults))}"
            )
        resolved = dict(self.defaults)
        for key, value in hparams.items():
            resolved[key] = VALIDATORS.get(key, _unchecked)(key, value)
        if self.check is not None:
            self.check(resolved)
        return resolved

    def min_size(self, hparams: Mapping[str, Any] | None = None) -> int:
        """Smallest image side for these hyperparameters (defaults where not given)."""
        if callable(self.min_input_size):
            return int(self.min_input_size(self.resolve(hparams)))
        return int(self.min_input_size)


_REGISTRY: dict[str, ModelSpec] = {}
# Functions that turn an unregistered name into a spec, or None (``user_model.py`` resolves
# ``package.module:function`` names by importing the builder).
_RESOLVERS: list[Callable[[str], ModelSpec | None]] = []


def register_spec(spec: ModelSpec) -> ModelSpec:
    """Register a ready-made ``ModelSpec`` (user models; families use ``@register_model``)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def registered_spec(name: str) -> ModelSpec | None:
    """The spec registered as ``name``, or None (resolvers are not asked)."""
    return _REGISTRY.get(name)


def add_resolver(resolve: Callable[[str], ModelSpec | None]) -> None:
    """``resolve(name)`` is asked for names that are not registered; it registers and
    returns a spec, returns None (not its kind of name), or raises ValueError."""
    if resolve not in _RESOLVERS:
        _RESOLVERS.append(resolve)


def _hyperparameter_defaults(name: str, builder: Callable[..., Any]) -> dict[str, Any]:
    defaults = {}
    for param in inspect.signature(builder).parameters.values():
        if param.kind is not inspect.Parameter.KEYWORD_ONLY or param.name in _RESERVED:
            continue
        if param.default is inspect.Parameter.empty:
            raise TypeError(f"model {name!r}: hyperparameter {param.name!r} needs a default")
        if param.name not in VALIDATORS:
            raise TypeError(
                f"model {name!r}: hyperparameter {param.name!r} has no validator in "
                "tunelab.models.registry.VALIDATORS"
            )
        defaults[param.name] = param.default
    return defaults


def register_model(
    name: str,
    *,
    min_input_size: MinInputSize,
    description: str,
    check: Callable[[Mapping[str, Any]], None] | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator: register ``builder(input_shape, n_classes, *, loss, name, **hparams)``.

    ``check`` optionally validates the resolved hyperparameters as a whole (constraints
    that a per-value validator cannot express). Returns the builder unchanged.
    """

    def decorator(builder: Builder) -> Builder:
        register_spec(ModelSpec(
            name=name,
            builder=builder,
            min_input_size=min_input_size,
            description=description,
            defaults=_hyperparameter_defaults(name, builder),
            check=check,
        ))
        return builder

    return decorator


def preset(builder: Builder, **fixed: Any) -> Builder:
    """``builder`` with some keyword arguments fixed and removed from its hyperparameters.

    Used for table variants (``vgg16`` = the VGG builder with its cfg) and depth presets
    (``resnet20``), so a preset cannot be contradicted by a hyperparameter.
    """

    @functools.wraps(builder)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        return builder(*args, **kwargs, **fixed)

    signature = inspect.signature(builder)
    wrapped.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p for p in signature.parameters.values() if p.name not in fixed]
    )
    return wrapped


def get_model_spec(name: str) -> ModelSpec:
    """The registered model ``name``; an unregistered name goes to the resolvers (a user's
    ``package.module:function`` is imported and registered on first use, ``user_model.py``)."""
    if name not in _REGISTRY:
        for resolve in _RESOLVERS:
            spec = resolve(name)
            if spec is not None:
                return spec
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; known models: {', '.join(list_models())}"
        ) from None


def list_models() -> list[str]:
    """Names of the registered models, sorted."""
    return sorted(_REGISTRY)


def resolve_hparams(name: str, **hparams: Any) -> dict[str, Any]:
    """The full, validated hyperparameters ``build_model`` would use (log them with a run)."""
    return get_model_spec(name).resolve(hparams)


# --------------------------------------------------------------------------- factory


def _normalize_input_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1 for d in shape
    ):
        raise ValueError(
            f"input_shape must be (height, width, channels) with positive integers, "
            f"got {input_shape!r}"
        )
    return tuple(int(d) for d in shape)  # type: ignore[return-value]


def check_model_input(name: str, input_shape: Sequence[int], **hparams: Any) -> None:
    """Raise ValueError if model ``name`` cannot take images of ``input_shape``.

    Cheap (builds nothing), so config validation can call it up front. Hyperparameters
    that change the minimum size (``n_stages``, ``padding``, ``kernel_size``) may be given.
    """
    spec = get_model_spec(name)
    height, width, _ = _normalize_input_shape(input_shape)
    minimum = spec.min_size(hparams)
    if min(height, width) < minimum:
        raise ValueError(
            f"model {name!r} needs images of at least {minimum}x{minimum} pixels but the "
            f"input is {height}x{width}; resize the images (dataset.image_size) or pick a "
            "shallower model"
        )


def default_loss(n_classes: int) -> str:
    return "categorical_crossentropy" if n_classes > 2 else "binary_crossentropy"


def build_model(
    name: str,
    input_shape: Sequence[int],
    n_classes: int,
    *,
    loss: str | None = None,
    **hparams: Any,
) -> Any:
    """Build the registered model ``name`` (uncompiled) for ``n_classes`` classes.

    ``loss`` picks the output head (see ``Head``); it defaults to binary cross-entropy for
    two classes and categorical cross-entropy otherwise. Unknown models, unknown or
    invalid hyperparameters and too-small inputs raise ValueError before anything is built.
    """
    spec = get_model_spec(name)
    if isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    n_classes = int(n_classes)
    loss = default_loss(n_classes) if loss is None else loss
    check_loss(loss, n_classes)
    resolved = spec.resolve(hparams)
    shape = _normalize_input_shape(input_shape)
    check_model_input(name, shape, **resolved)
    return spec.builder(shape, n_classes, loss=loss, name=spec.name, **resolved)
