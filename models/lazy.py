"""``keras`` and ``keras.layers`` for the model families, imported on first use.

The families declare their specs (hyperparameters, defaults, the smallest input) with
``@register_model`` at import and touch Keras only when they build a model, so ``tune``'s
checks of a config against its data (``tunelab.validation``) run without Keras (issue #21:
one TensorFlow import on the path to the first epoch, in the worker, which starts beside
the checks). The same wrapper as Optuna's ``_LazyImport``: the first attribute access imports
the module and copies its namespace in. Standard library only.
"""

from __future__ import annotations

import importlib
import types
from typing import Any


class LazyModule(types.ModuleType):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._name = name

    def _load(self) -> types.ModuleType:
        module = importlib.import_module(self._name)
        self.__dict__.update(module.__dict__)
        return module

    def __getattr__(self, item: str) -> Any:
        return getattr(self._load(), item)


keras = LazyModule("keras")
layers = LazyModule("keras.layers")
