"""Every registered model builds, has the right head and trains one step; the labs'
architectures have the exact layers and parameter counts; bad input fails early."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tunelab.models import Head, build_model, check_model_input, get_model_spec, list_models

SMALL = {"n_base": 4}  # keep every model tiny
BATCH = 2


def _kwargs(name: str) -> dict:
    defaults = get_model_spec(name).defaults
    kwargs = {k: v for k, v in SMALL.items() if k in defaults}
    if "dense_units" in defaults:
        kwargs["dense_units"] = 8
    if "weights" in defaults:
        kwargs["weights"] = None  # transfer models: no ImageNet download in tests
    return kwargs


def _shape(name: str, channels: int = 1) -> tuple[int, int, int]:
    side = max(get_model_spec(name).min_size(), 8)
    return (side, side, channels)


def _types(model: keras.Model) -> list[str]:
    return [type(layer).__name__ for layer in model.layers if type(layer).__name__ != "InputLayer"]


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize(
    ("loss", "n_classes", "units"),
    [("binary_crossentropy", 2, 1), ("hinge", 2, 1), ("categorical_crossentropy", 3, 3)],
)
def test_output_shape_follows_head(name, loss, n_classes, units):
    shape = _shape(name, channels=3)
    model = build_model(name, shape, n_classes, loss=loss, **_kwargs(name))
    assert model.name == name
    out = model(np.zeros((BATCH, *shape), dtype="float32"))
    assert tuple(out.shape) == (BATCH, units)
    assert model.layers[-1].get_config()["activation"] == Head(loss, n_classes).activation


@pytest.mark.parametrize("name", list_models())
def test_one_train_step(name):
    shape = _shape(name)
    model = build_model(name, shape, 3, **_kwargs(name))
    head = Head("categorical_crossentropy", 3)
    model.compile(optimizer="adam", loss=head.loss, metrics=[head.accuracy_metric()])
    x = np.random.default_rng(0).random((BATCH, *shape), dtype="float32")
    y = head.encode_labels(np.array([0, 2]))
    loss, _ = model.train_on_batch(x, y)
    assert np.isfinite(loss)


def test_lenet_parameter_count_matches_the_lab():
    model = build_model("lenet", (128, 128, 1), 2, loss="binary_crossentropy", n_base=32)
    # conv 3*3*1*32+32 + conv 3*3*32*64+64 + dense (32*32*64)*64+64 + head 64*1+1
    assert model.count_params() == 320 + 18_496 + 4_194_368 + 65 == 4_213_249


def test_alexnet_layers_and_parameter_count():
    model = build_model("alexnet", (32, 32, 1), 10, n_base=8)
    assert _types(model) == [
        "Conv2D", "Activation", "MaxPooling2D",
        "Conv2D", "Activation", "MaxPooling2D",
        "Conv2D", "Activation",
        "Conv2D", "Activation",
        "Conv2D", "Activation", "MaxPooling2D",
        "Flatten", "Dense", "Activation", "Dense", "Activation", "Dense",
    ]  # fmt: skip
    b, k, d = 8, 3, 64  # n_base, kernel size, dense_units (default)
    conv1 = k * k * 1 * b + b  # 80, 32x32 -> pool -> 16x16
    conv2 = k * k * b * 2 * b + 2 * b  # 1,168, -> pool -> 8x8
    conv3 = k * k * 2 * b * 4 * b + 4 * b  # 4,640
    conv4 = k * k * 4 * b * 4 * b + 4 * b  # 9,248
    conv5 = k * k * 4 * b * 2 * b + 2 * b  # 4,624, -> pool -> 4x4
    dense1 = (4 * 4 * 2 * b) * d + d  # 16,448
    dense2 = d * d + d  # 4,160
    head = d * 10 + 10  # 650
    expected = conv1 + conv2 + conv3 + conv4 + conv5 + dense1 + dense2 + head
    assert expected == 41_018
    assert model.count_params() == expected


def test_skin_lab_alexnet_layers_and_parameter_count():
    """The skin lab's AlexNet: base 64, dense 128 then 64, batch norm, dropout 0.4, on
    128x128 grey images with one sigmoid unit. Batch norm sits in the conv blocks only."""
    model = build_model("alexnet", (128, 128, 1), 2, loss="binary_crossentropy", n_base=64,
                        dense_units=[128, 64], batch_norm=True, dropout=0.4)
    conv_bn_act = ["Conv2D", "BatchNormalization", "Activation"]
    assert _types(model) == [
        *conv_bn_act, "MaxPooling2D",
        *conv_bn_act, "MaxPooling2D",
        *conv_bn_act,
        *conv_bn_act,
        *conv_bn_act, "MaxPooling2D",
        "Flatten", "Dense", "Activation", "Dropout", "Dense", "Activation", "Dropout", "Dense",
    ]  # fmt: skip
    k, widths = 3, [64, 128, 256, 256, 128]
    convs = sum(k * k * c_in * c_out for c_in, c_out in zip([1, *widths], widths, strict=False))
    bn = sum(4 * c for c in widths)  # gamma, beta, moving mean and variance; convs: no bias
    flat = (128 // 8) ** 2 * 128  # pools after blocks 1, 2 and 5
    dense = (flat * 128 + 128) + (128 * 64 + 64) + (64 * 1 + 1)
    assert convs + bn + dense == 5_460_033
    assert model.count_params() == 5_460_033
    assert [layer.rate for layer in model.layers if type(layer).__name__ == "Dropout"] == [0.4] * 2


def test_cifar10_lab_base_model_is_vggnet_with_defaults():
    """The CIFAR-10 lab's base model: conv 32-32, 64-64, 128-128 (each block pooled), then
    dense 256 and 64, ten softmax units on 32x32 RGB."""
    model = build_model("vggnet", (32, 32, 3), 10)
    block = ["Conv2D", "Activation", "Conv2D", "Activation", "MaxPooling2D"]
    assert _types(model) == [*block * 3, "Flatten", "Dense", "Activation", "Dense",
                             "Activation", "Dense"]
    k, widths = 3, [32, 32, 64, 64, 128, 128]
    convs = sum(k * k * c_in * c_out + c_out
                for c_in, c_out in zip([3, *widths], widths, strict=False))
    dense = (4 * 4 * 128 * 256 + 256) + (256 * 64 + 64) + (64 * 10 + 10)
    assert convs + dense == 828_650
    assert model.count_params() == 828_650
    assert model.get_layer("Last_ConvLayer").filters == 128


@pytest.mark.parametrize("n_blocks", [2, 3, 4])
def test_vggnet_blocks_double_the_width_and_are_searchable(n_blocks):
    model = build_model("vggnet", (32, 32, 1), 2, n_base=8, n_blocks=n_blocks)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [8 * 2**i for i in range(n_blocks) for _ in (0, 1)]
    assert _types(model).count("MaxPooling2D") == n_blocks
    assert get_model_spec("vggnet").min_size({"n_blocks": n_blocks}) == 2**n_blocks
    three = build_model("vggnet", (16, 16, 1), 2, n_base=4, n_blocks=2, convs_per_block=3)
    assert _types(three).count("Conv2D") == 6


@pytest.mark.parametrize("name", ["lenet", "alexnet", "vgg11", "vggnet"])
def test_batch_norm_in_conv_blocks_only_and_dense_batch_norm_in_dense_layers(name):
    def follows(model, kind):
        layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        return {type(layers[i + 1]).__name__ for i, layer in enumerate(layers[:-1])
                if isinstance(layer, kind)}

    conv = build_model(name, (32, 32, 1), 2, n_base=4, batch_norm=True)
    assert follows(conv, keras.layers.Conv2D) == {"BatchNormalization"}
    assert follows(conv, keras.layers.Dense) <= {"Activation"}
    dense = build_model(name, (32, 32, 1), 2, n_base=4, dense_batch_norm=True)
    assert follows(dense, keras.layers.Conv2D) == {"Activation"}
    assert follows(dense, keras.layers.Dense) == {"BatchNormalization"}
    assert not any(layer.use_bias for layer in dense.layers
                   if isinstance(layer, keras.layers.Dense) and layer.name != "head")


@pytest.mark.parametrize("value", [[128, 64], (128, 64), "128-64"])
def test_dense_units_per_layer(value):
    model = build_model("alexnet", (16, 16, 1), 2, n_base=4, dense_units=value)
    hidden = [layer.units for layer in model.layers
              if isinstance(layer, keras.layers.Dense) and layer.name != "head"]
    assert hidden == [128, 64]
    mlp = build_model("mlp", (8, 8, 1), 2, dense_units=[512, 128, 32])
    assert [layer.units for layer in mlp.layers if isinstance(layer, keras.layers.Dense)] == [
        512, 128, 32, 1]
    lenet = build_model("lenet", (8, 8, 1), 2, n_base=4, dense_units=value)
    assert [layer.units for layer in lenet.layers if isinstance(layer, keras.layers.Dense)] == [
        128, 64, 1]


@pytest.mark.parametrize("value", [0, [64, 0], [], "64-", True, 1.5, "wide"])
def test_bad_dense_units_name_what_is_allowed(value):
    with pytest.raises(ValueError, match=r"dense_units=.*one integer >= 1 per layer"):
        build_model("alexnet", (16, 16, 1), 2, dense_units=value)


def test_vgg16_has_13_convs_and_names_the_last_for_grad_cam():
    model = build_model("vgg16", (32, 32, 1), 2, n_base=4)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 13
    assert convs[-1].name == "Last_ConvLayer"
    assert model.get_layer("Last_ConvLayer") is convs[-1]
    assert _types(model).count("MaxPooling2D") == 5


def test_batch_norm_sits_between_conv_and_activation():
    model = build_model("vgg11", (32, 32, 1), 2, n_base=4, batch_norm=True)
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    convs = [i for i, layer in enumerate(layers) if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 8
    for i in convs:
        assert isinstance(layers[i + 1], keras.layers.BatchNormalization)
        assert isinstance(layers[i + 2], keras.layers.Activation)
        assert not layers[i].use_bias  # BN's beta replaces the bias


def test_spatial_dropout_after_activation_before_pooling():
    model = build_model("lenet", (16, 16, 1), 2, spatial_dropout=0.2)
    types = _types(model)
    positions = [i for i, t in enumerate(types) if t == "SpatialDropout2D"]
    assert len(positions) == 2
    for i in positions:
        assert types[i - 1] == "Activation"
        assert types[i + 1] == "MaxPooling2D"


@pytest.mark.parametrize(("n_stages", "blocks_per_stage"), [(3, 2), (2, 1)])
def test_resnet_has_one_skip_connection_per_block(n_stages, blocks_per_stage):
    model = build_model(
        "resnet", (8, 8, 3), 3, n_base=4, n_stages=n_stages, blocks_per_stage=blocks_per_stage
    )
    adds = [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]
    assert len(adds) == n_stages * blocks_per_stage
    assert model.get_layer(f"stage{n_stages}_block{blocks_per_stage}_add") in adds
    # width doubles per stage, spatial size halves after the first
    last = model.get_layer(f"stage{n_stages}_block{blocks_per_stage}_out").output
    assert tuple(last.shape[1:]) == (8 // 2 ** (n_stages - 1),) * 2 + (4 * 2 ** (n_stages - 1),)


@pytest.mark.parametrize(("preset", "blocks"), [("resnet8", 1), ("resnet14", 2), ("resnet20", 3)])
def test_resnet_presets(preset, blocks):
    model = build_model(preset, (8, 8, 1), 2, n_base=4)
    assert sum(isinstance(layer, keras.layers.Add) for layer in model.layers) == 3 * blocks


def test_too_small_input_names_the_minimum():
    with pytest.raises(ValueError, match=r"32x32.*dataset\.image_size"):
        build_model("vgg16", (8, 8, 1), 2)


def test_unknown_model_lists_known_ones():
    with pytest.raises(ValueError, match="unknown model 'nope'.*lenet"):
        build_model("nope", (32, 32, 1), 2)


def test_unknown_hyperparameter_lists_accepted_ones():
    with pytest.raises(ValueError, match="'dropout_rate'.*accepts:.*dropout"):
        build_model("lenet", (32, 32, 1), 2, dropout_rate=0.5)


@pytest.mark.parametrize(
    ("hparams", "match"),
    [
        ({"dropout": -0.1}, "dropout=-0.1"),
        ({"spatial_dropout": 1.0}, r"\[0, 1\)"),
        ({"kernel_size": 2}, "odd"),
        ({"padding": "full"}, "same, valid"),
        ({"n_base": 0}, ">= 1"),
        ({"activation": "relu6"}, "leaky_relu"),
        ({"l2": -1e-4}, ">= 0"),
    ],
)
def test_invalid_hyperparameter_values(hparams, match):
    with pytest.raises(ValueError, match=match):
        build_model("lenet", (32, 32, 1), 2, **hparams)


def test_resnet_requires_batch_norm():
    with pytest.raises(ValueError, match="batch_norm"):
        build_model("resnet", (8, 8, 1), 2, batch_norm=False)


def test_check_model_input_builds_nothing_and_knows_valid_padding():
    check_model_input("lenet", (4, 4, 1))
    check_model_input("lenet", (10, 10, 1), padding="valid")  # 10 -8 -4 -2 -1
    with pytest.raises(ValueError, match="at least 10x10"):
        check_model_input("lenet", (9, 9, 1), padding="valid")
