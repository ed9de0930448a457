"""The Keras classes a saved tunelab model may hold; importing this module registers them
(``register_keras_serializable``), as loading such a model needs. Kept apart from the families
and heads so that declaring those stays Keras-free (``models/lazy.py``)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from .backbones import BACKBONES, preprocess_fn


@keras.saving.register_keras_serializable(package="tunelab")
class SignAccuracy(keras.metrics.MeanMetricWrapper):
    """Accuracy for a tanh head trained with hinge loss on labels in {-1, 1}.

    Keras' binary accuracy thresholds at 0.5 and would count every -1 label as wrong.
    """

    def __init__(self, name: str = "accuracy", dtype=None):
        super().__init__(fn=_sign_match, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


def _sign_match(y_true, y_pred):
    y_true = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "float32")
    y_pred = keras.ops.reshape(y_pred, (-1,))
    predicted = keras.ops.where(y_pred >= 0, 1.0, -1.0)
    return keras.ops.cast(keras.ops.equal(predicted, y_true), "float32")



@keras.saving.register_keras_serializable(package="tunelab")
class BackboneInput(layers.Layer):
    """[0, 1] grey or RGB images -> the backbone's input: 3 channels, at least its smallest
    side, 0-255, then the backbone's own ``preprocess_input``."""

    def __init__(self, backbone: str, size: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; choose one of "
                             f"{', '.join(BACKBONES)}")
        self.backbone = backbone
        self.size = (int(size[0]), int(size[1]))

    def call(self, x):
        channels = x.shape[-1]
        if channels == 1:
            x = keras.ops.repeat(x, 3, axis=-1)
        elif channels != 3:
            raise ValueError(f"a {self.backbone} backbone needs grey (1) or RGB (3) images, got "
                             f"{channels} channels")
        if tuple(x.shape[1:3]) != self.size:
            x = keras.ops.image.resize(x, self.size, interpolation="bilinear")
        return preprocess_fn(self.backbone)(x * 255.0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.size, 3)

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone, "size": list(self.size)}
