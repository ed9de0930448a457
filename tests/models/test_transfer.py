"""Transfer learning: preprocessing, frozen backbone + head, fine-tuning, weights sources, and
frozen features computed once and reused from the disk cache."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tunelab.models import Head, build_model, feature_cache, get_model_spec, transfer
from tunelab.models.data import Dataset, Split
from tunelab.models.training import TrainingSettings

VGG16_NOTOP_LAYERS = 19  # input + 13 conv + 5 pool


def _n(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


def _data(n_train=24, n_val=12, side=8, channels=1, n_classes=3, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)

    def split(n):
        return Split(rng.random((n, side, side, channels), dtype="float32"),
                     np.arange(n) % n_classes)

    return Dataset("tiny", tuple(f"c{i}" for i in range(n_classes)), split(n_train),
                   split(n_val))


def test_grey_images_become_3_channel_32px_vgg_input():
    layer = transfer.BackboneInput("VGG16", (32, 32))
    out = keras.ops.convert_to_numpy(layer(np.ones((2, 8, 8, 1), dtype="float32")))
    assert out.shape == (2, 32, 32, 3)
    # caffe preprocessing: RGB -> BGR, minus the ImageNet means, on 0-255 pixels
    assert np.allclose(out[0, 0, 0], [255 - 103.939, 255 - 116.779, 255 - 123.68], atol=1e-3)


def test_other_backbones_use_their_own_preprocessing():
    out = keras.ops.convert_to_numpy(
        transfer.BackboneInput("MobileNetV2", (32, 32))(np.ones((1, 32, 32, 3), "float32")))
    assert np.allclose(out, 1.0)  # "tf" mode: 0-255 -> [-1, 1]


def test_vgg16_frozen_backbone_and_lab_head():
    model = build_model("vgg16_transfer", (8, 8, 1), 3, weights=None)
    backbone = transfer.backbone_of(model)
    assert backbone.name == "vgg16" and len(backbone.layers) == VGG16_NOTOP_LAYERS
    assert not backbone.trainable and backbone.trainable_weights == []
    # only the head trains: flatten(1x1x512) -> dense 128 -> dropout 0.5 -> softmax(3)
    assert _n(model.trainable_weights) == (512 * 128 + 128) + (128 * 3 + 3)
    assert _n(backbone.weights) == 14_714_688  # VGG16 without its top
    assert model.get_layer("dense1_dropout").rate == 0.5
    assert model.layers[-1].get_config()["activation"] == "softmax"


@pytest.mark.parametrize(("amount", "expected"), [(4, 4), (0.25, 5), (1.0, 19), (0, 0)])
def test_fine_tuning_unfreezes_the_top_layers(amount, expected):
    model = build_model("vgg16_transfer", (32, 32, 3), 2, weights=None,
                        fine_tune_layers=amount)
    assert transfer.unfreeze_top(model) == expected
    backbone = transfer.backbone_of(model)
    trainable = [layer.name for layer in backbone.layers if layer.trainable and layer.weights]
    with_weights = [layer.name for layer in backbone.layers[-expected:] if layer.weights] \
        if expected else []
    assert trainable == with_weights
    if expected == 4:  # block5: conv1..3 (+ pool) -> 3 convs of 512x512x3x3
        assert _n(backbone.trainable_weights) == 3 * (3 * 3 * 512 * 512 + 512)


def test_trains_a_step_and_fine_tunes_at_a_lower_rate(tmp_path):
    data = _data()
    model = build_model("vgg16_transfer", data.input_shape, 3, weights=None, dense_units=8,
                        fine_tune_layers=2, warmup_epochs=1, fine_tune_lr_factor=0.1)
    before = [w.copy() for w in transfer.backbone_of(model).get_weights()]
    head = Head("categorical_crossentropy", 3)
    settings = TrainingSettings(max_epochs=2, batch_size=8, learning_rate=1e-3,
                                early_stopping=False)
    result = transfer.train_model(model, head, data, settings, feature_cache_dir=tmp_path)
    assert not result.diverged and result.epochs_trained == 2
    assert all(np.isfinite(result.history["loss"]))
    assert result.extra["frozen_epochs"] == 1 and result.extra["unfrozen_layers"] == 2
    assert float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)) == \
        pytest.approx(1e-4)
    after = transfer.backbone_of(model).get_weights()
    changed = [not np.array_equal(a, b) for a, b in zip(before, after, strict=True)]
    assert changed[-2:] == [True, True]  # the top conv (kernel, bias) moved
    assert not any(changed[:-2])  # the rest stayed frozen


def test_features_are_computed_once_and_reused_from_disk(tmp_path, monkeypatch):
    data = _data()
    head = Head("categorical_crossentropy", 3)
    settings = TrainingSettings(max_epochs=1, batch_size=8)
    feature_cache.clear_memory()
    monkeypatch.setattr(feature_cache, "STATS", feature_cache.Counter())
    calls = []
    original = transfer.extractor_model

    def counting(model):
        extractor = original(model)
        predict = extractor.predict
        extractor.predict = lambda x, **kw: calls.append(len(x)) or predict(x, **kw)
        return extractor

    monkeypatch.setattr(transfer, "extractor_model", counting)
    sources = []
    for trial in range(2):
        feature_cache.clear_memory()  # as in a fresh worker process
        keras.utils.set_random_seed(trial)
        model = build_model("vgg16_transfer", data.input_shape, 3, weights=None, dense_units=8)
        sources.append(transfer.train_model(model, head, data, settings,
                                            feature_cache_dir=tmp_path).extra["feature_cache"])
        if trial == 0:
            files = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("features-*.npy")}
    assert sources == ["train: computed, val: computed", "train: disk, val: disk"]
    assert calls == [24, 12]  # the extractor ran once per split, in the first trial only
    assert feature_cache.STATS == {"computed": 2, "loaded": 2}
    assert len(files) == 2 and all(n.startswith("features-vgg16-random") for n in files)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("features-*.npy")} == files


def test_other_images_or_weights_get_other_cache_files(tmp_path):
    head = Head("categorical_crossentropy", 3)
    settings = TrainingSettings(max_epochs=1, batch_size=8)
    feature_cache.clear_memory()
    for seed in (0, 1):
        model = build_model("vgg16_transfer", (8, 8, 1), 3, weights=None, dense_units=8)
        transfer.train_model(model, head, _data(seed=seed), settings, feature_cache_dir=tmp_path)
    assert len(list(tmp_path.glob("features-*.npy"))) == 4


def test_local_weights_file(tmp_path):
    keras.utils.set_random_seed(7)
    source = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16_notop.weights.h5"
    source.save_weights(path)
    model = build_model("vgg16_transfer", (16, 16, 1), 2, weights=str(path))
    loaded = transfer.backbone_of(model).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(source.get_weights(), loaded, strict=True))
    assert transfer.transfer_plan(model).weights_tag.startswith("file")


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no such weights file"):
        build_model("vgg16_transfer", (32, 32, 1), 2, weights=str(tmp_path / "nope.h5"))


def test_imagenet_weights_unreachable_says_how_to_supply_a_file(monkeypatch):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(transfer.WeightsUnavailable,
                       match=r"(?s)ImageNet weights of VGG16.*~/.keras/models.*space\.weights"):
        build_model("vgg16_transfer", (32, 32, 1), 2)


def test_any_keras_applications_backbone_by_name():
    assert get_model_spec("transfer").defaults["backbone"] == "VGG16"
    model = build_model("transfer", (8, 8, 1), 2, loss="binary_crossentropy",
                        backbone="MobileNetV2", weights=None, dense_units=8)
    assert transfer.backbone_of(model).name.startswith("mobilenetv2")
    assert tuple(model.output.shape) == (None, 1)
    with pytest.raises(ValueError, match="backbone='VGG17'.*VGG16"):
        build_model("transfer", (8, 8, 1), 2, backbone="VGG17", weights=None)
