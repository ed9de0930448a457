"""LeNet-style CNN: two conv/pool blocks and one hidden dense layer."""

from __future__ import annotations

import keras
from keras import layers

from .heads import Head
from .layers import conv_block, dense_stack, min_spatial_size
from .registry import register_model

#: Spatial layers in order ("M" = 2x2 max-pool), for the minimum input size.
LENET_PLAN = ("C", "M", "C", "M")


@register_model(
    "lenet",
    min_input_size=lambda hp: min_spatial_size(LENET_PLAN, hp["kernel_size"], hp["padding"]),
    description="conv(b)-pool-conv(2b)-pool-flatten-dense-head (the labs' LeNet)",
)
def lenet(
    input_shape: tuple[int, int, int],
    n_classes: int,
    *,
    loss: str,
    name: str = "lenet",
    n_base: int = 16,
    batch_norm: bool = False,
    spatial_dropout: float = 0.0,
    conv_dropout: float = 0.0,
    dropout: float = 0.0,
    dense_units: int = 64,
    activation: str = "relu",
    kernel_size: int = 3,
    padding: str = "same",
    l1: float = 0.0,
    l2: float = 0.0,
) -> keras.Model:
    conv = dict(
        kernel_size=kernel_size,
        padding=padding,
        batch_norm=batch_norm,
        activation=activation,
        spatial_dropout=spatial_dropout,
        dropout=conv_dropout,
        pool=True,
        l1=l1,
        l2=l2,
    )
    inputs = keras.Input(shape=input_shape, name="image")
    x = conv_block(inputs, n_base, 1, name="block1", **conv)
    x = conv_block(x, 2 * n_base, 1, name="block2", **conv)
    x = layers.Flatten(name="flatten")(x)
    x = dense_stack(
        x,
        [dense_units],
        activation=activation,
        dropout=dropout,
        batch_norm=batch_norm,
        l1=l1,
        l2=l2,
    )
    outputs = Head(loss, n_classes).output_layer()(x)
    return keras.Model(inputs, outputs, name=name)
