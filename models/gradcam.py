"""Grad-CAM (Selvaraju et al. 2017) for any Functional model with a Conv2D: where did it look?

Eager TensorFlow with ``tf.GradientTape`` on a sub-model that returns the conv feature maps
and the class scores together. Nothing here is wrapped in ``tf.function``, so no EagerTensor
is ever captured into a graph (the labs' "Attempting to capture an EagerTensor without
building a function" came from mixing a graph-mode ``K.function`` with eager tensors).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def find_last_conv_layer(model: keras.Model) -> str:
    """Name of the last layer with a 4-D output among Conv2D layers (searched backwards)."""
    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.Conv2D):
            return layer.name
    raise ValueError(f"model {model.name!r} has no Conv2D layer, so Grad-CAM has no feature "
                     "map to explain (an MLP cannot be explained this way)")


def gradcam(model: keras.Model, images: np.ndarray, class_index: np.ndarray | None = None,
            layer_name: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps ``(N, H, W)`` in [0, 1] at the input's size, and the explained class ids.

    ``images`` are model inputs (N, H, W, C) float32. ``class_index`` defaults to the
    predicted class. One-unit heads (sigmoid/tanh) explain class 1 with the unit's output and
    class 0 with its negation.
    """
    images = np.asarray(images, dtype="float32")
    if images.ndim != 4:
        raise ValueError(f"gradcam needs a batch (N, H, W, C), got shape {images.shape}")
    name = layer_name or find_last_conv_layer(model)
    try:
        conv = model.get_layer(name)
    except ValueError:
        convs = [la.name for la in model.layers if isinstance(la, keras.layers.Conv2D)]
        raise ValueError(f"registry.gradcam_layer: no layer named {name!r} in "
                         f"{model.name!r}; its Conv2D layers are {', '.join(convs)}") from None
    grad_model = keras.Model(model.inputs, [conv.output, model.outputs[0]])
    x = tf.convert_to_tensor(images)
    with tf.GradientTape() as tape:
        maps, outputs = grad_model(x, training=False)
        if outputs.shape[-1] == 1:  # one-unit binary head
            predicted = tf.cast(outputs[:, 0] > _threshold(model), tf.int64)
            chosen = predicted if class_index is None else tf.constant(class_index, tf.int64)
            sign = tf.where(chosen == 1, 1.0, -1.0)
            scores = sign * outputs[:, 0]
        else:
            chosen = (tf.argmax(outputs, axis=1) if class_index is None
                      else tf.constant(class_index, tf.int64))
            scores = tf.gather(outputs, chosen, axis=1, batch_dims=1)
    grads = tape.gradient(scores, maps)  # (N, h, w, k)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cams = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1))  # (N, h, w)
    cams = tf.image.resize(cams[..., None], images.shape[1:3], method="bilinear")[..., 0]
    cams = cams.numpy()
    peak = cams.reshape(len(cams), -1).max(axis=1).reshape(-1, 1, 1)
    cams = np.where(peak > 0, cams / np.where(peak > 0, peak, 1.0), 0.0)
    return np.clip(cams, 0.0, 1.0).astype("float32"), np.asarray(chosen.numpy(), "int64")


def _threshold(model: keras.Model) -> float:
    """Decision threshold of a one-unit head: 0.5 after a sigmoid, 0 after tanh."""
    activation = getattr(model.layers[-1], "activation", None)
    return 0.5 if getattr(activation, "__name__", "") == "sigmoid" else 0.0


def gradcam_examples(model: keras.Model, x: np.ndarray, y: np.ndarray,
                     class_names: list[str], *, per_class: int = 2,
                     layer_name: str | None = None):
    """Grad-CAM of the first ``per_class`` images of each class of a split (``x``, ``y``):
    ``(images, heatmaps, titles, layer)``, titles naming the true and the explained class.
    ValueError when the model has no conv layer (an MLP) or ``layer_name`` is not one."""
    layer = layer_name or find_last_conv_layer(model)
    picks = np.concatenate([np.flatnonzero(y == c)[:per_class]
                            for c in range(len(class_names))])
    cams, explained = gradcam(model, x[picks], layer_name=layer)
    titles = [f"true {class_names[t]} / cam {class_names[e]}"
              for t, e in zip(y[picks], explained, strict=True)]
    return x[picks], cams, titles, layer
