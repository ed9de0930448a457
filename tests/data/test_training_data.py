"""Class weights, per-class metrics, augmentation and the tf.data pipeline, on tiny data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import tiny_study

import tunelab
from tunelab.models import Head, build_model
from tunelab.models.data.augment import Augmentation
from tunelab.models.data.tf_dataset import make_dataset
from tunelab.models.metrics import balanced_class_weights, classification_metrics
from tunelab.models.training import TrainingSettings, train


def test_rotation_is_given_in_degrees():
    layer = Augmentation(rotation=90).layer(seed=0).layers[0]
    assert layer.__class__.__name__ == "RandomRotation"
    assert layer.factor == (-0.25, 0.25) or tuple(layer.factor) == (-0.25, 0.25)


def test_percentile_rescale_stretches_contrast():
    image = np.linspace(0.4, 0.6, 64, dtype="float32").reshape(1, 8, 8, 1)
    out = Augmentation(intensity_percentile=5).apply(image, seed=1)
    assert out.min() == pytest.approx(0.0, abs=1e-6) and out.max() == pytest.approx(1.0)


def test_flip_changes_training_batches_only():
    x = np.tile(np.linspace(0, 1, 6, dtype="float32"), (6, 1))[None, ..., None].repeat(4, 0)
    y = np.zeros((4, 1), "float32")
    aug = Augmentation(horizontal_flip=True).layer(seed=0)
    flipped = np.concatenate([b[0].numpy() for _ in range(5) for b in
                              make_dataset(x, y, batch_size=4, augment=aug, shuffle=True)])
    assert np.any(flipped[:, 0, 0, 0] > 0.5)  # some were flipped
    plain = next(iter(make_dataset(x, y, batch_size=4)))[0].numpy()
    np.testing.assert_array_equal(plain, x)


def test_streamed_pipeline_matches_in_memory(tmp_path):
    x = np.random.default_rng(0).random((10, 4, 4, 1), dtype="float32")
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    y = np.arange(10, dtype="float32")[:, None]
    streamed = list(make_dataset(mapped, y, batch_size=3, memory_limit_mb=0,
                                 sample_weight=np.ones(10), shuffle=True))
    xs = np.concatenate([b[0].numpy() for b in streamed])
    ys = np.concatenate([b[1].numpy() for b in streamed]).ravel().astype(int)
    np.testing.assert_array_equal(xs, x[ys])  # images and labels stay paired
    assert sorted(ys.tolist()) == list(range(10)) and len(streamed[0]) == 3


def test_metrics_and_balanced_weights():
    y = np.array([0, 0, 0, 1])
    assert balanced_class_weights(y, 2) == {0: pytest.approx(4 / 6), 1: pytest.approx(2.0)}
    proba = np.array([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.3, 0.7]])
    m = classification_metrics(y, proba, ("benign", "malignant lesion"))
    assert m["recall_benign"] == pytest.approx(2 / 3)
    assert m["precision_malignant_lesion"] == pytest.approx(0.5)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert m["auc"] == pytest.approx(1.0)


def test_val_auc_is_macro_one_vs_rest_for_three_classes():
    """val_auc is logged for every task: macro one-vs-rest ROC AUC with three or more classes
    (each class's AUC against the rest, averaged), NaN while a class is missing."""
    y = np.array([0, 0, 1, 1, 2, 2])
    proba = np.array([[.7, .2, .1], [.3, .4, .3], [.2, .7, .1], [.5, .3, .2], [.1, .2, .7],
                      [.2, .5, .3]])
    by_hand = []
    for c in range(3):
        pos, neg = proba[y == c, c], proba[y != c, c]
        by_hand.append(np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg]))
    m = classification_metrics(y, proba, ("a", "b", "c"))
    assert m["auc"] == pytest.approx(np.mean(by_hand))
    assert np.isnan(classification_metrics(y[:4], proba[:4], ("a", "b", "c"))["auc"])


def test_balanced_weights_lift_minority_recall():
    """On imbalanced data (1:4), the balanced weights make the model predict the rare class."""
    rng = np.random.default_rng(0)
    x = rng.random((100, 8, 8, 1), dtype="float32")
    y = (np.arange(100) % 5 == 0).astype("int64")  # 20 rare, unrelated to the images
    from tunelab.models.data import Dataset, Split

    data = Dataset("noise", ("common", "rare"), Split(x[:80], y[:80]), Split(x[80:], y[80:]))
    recalls = {}
    for weight in ("none", "balanced"):
        head = Head("binary_crossentropy", 2)
        import keras

        keras.utils.set_random_seed(0)
        model = build_model("mlp", data.input_shape, 2, loss="binary_crossentropy")
        result = train(model, head, data, TrainingSettings(
            max_epochs=3, batch_size=16, class_weight=weight, early_stopping=False,
            learning_rate=0.01))
        recalls[weight] = result.history["val_recall_rare"][-1]
        assert "val_balanced_accuracy" in result.history and "val_auc" in result.history
    assert recalls["balanced"] > recalls["none"]


def test_study_logs_augmentation_grid_and_class_metrics(tmp_path, flat_folder):
    raw = tiny_study(tmp_path, fresh_store=True, **{
        "dataset.source": str(flat_folder), "n_trials": 1,
        "objective.metric": "val_balanced_accuracy",
        "dataset.cache_dir": str(tmp_path / "cache"),
        "space.rotation": 20, "space.horizontal_flip": True,
        "space.intensity_percentile": 2,
        "space.class_weight": ["balanced", "none"]})
    study = tunelab.tune(raw, in_process=True)
    trial = study.trials[0]
    assert trial.state.name == "COMPLETE"
    assert "val_recall_plate" in trial.user_attrs["history"]
    assert trial.params["class_weight"] in ("balanced", "none")
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=raw["tracking_uri"])
    run_id = trial.user_attrs["mlflow_run_id"]
    names = [a.path for a in client.list_artifacts(run_id)]
    assert "augmentation.png" in names
    env = json.loads(open(client.download_artifacts(run_id, "environment.json")).read())
    assert env["class_index"] == {"fractured": 0, "normal": 1, "plate": 2}
    assert "val_f1_fractured" in client.get_run(run_id).data.metrics


def test_space_rejects_bad_augmentation(tmp_path):
    with pytest.raises(tunelab.ConfigError, match=r"space.rotation: 400 .*degrees in \[0, 180\]"):
        tunelab.tune(tiny_study(tmp_path, fresh_store=True, **{"space.rotation": [0, 400]}),
                     in_process=True)
    with pytest.raises(tunelab.ConfigError,
                       match=r"objective.metric: 'val_recall_cat' is not logged"):
        tunelab.tune(tiny_study(tmp_path, fresh_store=True,
                                **{"objective.metric": "val_recall_cat"}),
                     in_process=True)
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()
