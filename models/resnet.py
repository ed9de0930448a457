"""Small-image ResNet (CIFAR-style): a 3x3 stem, stages of basic blocks, global pooling.

No 7x7/stride-2 stem and no stem max-pool: the images are small. Width doubles per stage
and the first block of every stage after the first has stride 2. Batch normalization is
part of the architecture, so ``batch_norm`` is accepted (shared search spaces may pass it)
but must be True. ``resnet8/14/20`` fix 3 stages of 1/2/3 blocks (6n+2 weighted layers).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .heads import Head
from .layers import BN_MOMENTUM, regularizer
from .lazy import keras, layers
from .registry import preset, register_model


def basic_block(
    x: keras.KerasTensor,
    filters: int,
    stride: int,
    *,
    kernel_size: int,
    activation: str,
    l1: float,
    l2: float,
    name: str,
) -> keras.KerasTensor:
    """conv-BN-act-conv-BN + shortcut, activation after the add.

    The shortcut is the identity, or a 1x1 conv + BN projection when the stride or the
    width changes. The Add layer is named ``{name}_add``.
    """
    reg = regularizer(l1, l2)
    conv = dict(padding="same", use_bias=False, kernel_regularizer=reg)
    y = layers.Conv2D(filters, kernel_size, strides=stride, name=f"{name}_conv1", **conv)(x)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn1")(y)
    y = layers.Activation(activation, name=f"{name}_act1")(y)
    y = layers.Conv2D(filters, kernel_size, name=f"{name}_conv2", **conv)(y)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn2")(y)
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, name=f"{name}_proj_conv", **conv)(x)
        shortcut = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_proj_bn")(shortcut)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.Activation(activation, name=f"{name}_out")(y)


def _require_batch_norm(hp: Mapping[str, Any]) -> None:
    if not hp["batch_norm"]:
        raise ValueError(
            "hyperparameter batch_norm=False is invalid for resnet: its blocks always use "
            "batch normalization (allowed: True)"
        )


def _resnet(
    input_shape: tuple[int, int, int],
    n_classes: int,
    *,
    loss: str,
    name: str,
    n_base: int = 16,
    n_stages: int = 3,
    blocks_per_stage: int = 2,
    batch_norm: bool = True,
    spatial_dropout: float = 0.0,
    conv_dropout: float = 0.0,
    dropout: float = 0.0,
    activation: str = "relu",
    kernel_size: int = 3,
    l1: float = 0.0,
    l2: float = 0.0,
) -> keras.Model:
    del batch_norm  # always on; validated by _require_batch_norm
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Conv2D(
        n_base,
        kernel_size,
        padding="same",
        use_bias=False,
        kernel_regularizer=regularizer(l1, l2),
        name="stem_conv",
    )(inputs)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="stem_bn")(x)
    x = layers.Activation(activation, name="stem_act")(x)
    for stage in range(1, n_stages + 1):
        filters = n_base * 2 ** (stage - 1)
        for block in range(1, blocks_per_stage + 1):
            stride = 2 if (stage > 1 and block == 1) else 1
            x = basic_block(
                x,
                filters,
                stride,
                kernel_size=kernel_size,
                activation=activation,
                l1=l1,
                l2=l2,
                name=f"stage{stage}_block{block}",
            )
        if spatial_dropout > 0:
            x = layers.SpatialDropout2D(spatial_dropout, name=f"stage{stage}_spatial_dropout")(x)
        if conv_dropout > 0:
            x = layers.Dropout(conv_dropout, name=f"stage{stage}_dropout")(x)
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name="dropout")(x)
    outputs = Head(loss, n_classes).output_layer()(x)
    return keras.Model(inputs, outputs, name=name)


def _min_size(hp: Mapping[str, Any]) -> int:
    # One halving per stage after the first; keeps every stride-2 stage meaningful.
    return 2 ** (hp["n_stages"] - 1)


register_model(
    "resnet",
    min_input_size=_min_size,
    description="small-image ResNet: 3x3 stem, n_stages x blocks_per_stage basic blocks, GAP",
    check=_require_batch_norm,
)(preset(_resnet))

#: Depth presets: name -> blocks per stage (3 stages; depth = 6 * blocks + 2).
RESNET_PRESETS = {"resnet8": 1, "resnet14": 2, "resnet20": 3}

for _name, _blocks in RESNET_PRESETS.items():
    register_model(
        _name,
        min_input_size=_min_size({"n_stages": 3}),
        description=f"small-image ResNet, 3 stages x {_blocks} basic blocks ({_name[6:]} layers)",
        check=_require_batch_norm,
    )(preset(_resnet, n_stages=3, blocks_per_stage=_blocks))
