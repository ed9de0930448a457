"""registry.threshold: the fitter's rules, and the threshold stored inside the logged pyfunc
model is the one mlflow.pyfunc.load_model(...).predict applies."""

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from tunelab.models import build_model
from tunelab.tracking import model_registry
from tunelab.tracking.decision_threshold import fit_threshold
from tunelab.tracking.pyfunc_model import ImageClassifier, decide


def test_rules():
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.3).astype(int)
    p = np.clip(0.25 + 0.3 * y + rng.normal(0, 0.15, 400), 0, 1)  # positives under-called
    acc = lambda t: np.mean((p >= t) == (y == 1))  # noqa: E731
    t_acc = fit_threshold(y, p, "accuracy")
    assert acc(t_acc) >= acc(0.5)
    t_sens = fit_threshold(y, p, {"sensitivity": 0.9})
    assert np.mean(p[y == 1] >= t_sens) >= 0.9
    assert np.mean(p[y == 1] >= t_sens + 0.02) < 0.9 or t_sens >= p.max()  # the highest such
    t_you = fit_threshold(y, p, "youden")
    youden = lambda t: np.mean(p[y == 1] >= t) + np.mean(p[y == 0] < t) - 1  # noqa: E731
    assert youden(t_you) >= max(youden(t) for t in np.linspace(0, 1, 101)) - 1e-9
    assert fit_threshold(y, p, "argmax") == 0.5
    with pytest.raises(ValueError, match="threshold rule"):
        fit_threshold(y, p, "f1")
    np.testing.assert_array_equal(decide(np.array([[0.6, 0.4], [0.2, 0.8]]), 0.3), [1, 1])
    np.testing.assert_array_equal(decide(np.array([[0.6, 0.3, 0.1]]), 0.3), [0])  # k > 2


def test_stored_threshold_is_the_one_predict_applies(tmp_path):
    model = build_model("mlp", (4, 4, 1), 2, loss="binary_crossentropy")
    keras_path = tmp_path / "model.keras"
    model.save(keras_path)
    images = np.random.default_rng(1).integers(0, 256, (40, 4, 4), dtype=np.uint8)
    meta = {"loss": "binary_crossentropy", "class_names": ["benign", "malignant"],
            "input_shape": [4, 4, 1], "trial": 0, "study": "t", "model": "mlp", "params": {}}
    p1 = ImageClassifier(model, meta).predict(None, images)["prob_malignant"].to_numpy()
    threshold = float(np.quantile(p1, 0.3))  # calls most images malignant
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).create_experiment("t", artifact_location=(tmp_path / "art").as_uri())
    logged = model_registry.log_model(tracking_uri=uri, experiment_name="t",
                                      keras_path=keras_path,
                                      meta={**meta, "threshold": threshold},
                                      input_example=images[:2], tags={}, metrics={},
                                      report={})
    mlflow.set_tracking_uri(uri)
    frame = mlflow.pyfunc.load_model(logged.model_uri).predict(images)
    probs = frame["prob_malignant"].to_numpy()
    np.testing.assert_allclose(probs, p1, atol=1e-6)
    expected = np.where(probs >= threshold, "malignant", "benign")
    assert (frame["label"].to_numpy() == expected).all()
    at_argmax = np.where(probs >= 0.5, "malignant", "benign")
    assert (expected != at_argmax).any() or threshold == 0.5  # the threshold did decide


class _Fixed:
    """A stand-in Keras model that returns fixed head outputs."""

    def __init__(self, outputs):
        self.outputs = np.asarray(outputs, dtype="float32")

    def predict(self, x, batch_size=None, verbose=0):
        return self.outputs[: len(x)]


def test_ensemble_probabilities_are_the_mean_of_its_members():
    from tunelab.tracking.pyfunc_model import EnsembleClassifier

    meta = {"loss": "categorical_crossentropy", "class_names": ["a", "b", "c"],
            "input_shape": [4, 4, 1],
            "losses": ["categorical_crossentropy", "binary_crossentropy"]}
    softmax = [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]
    members = [_Fixed(softmax), _Fixed([[0.2, 0.3, 0.5], [0.5, 0.4, 0.1]])]
    meta["losses"] = ["categorical_crossentropy", "categorical_crossentropy"]
    images = np.zeros((2, 4, 4), dtype=np.uint8)
    frame = EnsembleClassifier(members, meta).predict(None, images)
    probs = frame[["prob_a", "prob_b", "prob_c"]].to_numpy()
    np.testing.assert_allclose(probs, [[0.45, 0.25, 0.3], [0.3, 0.25, 0.45]], atol=1e-6)
    assert list(frame["label"]) == ["a", "c"]
    binary = {"loss": "binary_crossentropy", "class_names": ["n", "p"], "input_shape": [4, 4, 1],
              "threshold": 0.3}
    two = EnsembleClassifier([_Fixed([[0.1], [0.6]]), _Fixed([[0.3], [0.2]])], binary)
    frame = two.predict(None, images)
    np.testing.assert_allclose(frame["prob_p"], [0.2, 0.4], atol=1e-6)
    assert list(frame["label"]) == ["n", "p"]  # 0.4 >= the stored 0.3, argmax would say n
