"""Grad-CAM on tiny trained models: shape, value range, the layer found automatically."""

import keras
import numpy as np
import pytest

from tunelab.models import Head, build_model
from tunelab.models.data import load_dataset
from tunelab.models.gradcam import find_last_conv_layer, gradcam
from tunelab.models.training import TrainingSettings, train


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", image_size=8)


@pytest.mark.parametrize("loss", ["categorical_crossentropy", "binary_crossentropy"])
def test_heatmaps_have_the_image_shape_and_unit_range(digits, loss):
    keras.utils.set_random_seed(0)
    data = digits
    if loss == "binary_crossentropy":  # zeros against the rest, as a two-class task
        from dataclasses import replace

        two = lambda s: replace(s, y=(s.y != 0).astype("int64"))  # noqa: E731
        data = replace(digits, class_names=("zero", "other"), train=two(digits.train),
                       val=two(digits.val))
    head = Head(loss, data.n_classes)
    model = build_model("lenet", data.input_shape, data.n_classes, loss=loss, n_base=4,
                        dense_units=16)
    train(model, head, data, TrainingSettings(max_epochs=1, batch_size=128,
                                              early_stopping=False))
    images = data.val.x[:5]
    cams, classes = gradcam(model, images)
    assert cams.shape == (5, 8, 8) and cams.dtype == np.float32
    assert cams.min() >= 0.0 and cams.max() <= 1.0
    assert np.isfinite(cams).all()
    assert np.all((cams.max(axis=(1, 2)) == 1.0) | (cams.max(axis=(1, 2)) == 0.0))
    assert classes.shape == (5,) and set(classes) <= set(range(data.n_classes))
    same, _ = gradcam(model, images, class_index=classes,
                      layer_name=find_last_conv_layer(model))
    np.testing.assert_allclose(same, cams, atol=1e-6)


def test_vgg_last_conv_is_found_by_name_and_mlp_is_refused():
    vgg = build_model("vgg11", (32, 32, 1), 3, loss="categorical_crossentropy", n_base=2,
                      dense_units=8)
    assert find_last_conv_layer(vgg) == "Last_ConvLayer"
    cams, _ = gradcam(vgg, np.random.default_rng(0).random((2, 32, 32, 1), "float32"))
    assert cams.shape == (2, 32, 32)
    with pytest.raises(ValueError, match="no layer named 'nope'.*Last_ConvLayer"):
        gradcam(vgg, np.zeros((1, 32, 32, 1), "float32"), layer_name="nope")
    mlp = build_model("mlp", (8, 8, 1), 3, loss="categorical_crossentropy")
    with pytest.raises(ValueError, match="no Conv2D"):
        find_last_conv_layer(mlp)


def _square_images(n: int, rng: np.random.Generator, size: int = 16, side: int = 5):
    """Noise images; class 1 has a bright square at a random (recorded) place, class 0 none.

    The class is decided by the square's presence, not by where it sits: Grad-CAM averages
    gradients over the feature map, so a class decided by position alone (the same square
    top-left or bottom-right) gives heatmaps that flip with the training seed."""
    y = rng.integers(0, 2, n)
    x = rng.uniform(0.0, 0.3, (n, size, size, 1)).astype("float32")
    regions = np.zeros((n, size, size), bool)
    for i in np.flatnonzero(y):
        row, col = rng.integers(0, size - side + 1, 2)
        regions[i, row:row + side, col:col + side] = True
    x[regions, 0] = rng.uniform(0.8, 1.0, regions.sum()).astype("float32")
    return x, y, regions


def test_heatmap_mass_lies_on_the_square_that_decides_the_class():
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    x, y, _ = _square_images(400, rng)
    x_val, y_val, regions = _square_images(60, rng)
    model = build_model("lenet", (16, 16, 1), 2, loss="categorical_crossentropy", n_base=8,
                        dense_units=16)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="categorical_crossentropy")
    model.fit(x, keras.utils.to_categorical(y, 2), epochs=5, batch_size=32, verbose=0)
    assert (model.predict(x_val, verbose=0).argmax(axis=1) == y_val).mean() >= 0.9

    squares = y_val == 1
    cams, classes = gradcam(model, x_val[squares])
    regions = regions[squares]
    assert (classes == 1).mean() >= 0.9
    inside = (cams * regions).sum(axis=(1, 2)) / regions.sum(axis=(1, 2))
    outside = (cams * ~regions).sum(axis=(1, 2)) / (~regions).sum(axis=(1, 2))
    assert (inside > outside).mean() >= 0.8, (inside, outside)
    # the heatmap follows the square: its peak lies on it
    peaks = cams.reshape(len(cams), -1).argmax(axis=1)
    assert regions.reshape(len(regions), -1)[np.arange(len(peaks)), peaks].mean() >= 0.8
