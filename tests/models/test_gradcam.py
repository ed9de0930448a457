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
