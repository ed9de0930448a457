"""Training loop pieces on tiny data: schedules, hinge accuracy, NaN guard."""

import math

import numpy as np
import pytest

from tunelab.models import Head, build_model
from tunelab.models.data import load_dataset
from tunelab.models.training import TrainingSettings, train


@pytest.fixture(scope="module")
def two_digits():
    data = load_dataset("digits", image_size=8, seed=0)
    from tunelab.models.data import Dataset, Split

    def keep(split):
        mask = split.y < 2
        return Split(split.x[mask], split.y[mask])

    return Dataset("digits01", ("0", "1"), keep(data.train), keep(data.val))


def fit(data, loss, **settings):
    model = build_model("lenet", data.input_shape, data.n_classes, loss=loss, n_base=4,
                        dense_units=8)
    lr_log = []
    s = TrainingSettings(max_epochs=settings.pop("max_epochs", 4), batch_size=32,
                         early_stopping=False, **settings)
    result = train(model, Head(loss, data.n_classes), data, s,
                   on_epoch=lambda e, logs: lr_log.append(logs["learning_rate"]))
    return result, lr_log


@pytest.mark.parametrize("kind, expected", [
    ("constant", [1e-2, 1e-2, 1e-2, 1e-2]),
    ("step", [1e-2, 1e-2, 5e-3, 5e-3]),
    ("cosine", [1e-2, 1e-2 * 0.75 + 1e-6 * 0.25, 1e-2 * 0.25 + 1e-6 * 0.75, 1e-6]),
])
def test_learning_rate_schedules(two_digits, kind, expected):
    _, lrs = fit(two_digits, "binary_crossentropy", learning_rate=1e-2, lr_schedule=kind,
                 lr_step_size=2, lr_factor=0.5)
    assert lrs == pytest.approx(expected, rel=1e-4)


def test_reduce_on_plateau_lowers_the_rate(two_digits):
    # a monitor that can never improve on a huge min_delta: the rate halves after patience
    _, lrs = fit(two_digits, "binary_crossentropy", learning_rate=1e-2,
                 lr_schedule="reduce_on_plateau", lr_patience=1, lr_factor=0.5,
                 monitor="val_loss", monitor_mode="min", max_epochs=5)
    assert lrs[0] == pytest.approx(1e-2)
    assert min(lrs) < 1e-2


def test_hinge_head_learns_with_sign_accuracy(two_digits):
    result, _ = fit(two_digits, "hinge", learning_rate=1e-2, max_epochs=6)
    # digits 0 vs 1 are easy: Keras' binary accuracy would stay near 0.5 on {-1, 1} labels
    assert result.history["val_accuracy"][-1] > 0.9
    head = Head("hinge", 2)
    assert list(head.encode_labels(np.array([0, 1]))[:, 0]) == [-1.0, 1.0]
    probs = head.probabilities(np.array([[-0.8], [0.6]]))
    assert probs.argmax(axis=1).tolist() == [0, 1]
    assert np.allclose(probs.sum(axis=1), 1.0)


def test_divergence_is_reported_not_raised(two_digits):
    result, _ = fit(two_digits, "binary_crossentropy", learning_rate=1e12, optimizer="sgd",
                    max_epochs=3)
    assert result.diverged
    assert "NaN" in result.reason
    assert any(not math.isfinite(v) for v in result.history["loss"])
