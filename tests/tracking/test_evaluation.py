"""The evaluation report: calibration fitted on validation outputs, everything measured on a
separate test split, operating points, tags and metrics for MLflow, readable figures."""

import json

import numpy as np
import pytest
from figure_text import assert_readable

from tunelab.tracking import clinical_metrics as cm
from tunelab.tracking import evaluation as ev


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def hinge_head(n, seed):
    """A binary tanh head trained with hinge loss: outputs are margins in [-1, 1], and
    (m + 1) / 2 or sigmoid(m) of them are far from P(y = 1) = sigmoid(2.5 x)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-2.5 * x))).astype(int)
    return y, np.tanh(1.2 * x).reshape(-1, 1)


@pytest.fixture(scope="module")
def binary_evaluation():
    y_val, out_val = hinge_head(800, seed=1)
    y_test, out_test = hinge_head(400, seed=2)
    calibration = ev.fit_calibration(y_val, out_val, loss="hinge",
                                     threshold={"sensitivity": 0.9})
    result = ev.evaluate(y_test, out_test, ["normal", "pneumonia"], calibration,
                         n_resamples=500)
    return calibration, result, (y_test, out_test)


def test_calibration_fits_on_validation_and_helps_on_test(binary_evaluation):
    calibration, result, _ = binary_evaluation
    assert calibration.threshold.sensitivity >= 0.9 and calibration.n_fit == 800
    cal = result.report["calibration"]
    assert cal["ece_after_on_test"] < cal["ece_before_on_test"] / 2
    assert cal["nll_after_on_test"] < cal["nll_before_on_test"]
    assert "not fitted on (validation)" in cal["ece"]


def test_operating_points_match_a_direct_computation(binary_evaluation):
    calibration, result, (y_test, out_test) = binary_evaluation
    points = result.report["operating_points"]
    assert list(points) == ["stored", "0.5"] and result.primary == "stored"
    probs = calibration.probabilities(out_test)
    for label, threshold in (("stored", calibration.threshold.threshold), ("0.5", 0.5)):
        direct = cm.classification_metrics(y_test, probs, threshold=threshold,
                                           class_names=["normal", "pneumonia"])
        for metric, value in direct.items():
            assert points[label]["metrics"][metric]["estimate"] == pytest.approx(value)
    stored = points["stored"]
    assert stored["rule"] == "sensitivity" and stored["target"] == 0.9
    assert stored["fitted_on"]["sensitivity"] >= 0.9 and stored["fitted_on"]["n"] == 800
    achieved = stored["achieved_sensitivity_on_test"]
    assert achieved["low"] <= achieved["estimate"] <= achieved["high"]
    assert stored["target_met_on_test"] == (achieved["estimate"] >= 0.9)
    # a sensitivity target moves the threshold below 0.5 here: more sensitive than 0.5
    assert stored["metrics"]["sensitivity"]["estimate"] > points["0.5"]["metrics"][
        "sensitivity"]["estimate"]
    assert np.array_equal(calibration.predict(out_test),
                          (probs[:, 1] >= calibration.threshold.threshold).astype(int))


def test_report_tags_and_metrics_are_what_mlflow_takes(binary_evaluation):
    calibration, result, _ = binary_evaluation
    report = json.loads(json.dumps(result.report))  # JSON-ready, NaN aside
    assert report["split"] == {"name": "test", "n": 400, "class_counts": report["split"][
        "class_counts"], "warning": None}
    assert "stratified percentile bootstrap, 500 resamples" in report["bootstrap"]["method"]
    tags = ev.version_tags(result)
    auc = result.report["operating_points"]["stored"]["metrics"]["roc_auc"]
    assert tags["eval.test.roc_auc"] == (f"{auc['estimate']:.3f} (95% CI {auc['low']:.3f}-"
                                         f"{auc['high']:.3f})")
    assert {"eval.test.sensitivity", "eval.test.specificity", "eval.test.ppv",
            "eval.test.npv", "eval.test.threshold", "eval.test.ece",
            "eval.test.interval_method"} <= set(tags)
    assert all(isinstance(v, str) and len(v) < 5000 for v in tags.values())
    metrics = ev.flat_metrics(result)
    assert metrics["test_stored_sensitivity"] == pytest.approx(
        result.report["operating_points"]["stored"]["metrics"]["sensitivity"]["estimate"])
    assert {"test_05_roc_auc_low", "test_stored_npv_high", "test_ece_after",
            "test_images"} <= set(metrics)
    # the calibration travels as a dict and comes back identical
    again = ev.Calibration.from_dict(json.loads(json.dumps(calibration.to_dict())))
    _, _, (_, out_test) = binary_evaluation
    assert np.allclose(again.probabilities(out_test), calibration.probabilities(out_test))
    assert again.threshold == calibration.threshold


def test_figures_are_readable(binary_evaluation):
    _, result, _ = binary_evaluation
    assert set(result.figures) == {f"evaluation/{n}.png" for n in (
        "roc_curve", "precision_recall_curve", "reliability_diagram", "confusion_matrix")}
    for name, fig in result.figures.items():
        assert_readable(fig), name
    assert_readable(result.figures["evaluation/roc_curve.png"],
                    ["stored (sens >= 0.9)", "pneumonia (positive)"])


def test_multiclass_small_test_split_warns_and_uses_argmax():
    rng = np.random.default_rng(4)

    def split(n):
        z = rng.normal(size=(n, 3)) * 1.5
        y = (softmax(z).cumsum(axis=1) > rng.random(n)[:, None]).argmax(axis=1)
        return y, softmax(4 * z)  # an over-confident softmax head

    y_val, p_val = split(900)
    y_test, p_test = split(150)
    with pytest.raises(ValueError, match="two classes only"):
        ev.fit_calibration(y_val, p_val, loss="categorical_crossentropy", threshold="youden")
    calibration = ev.fit_calibration(y_val, p_val, loss="categorical_crossentropy")
    assert calibration.calibrator.temperature == pytest.approx(4.0, rel=0.25)
    result = ev.evaluate(y_test, p_test, ["benign", "malignant", "normal"], calibration,
                         n_resamples=300)
    assert list(result.report["operating_points"]) == ["argmax"]
    assert result.warning and "150 images" in result.warning
    assert result.report["split"]["warning"] == result.warning
    tags = ev.version_tags(result)
    assert tags["eval.test.warning"] == result.warning and "eval.test.threshold" not in tags
    assert "eval.test.sensitivity" not in tags and "eval.test.balanced_accuracy" in tags
    assert "test_argmax_roc_auc_malignant" in ev.flat_metrics(result)
    cal = result.report["calibration"]
    assert cal["ece_after_on_test"] < cal["ece_before_on_test"]
    for fig in result.figures.values():
        assert_readable(fig)


def test_platt_option_and_bad_input():
    y_val, out_val = hinge_head(600, seed=5)
    calibration = ev.fit_calibration(y_val, out_val, loss="hinge", method="platt",
                                     threshold="youden")
    assert calibration.calibrator.kind == "platt" and calibration.threshold.rule == "youden"
    y_test, out_test = hinge_head(300, seed=6)
    result = ev.evaluate(y_test, out_test, ["a", "b"], calibration, n_resamples=200,
                         figures=False)
    assert result.figures == {}
    cal = result.report["calibration"]
    assert cal["ece_after_on_test"] < cal["ece_before_on_test"]
    with pytest.raises(ValueError, match="unknown calibration method"):
        ev.fit_calibration(y_val, out_val, loss="hinge", method="isotonic")
    with pytest.raises(ValueError, match="3 class names"):
        ev.evaluate(y_test, out_test, ["a", "b", "c"], calibration, figures=False)
    with pytest.raises(ValueError, match="one output per image"):
        ev.fit_calibration(y_val, np.ones((600, 2)), loss="hinge")


def test_cross_fitted_ece_is_each_part_calibrated_without_itself():
    """The after-calibration ECE of the fitting data, measured out of sample: every case's
    probabilities come from a temperature fitted on the other parts."""
    y, out = hinge_head(600, seed=7)
    calibration = ev.fit_calibration(y, out, loss="hinge")
    assert calibration.cross_fit_parts == ev.CROSS_FIT_PARTS == 5
    # the same parts, by hand: each class dealt round the parts in a seeded order
    rng = np.random.default_rng(0)
    part = np.empty(len(y), dtype=int)
    for c in (0, 1):
        rows = rng.permutation(np.flatnonzero(y == c))
        part[rows] = (np.arange(len(rows)) + c) % 5
    logits = cm.logits_from_outputs(out, "hinge")
    probs = np.empty((len(y), 2))
    for j in range(5):
        held = part == j
        assert 0 < held.sum() < len(y) and set(y[held]) == {0, 1}
        probs[held] = cm.fit_temperature(logits[~held], y[~held]).apply(logits[held])
    direct = cm.expected_calibration_error(y, probs)
    assert calibration.ece_cross_fitted_after == pytest.approx(direct)
    # out of sample, so not below the in-sample value by luck of the fit, and well below the
    # margins' own ECE (a deliberately miscalibrated head)
    assert calibration.ece_cross_fitted_after < calibration.ece_fit_before / 2
    assert calibration.ece_cross_fitted_after != calibration.ece_fit_after
    stored = ev.Calibration.from_dict(json.loads(json.dumps(calibration.to_dict())))
    assert stored.ece_cross_fitted_after == pytest.approx(direct)
    # a class with a single case cannot be left out of any part's fit: no cross-fitted value
    few = np.array([0] * 20 + [1])
    lone = ev.fit_calibration(few, np.linspace(-1, 1, 21)[:, None], loss="hinge")
    assert lone.cross_fit_parts == 0 and np.isnan(lone.ece_cross_fitted_after)


def test_evaluating_the_calibrations_own_split_says_its_ece_is_in_sample(binary_evaluation):
    calibration, _, (y_test, out_test) = binary_evaluation
    result = ev.evaluate(y_test, out_test, ["normal", "pneumonia"], calibration,
                         split="validation", n_resamples=100, figures=False,
                         fitted_on_split=True)
    cal = result.report["calibration"]
    assert cal["ece_after_in_sample"] is True
    assert "in sample" in cal["ece"] and "not fitted on" not in cal["ece"]
    from tunelab.tracking.model_card import known_limits

    limits = known_limits({"val": {"a": 10}}, evaluation=result.report,
                          calibration=calibration.to_dict())
    assert any("calibration was fitted on" in line for line in limits)
