"""AlexNet-style CNN as in the labs: five single-conv blocks, two hidden dense layers."""

from __future__ import annotations

from .dense_widths import widths
from .heads import Head
from .layers import conv_block, dense_stack, min_spatial_size
from .lazy import keras, layers
from .registry import register_model

#: (filters as a multiple of n_base, pool after the block) for the five conv blocks.
ALEXNET_BLOCKS = ((1, True), (2, True), (4, False), (4, False), (2, True))
ALEXNET_PLAN = tuple(s for _mult, pool in ALEXNET_BLOCKS for s in ("C", "M")[: 1 + pool])


@register_model(
    "alexnet",
    min_input_size=lambda hp: min_spatial_size(ALEXNET_PLAN, hp["kernel_size"], hp["padding"]),
    description="5 conv blocks (b, 2b, 4b, 4b, 2b; pool after 1, 2, 5) - dense - dense - head",
)
def alexnet(
    input_shape: tuple[int, int, int],
    n_classes: int,
    *,
    loss: str,
    name: str = "alexnet",
    n_base: int = 16,
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
        l1=l1,
        l2=l2,
    )
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for i, (mult, pool) in enumerate(ALEXNET_BLOCKS, start=1):
        x = conv_block(x, mult * n_base, 1, pool=pool, name=f"block{i}", **conv)
    x = layers.Flatten(name="flatten")(x)
    x = dense_stack(
        x,
        widths(dense_units, 2),
        activation=activation,
        dropout=dropout,
        batch_norm=dense_batch_norm,
        l1=l1,
        l2=l2,
    )
    outputs = Head(loss, n_classes).output_layer()(x)
    return keras.Model(inputs, outputs, name=name)
