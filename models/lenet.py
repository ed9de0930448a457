"""LeNet-style CNN: conv/pool blocks (two by default, ``n_blocks``) and one hidden dense layer."""

from __future__ import annotations

from .dense_widths import widths
from .heads import Head
from .layers import conv_block, dense_stack, min_spatial_size
from .lazy import keras, layers
from .registry import register_model

#: Spatial layers of one block ("M" = 2x2 max-pool), for the minimum input size.
LENET_BLOCK_PLAN = ("C", "M")


def _min_size(hp) -> int:
    return min_spatial_size(LENET_BLOCK_PLAN * hp["n_blocks"], hp["kernel_size"], hp["padding"])


@register_model(
    "lenet",
    min_input_size=_min_size,
    description="conv(b)-pool-conv(2b)-pool-flatten-dense-head (the labs' LeNet); n_blocks "
                "conv/pool blocks, filters doubling",
)
def lenet(
    input_shape: tuple[int, int, int],
    n_classes: int,
    *,
    loss: str,
    name: str = "lenet",
    n_base: int = 16,
    n_blocks: int = 2,
    batch_norm: bool = False,
    dense_batch_norm: bool = False,
    spatial_dropout: float = 0.0,
    conv_dropout: float = 0.0,
    dropout: float = 0.0,
    dense_units: int | tuple[int, ...] = 64,
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
    x = inputs
    for i in range(1, n_blocks + 1):
        x = conv_block(x, n_base * 2 ** (i - 1), 1, name=f"block{i}", **conv)
    x = layers.Flatten(name="flatten")(x)
    x = dense_stack(
        x,
        widths(dense_units, 1),
        activation=activation,
        dropout=dropout,
        batch_norm=dense_batch_norm,
        l1=l1,
        l2=l2,
    )
    outputs = Head(loss, n_classes).output_layer()(x)
    return keras.Model(inputs, outputs, name=name)
