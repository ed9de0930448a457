"""VGG family, timm-style: one builder, the variants are a table; and ``vggnet``, the labs'
VGG-style network of a searchable number of equal blocks.

Numbers in a cfg are filter multiples of ``n_base`` (the labs scale VGG down for small
images: n_base=64 gives the original 64-128-256-512-512 widths), "M" is a 2x2 max-pool.
``vggnet`` builds its cfg from ``n_blocks`` blocks of ``convs_per_block`` convolutions, widths
doubling from ``n_base``, each block pooled (the CIFAR-10 lab's base model: 32-32, 64-64,
128-128, then dense 256 and 64; it compares 2, 3 and 4 blocks).
The last Conv2D is named ``Last_ConvLayer`` so Grad-CAM can find it.
"""

from __future__ import annotations

from .dense_widths import widths
from .heads import Head
from .layers import conv_block, dense_stack, min_spatial_size
from .lazy import keras, layers
from .registry import preset, register_model

VGG_CFGS: dict[str, list[int | str]] = {
    "vgg11": [1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"],
    "vgg13": [1, 1, "M", 2, 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"],
    "vgg16": [1, 1, "M", 2, 2, "M", 4, 4, 4, "M", 8, 8, 8, "M", 8, 8, 8, "M"],
}
LAST_CONV_NAME = "Last_ConvLayer"


def _blocks(cfg: list[int | str]) -> list[tuple[list[int], bool]]:
    """Split a cfg into conv blocks: (filter multiples, pool after the block)."""
    blocks, current = [], []
    for item in cfg:
        if item == "M":
            blocks.append((current, True))
            current = []
        else:
            current.append(int(item))
    if current:
        blocks.append((current, False))
    return blocks


def _vgg(
    input_shape: tuple[int, int, int],
    n_classes: int,
    *,
    loss: str,
    name: str,
    cfg: list[int | str],
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
    blocks = _blocks(cfg)
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for i, (mults, pool) in enumerate(blocks, start=1):
        if len(set(mults)) != 1:
            raise ValueError(f"VGG block {i} mixes widths {mults}; split it with 'M'")
        x = conv_block(
            x,
            mults[0] * n_base,
            len(mults),
            pool=pool,
            name=f"block{i}",
            last_conv_name=LAST_CONV_NAME if i == len(blocks) else None,
            **conv,
        )
    x = layers.Flatten(name="flatten")(x)
    x = dense_stack(
        x,
        widths(dense_units, 3),
        activation=activation,
        dropout=dropout,
        batch_norm=dense_batch_norm,
        l1=l1,
        l2=l2,
    )
    outputs = Head(loss, n_classes).output_layer()(x)
    return keras.Model(inputs, outputs, name=name)


def _min_size(cfg: list[int | str]):
    return lambda hp: min_spatial_size(cfg, hp["kernel_size"], hp["padding"])


for _name, _cfg in VGG_CFGS.items():
    _n_convs = sum(item != "M" for item in _cfg)
    register_model(
        _name,
        min_input_size=_min_size(_cfg),
        description=f"VGG with {_n_convs} conv layers in 5 blocks (b..8b filters) + 3 dense",
    )(preset(_vgg, cfg=_cfg))


def vggnet_cfg(n_blocks: int, convs_per_block: int = 2) -> list[int | str]:
    """``n_blocks`` blocks of ``convs_per_block`` convs, widths 1, 2, 4, ... x n_base, each
    followed by a 2x2 max-pool: ``vggnet_cfg(3)`` = [1, 1, "M", 2, 2, "M", 4, 4, "M"]."""
    cfg: list[int | str] = []
    for i in range(n_blocks):
        cfg += [2**i] * convs_per_block + ["M"]
    return cfg


@register_model(
    "vggnet",
    min_input_size=lambda hp: min_spatial_size(vggnet_cfg(hp["n_blocks"], hp["convs_per_block"]),
                                               hp["kernel_size"], hp["padding"]),
    description="VGG-style: n_blocks blocks of convs_per_block convs (b, 2b, 4b, ...), each "
                "pooled - dense layers - head (the CIFAR-10 lab's base model by default)",
)
def vggnet(
    input_shape: tuple[int, int, int],
    n_classes: int,
    *,
    loss: str,
    name: str = "vggnet",
    n_base: int = 32,
    n_blocks: int = 3,
    convs_per_block: int = 2,
    batch_norm: bool = False,
    dense_batch_norm: bool = False,
    spatial_dropout: float = 0.0,
    conv_dropout: float = 0.0,
    dropout: float = 0.0,
    dense_units: int | tuple[int, ...] = (256, 64),
    activation: str = "relu",
    kernel_size: int = 3,
    padding: str = "same",
    l1: float = 0.0,
    l2: float = 0.0,
) -> keras.Model:
    """An int ``dense_units`` gives two hidden dense layers of that width."""
    if isinstance(dense_units, int):
        dense_units = (dense_units, dense_units)
    return _vgg(input_shape, n_classes, loss=loss, name=name,
                cfg=vggnet_cfg(n_blocks, convs_per_block), n_base=n_base,
                batch_norm=batch_norm, dense_batch_norm=dense_batch_norm,
                spatial_dropout=spatial_dropout, conv_dropout=conv_dropout, dropout=dropout,
                dense_units=dense_units, activation=activation, kernel_size=kernel_size,
                padding=padding, l1=l1, l2=l2)
