"""A user's own model for examples/user_model.yaml: ``model: examples.my_model:build``.

Any function ``build(input_shape, n_classes, <hyperparameters with defaults>)`` returning a
Keras model works; taking ``loss`` lets tunelab pick the matching output head.
"""

import keras

from tunelab.models import Head


def build(input_shape, n_classes, width=16, depth=2, dropout=0.2,
          loss="categorical_crossentropy"):
    """Depthwise-separable CNN: depth x (SeparableConv2D, pool), global pooling, head."""
    inputs = keras.Input(input_shape)
    x = inputs
    for i in range(depth):
        x = keras.layers.SeparableConv2D(width * 2**i, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(dropout)(x)
    return keras.Model(inputs, Head(loss, n_classes).output_layer()(x), name="my_model")


build.min_input_size = 4  # two 2x2 poolings
