"""Multilayer perceptron baseline: flatten, hidden dense layers, head."""

from __future__ import annotations

from .dense_widths import widths
from .heads import Head
from .layers import dense_stack
from .lazy import keras, layers
from .registry import register_model


@register_model(
    "mlp",
    min_input_size=1,
    description="flatten - n_layers x dense(dense_units) (or one layer per dense_units entry) - "
                "head (baseline without convolutions)",
)
def mlp(
    input_shape: tuple[int, int, int],
    n_classes: int,
    *,
    loss: str,
    name: str = "mlp",
    dense_units: int | tuple[int, ...] = 128,
    n_layers: int = 2,
    dropout: float = 0.0,
    activation: str = "relu",
    dense_batch_norm: bool = False,
    l1: float = 0.0,
    l2: float = 0.0,
) -> keras.Model:
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Flatten(name="flatten")(inputs)
    x = dense_stack(
        x,
        widths(dense_units, n_layers),
        activation=activation,
        dropout=dropout,
        batch_norm=dense_batch_norm,
        l1=l1,
        l2=l2,
    )
    outputs = Head(loss, n_classes).output_layer()(x)
    return keras.Model(inputs, outputs, name=name)
