"""Keras model families behind one registry and one factory, ``build_model``.

Each family is one module that registers its builders with ``@register_model``; they are
imported (and so registered) the first time a public name of this package is used, so that
``tunelab.models.data`` and ``tunelab.models.training_keys`` load without them (the config,
the search space and the MLflow writer process import them). The families and the registry
load without Keras too (``models/lazy.py``): Keras loads when a model is built, so ``tune``'s
checks of a config against its data cost no TensorFlow import. Pure Keras: no optuna, no
mlflow.
"""

import sys
from importlib import import_module

#: Keras' optional integrations that it imports if installed: scikit-learn (its estimator
#: wrappers) and pandas (DataFrame inputs). tunelab uses neither through Keras, and they cost
#: about 0.9 s of a worker's path to its first epoch (measured: 0.65 s and 0.2 s of a 5-s
#: Keras import). They stay importable for everyone else, tunelab's own folds included.
_KERAS_SKIPS = ("sklearn", "pandas")


class _SkipWhileKerasLoads:
    """A meta-path finder that refuses ``_KERAS_SKIPS`` while ``keras`` itself is being
    imported (Keras then sets them to None, its documented fallback), nothing else."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] not in _KERAS_SKIPS:
            return None
        keras = sys.modules.get("keras")
        if keras is None or not getattr(getattr(keras, "__spec__", None), "_initializing",
                                        False):
            return None
        raise ModuleNotFoundError(f"{name} is not loaded for Keras by tunelab", name=name)


if not any(isinstance(f, _SkipWhileKerasLoads) for f in sys.meta_path):
    sys.meta_path.insert(0, _SkipWhileKerasLoads())

_FAMILIES = ("alexnet", "lenet", "mlp", "resnet", "transfer", "vgg", "user_model")
_WHERE = {
    "LOSSES": "heads", "Head": "heads", "allowed_losses": "heads", "check_loss": "heads",
    "ModelSpec": "registry", "build_model": "registry", "check_model_input": "registry",
    "get_model_spec": "registry", "list_models": "registry", "register_model": "registry",
    "resolve_hparams": "registry",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if "tunelab.models.lenet" not in __import__("sys").modules:
        for family in _FAMILIES:  # registers every family (Keras loads when one builds)
            import_module(f".{family}", __name__)
    value = getattr(import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
