"""Building blocks shared by the model families (Keras 3 Functional API)."""

from __future__ import annotations

from collections.abc import Sequence

from .lazy import keras, layers

# Keras' 0.99 suits long training on big data; the labs' small sets see a few hundred steps
# per trial, and moving statistics that lag that far make validation look like chance.
BN_MOMENTUM = 0.9


def regularizer(l1: float, l2: float) -> keras.regularizers.Regularizer | None:
    """L1L2 weight penalty, or None when both coefficients are zero."""
    return keras.regularizers.L1L2(l1=l1, l2=l2) if (l1 > 0 or l2 > 0) else None


def conv_block(
    x: keras.KerasTensor,
    filters: int,
    n_convs: int = 1,
    *,
    kernel_size: int = 3,
    padding: str = "same",
    batch_norm: bool = False,
    activation: str = "relu",
    spatial_dropout: float = 0.0,
    dropout: float = 0.0,
    pool: bool = True,
    l1: float = 0.0,
    l2: float = 0.0,
    name: str,
    last_conv_name: str | None = None,
) -> keras.KerasTensor:
    """``n_convs`` x [Conv2D -> (BatchNorm) -> Activation], then regularization and pooling.

    The conv has no bias when batch norm follows (BN's beta replaces it). After the last
    activation: SpatialDropout2D(spatial_dropout) and Dropout(dropout) when > 0, then
    MaxPooling2D(2) if ``pool``. ``last_conv_name`` renames the block's last Conv2D (VGG
    names it ``Last_ConvLayer`` for Grad-CAM).
    """
    reg = regularizer(l1, l2)
    for i in range(1, n_convs + 1):
        conv_name = last_conv_name if (i == n_convs and last_conv_name) else f"{name}_conv{i}"
        x = layers.Conv2D(
            filters,
            kernel_size,
            padding=padding,
            use_bias=not batch_norm,
            kernel_regularizer=reg,
            name=conv_name,
        )(x)
        if batch_norm:
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn{i}")(x)
        x = layers.Activation(activation, name=f"{name}_act{i}")(x)
    if spatial_dropout > 0:
        x = layers.SpatialDropout2D(spatial_dropout, name=f"{name}_spatial_dropout")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    if pool:
        x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    return x


def dense_stack(
    x: keras.KerasTensor,
    widths: Sequence[int],
    *,
    activation: str = "relu",
    dropout: float = 0.0,
    batch_norm: bool = False,
    l1: float = 0.0,
    l2: float = 0.0,
    name: str = "dense",
) -> keras.KerasTensor:
    """Hidden layers: Dense -> (BatchNorm) -> Activation -> (Dropout) for each width."""
    reg = regularizer(l1, l2)
    for i, width in enumerate(widths, start=1):
        x = layers.Dense(width, use_bias=not batch_norm, kernel_regularizer=reg, name=f"{name}{i}")(
            x
        )
        if batch_norm:
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}{i}_bn")(x)
        x = layers.Activation(activation, name=f"{name}{i}_act")(x)
        if dropout > 0:
            x = layers.Dropout(dropout, name=f"{name}{i}_dropout")(x)
    return x


def min_spatial_size(plan: Sequence[object], kernel_size: int = 3, padding: str = "same") -> int:
    """Smallest image side that leaves >= 1 pixel after every layer of ``plan``.

    ``plan`` lists the spatial layers in order: ``"M"`` for MaxPooling2D(2), anything else
    for a stride-1 conv (which shrinks the side by ``kernel_size - 1`` with "valid" padding).
    """
    size = 1
    for step in reversed(plan):
        if step == "M":
            size *= 2
        elif padding == "valid":
            size += kernel_size - 1
    return size
