"""Keras model families behind one registry and one factory, ``build_model``.

Importing the package registers every family (one module each); ``list_models()`` names
them. Pure Keras: no optuna, no mlflow.
"""

from . import alexnet, lenet, mlp, resnet, transfer, vgg  # noqa: F401  (imported to register)
from .heads import LOSSES, Head, allowed_losses, check_loss
from .registry import (
    ModelSpec,
    build_model,
    check_model_input,
    get_model_spec,
    list_models,
    register_model,
    resolve_hparams,
)

__all__ = [
    "LOSSES",
    "Head",
    "ModelSpec",
    "allowed_losses",
    "build_model",
    "check_loss",
    "check_model_input",
    "get_model_spec",
    "list_models",
    "register_model",
    "resolve_hparams",
]
