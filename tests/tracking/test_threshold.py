"""An ensemble of the top confirmed candidates as one pyfunc model: its probabilities are the
mean of its members', and a stored operating point applies to that mean. (The threshold
fitter and the single model's stored threshold are tested in test_clinical_*.py.)"""

import numpy as np


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
    probs = frame[["score_a", "score_b", "score_c"]].to_numpy()
    np.testing.assert_allclose(probs, [[0.45, 0.25, 0.3], [0.3, 0.25, 0.45]], atol=1e-6)
    assert list(frame["label"]) == ["a", "c"]
    binary = {"loss": "binary_crossentropy", "class_names": ["n", "p"], "input_shape": [4, 4, 1],
              "calibration": {"threshold": {"threshold": 0.3}, "positive": 1}}
    two = EnsembleClassifier([_Fixed([[0.1], [0.6]]), _Fixed([[0.3], [0.2]])], binary)
    frame = two.predict(None, images)
    np.testing.assert_allclose(frame["score_p"], [0.2, 0.4], atol=1e-6)
    assert list(frame["label"]) == ["n", "p"]  # 0.4 >= the stored 0.3, argmax would say n
