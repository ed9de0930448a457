"""Your own model: ``model: my_package.my_module:build`` in a study file.

``build(input_shape, n_classes, <hyperparameter>=<default>, ...)`` returns a Keras model; its
parameters after the first two, each with a default, are its hyperparameters (the study's
``space`` searches them like a registered model's). If it takes ``loss`` it receives the
study's loss; its output must have the units that loss's head needs (``n_classes``, or 1 for
a binary loss): end it with ``tunelab.models.Head(loss, n_classes).output_layer()``. An
optional ``build.min_input_size = 32`` attribute sets the smallest image side it accepts.

The module is imported like any Python module: from the current folder (where ``tunelab
tune`` runs, and its workers) or from ``PYTHONPATH``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any

from .heads import Head
from .lazy import keras
from .registry import ModelSpec, add_resolver, register_spec, registered_spec

_NOT_HYPERPARAMETERS = ("loss", "name")


def _split(spec: str) -> tuple[str, str]:
    module_name, _, func_name = spec.partition(":")
    if (not module_name or not func_name
            or not all(part.isidentifier() for part in module_name.split("."))
            or not func_name.isidentifier()):
        raise ValueError(f"model {spec!r}: a user model is written 'package.module:function' "
                         "(e.g. my_lab.models:build)")
    return module_name, func_name


def load_builder(spec: str) -> Any:
    """Import ``package.module:function``; ValueError saying what is missing otherwise."""
    module_name, func_name = _split(spec)
    if os.getcwd() not in sys.path and "" not in sys.path:  # the `tunelab` script omits it
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(
            f"model {spec!r}: cannot import module {module_name!r} ({type(err).__name__}: "
            f"{err}); it must be importable from the folder tunelab runs in ({os.getcwd()}) "
            "or from PYTHONPATH") from None
    except Exception as err:  # the user's module itself raised while being imported
        raise ValueError(f"model {spec!r}: importing {module_name!r} failed "
                         f"({type(err).__name__}: {err})") from None
    builder = getattr(module, func_name, None)
    if builder is None:
        public = sorted(n for n, v in vars(module).items()
                        if callable(v) and not n.startswith("_"))
        raise ValueError(f"model {spec!r}: module {module_name!r} has no {func_name!r}"
                         + (f" (it has: {', '.join(public)})" if public else ""))
    if not callable(builder):
        raise ValueError(f"model {spec!r}: {func_name!r} is not a function")
    return builder


def _hyperparameters(spec: str, builder: Any) -> dict[str, Any]:
    params = [p for p in inspect.signature(builder).parameters.values()
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    positional = [p for p in params if p.kind is not p.KEYWORD_ONLY]
    if len(positional) < 2:
        raise ValueError(f"model {spec!r}: the builder must take (input_shape, n_classes, "
                         "...hyperparameters with defaults)")
    defaults = {}
    for p in params:
        if p in positional[:2] or p.name in _NOT_HYPERPARAMETERS:
            continue
        if p.default is inspect.Parameter.empty:
            raise ValueError(f"model {spec!r}: hyperparameter {p.name!r} needs a default")
        defaults[p.name] = p.default
    return defaults


def register_user_model(spec: str) -> ModelSpec:
    """Import the builder and register it under ``spec`` (once per process)."""
    known = registered_spec(spec)
    if known is not None:
        return known
    builder = load_builder(spec)
    accepted = inspect.signature(builder).parameters

    def build(input_shape: tuple[int, int, int], n_classes: int, *, loss: str, name: str,
              **hparams: Any) -> keras.Model:
        extra = {k: v for k, v in (("loss", loss), ("name", name)) if k in accepted}
        model = builder(input_shape, n_classes, **hparams, **extra)
        if not isinstance(model, keras.Model):
            raise ValueError(f"model {spec!r}: the builder returned {type(model).__name__}, "
                             "not a keras.Model")
        units = Head(loss, n_classes).units
        if model.outputs[0].shape[-1] != units:
            raise ValueError(
                f"model {spec!r}: its output has {model.outputs[0].shape[-1]} units but loss "
                f"{loss!r} on {n_classes} classes needs {units}; end the model with "
                "tunelab.models.Head(loss, n_classes).output_layer() (take a 'loss' argument)")
        return model

    doc = (inspect.getdoc(builder) or "").strip().splitlines()
    return register_spec(ModelSpec(name=spec, builder=build,
                                   min_input_size=getattr(builder, "min_input_size", 1),
                                   description=doc[0] if doc else f"user model {spec}",
                                   defaults=_hyperparameters(spec, builder)))


def _resolve(name: str) -> ModelSpec | None:
    """``package.module:function`` names are user models; other names are not ours."""
    return register_user_model(name) if ":" in name else None


add_resolver(_resolve)
