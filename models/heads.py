"""Output heads, losses, label encodings and accuracy metrics that belong together.

The head follows the loss: one sigmoid unit for binary cross-entropy, one tanh unit with
labels in {-1, 1} for hinge, softmax for categorical cross-entropy and linear scores for
categorical hinge. Every variant reports its accuracy under the name ``accuracy`` so that
learning curves, pruning and selection read the same key whatever the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .lazy import keras

BINARY_LOSSES = ("binary_crossentropy", "hinge")
CATEGORICAL_LOSSES = ("categorical_crossentropy", "categorical_hinge")
LOSSES = BINARY_LOSSES + CATEGORICAL_LOSSES


def allowed_losses(n_classes: int) -> tuple[str, ...]:
    """Losses that make sense for a task with ``n_classes`` classes."""
    return LOSSES if n_classes == 2 else CATEGORICAL_LOSSES


def check_loss(loss: str, n_classes: int) -> None:
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}: choose one of {', '.join(LOSSES)}")
    if loss not in allowed_losses(n_classes):
        raise ValueError(
            f"loss {loss!r} needs exactly two classes but the data has {n_classes}; "
            f"use one of {', '.join(CATEGORICAL_LOSSES)}"
        )


@dataclass(frozen=True)
class Head:
    """Everything that depends on the choice of loss."""

    loss: str
    n_classes: int

    @property
    def units(self) -> int:
        return 1 if self.loss in BINARY_LOSSES else self.n_classes

    @property
    def activation(self) -> str:
        return {
            "binary_crossentropy": "sigmoid",
            "hinge": "tanh",
            "categorical_crossentropy": "softmax",
            "categorical_hinge": "linear",
        }[self.loss]

    def output_layer(self, name: str = "head") -> keras.layers.Layer:
        return keras.layers.Dense(self.units, activation=self.activation, name=name)

    def accuracy_metric(self) -> keras.metrics.Metric:
        if self.loss == "hinge":
            from .custom_objects import SignAccuracy

            return SignAccuracy(name="accuracy")
        if self.loss == "binary_crossentropy":
            return keras.metrics.BinaryAccuracy(name="accuracy")
        return keras.metrics.CategoricalAccuracy(name="accuracy")

    def encode_labels(self, y: np.ndarray) -> np.ndarray:
        """Integer class ids -> the targets this loss trains on."""
        y = np.asarray(y).reshape(-1).astype("int64")
        if self.loss == "binary_crossentropy":
            return y.astype("float32").reshape(-1, 1)
        if self.loss == "hinge":
            return np.where(y == 1, 1.0, -1.0).astype("float32").reshape(-1, 1)
        return np.eye(self.n_classes, dtype="float32")[y]

    def probabilities(self, outputs: np.ndarray) -> np.ndarray:
        """Model outputs -> (N, n_classes) class probabilities (scores mapped back to [0, 1])."""
        outputs = np.asarray(outputs, dtype="float64")
        if self.loss == "binary_crossentropy":
            p1 = outputs.reshape(-1)
        elif self.loss == "hinge":
            p1 = (np.clip(outputs.reshape(-1), -1.0, 1.0) + 1.0) / 2.0
        elif self.loss == "categorical_hinge":
            shifted = outputs - outputs.max(axis=1, keepdims=True)
            exp = np.exp(shifted)
            return exp / exp.sum(axis=1, keepdims=True)
        else:
            return outputs
        return np.stack([1.0 - p1, p1], axis=1)


def __getattr__(name: str):
    if name == "SignAccuracy":  # where Keras looks for a saved model's class by its module
        from .custom_objects import SignAccuracy

        return SignAccuracy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
