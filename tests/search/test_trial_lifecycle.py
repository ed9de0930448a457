"""The one trial lifecycle (search/trial.py): every path that trains a configuration plans it
the same way, and `continue` keeps a transfer model's training plan."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tunelab.models import transfer
from tunelab.models.data import Dataset, Split
from tunelab.models.model_files import load_checkpoint, save_checkpoint
from tunelab.models.registry import default_loss
from tunelab.models.training import TrainingSettings
from tunelab.search.trial import continue_trial, plan_trial, retrain


def _data(n=24, side=8, n_classes=3, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)

    def split(k):
        return Split(rng.random((k, side, side, 1), dtype="float32"), np.arange(k) % n_classes)

    return Dataset("tiny", tuple(f"c{i}" for i in range(n_classes)), split(n), split(n // 2))


@pytest.mark.parametrize("n_classes", [2, 3, 10])
def test_one_default_loss_rule_and_the_trials_knobs_in_the_settings(n_classes):
    plan = plan_trial({"learning_rate": 0.01, "batch_size": 16, "n_base": 4, "rotation": 5},
                      model="lenet", n_classes=n_classes, training=TrainingSettings(), seed=7)
    assert plan.loss == default_loss(n_classes)
    assert plan.model_params == {"n_base": 4}
    s = plan.settings
    assert (s.learning_rate, s.batch_size, s.rotation, s.seed) == (0.01, 16, 5, 7)
    assert plan.head.units == (1 if n_classes == 2 else n_classes)


def test_a_family_trial_plans_its_own_family():
    plan = plan_trial({"model": "mlp", "mlp.dense_units": 8, "dropout": 0.1, "lenet.n_base": 4,
                       "loss": "categorical_hinge"}, model=["lenet", "mlp"], n_classes=3,
                      training=TrainingSettings(), seed=0)
    assert plan.model_name == "mlp" and plan.loss == "categorical_hinge"
    assert plan.model_params == {"dense_units": 8, "dropout": 0.1}


def test_retrain_is_deterministic_for_a_seed():
    data = _data()
    settings = TrainingSettings(max_epochs=2, batch_size=8, early_stopping=False)
    runs = [retrain({"n_base": 4}, number=3, seed=11, model="lenet", data=data,
                    training=settings) for _ in range(2)]
    (m1, meta1), (m2, meta2) = runs
    assert meta1["history"] == meta2["history"] and meta1["seed"] == 11
    for a, b in zip(m1.get_weights(), m2.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_continue_keeps_a_transfer_models_training_plan(tmp_path):
    """Frozen warm-up, checkpoint, then `continue`: the continued epochs fine-tune the top
    layers at the reduced rate instead of training a frozen backbone again."""
    data = _data()
    params = {"weights": None, "dense_units": 8, "fine_tune_layers": 2, "warmup_epochs": 1,
              "fine_tune_lr_factor": 0.1, "learning_rate": 1e-3, "batch_size": 8}
    settings = TrainingSettings(max_epochs=1, early_stopping=False)
    model, meta = retrain(params, number=0, seed=1, model="vgg16_transfer", data=data,
                          training=settings, feature_cache_dir=str(tmp_path / "features"))
    assert meta["epochs_trained"] == 1
    assert transfer.backbone_of(model).trainable_weights == []  # still frozen after warm-up
    path = save_checkpoint(model, tmp_path / "trial-0.keras", meta)
    loaded, meta = load_checkpoint(path, compile=True)
    before = [w.copy() for w in transfer.backbone_of(loaded).get_weights()]
    history, summary, trained = continue_trial(
        loaded, meta, data=data, training=settings, epochs=2, metric="val_accuracy",
        direction="maximize", feature_cache_dir=str(tmp_path / "features"))
    assert trained == 2 and len(history["loss"]) == 3 and summary["epochs_trained"] == 3
    rate = float(keras.ops.convert_to_numpy(loaded.optimizer.learning_rate))
    assert rate == pytest.approx(1e-4)  # learning_rate * fine_tune_lr_factor
    after = transfer.backbone_of(loaded).get_weights()
    changed = [not np.array_equal(a, b) for a, b in zip(before, after, strict=True)]
    assert changed[-2:] == [True, True] and not any(changed[:-2])  # only the top conv moved
