"""The clinical figures render, name their axes and classes, and no text overlaps or leaves
the figure: every drawn text's window extent is compared after ``fig.canvas.draw()``."""

import numpy as np
import pytest
from figure_text import assert_readable

from tunelab.tracking import clinical_metrics as cm
from tunelab.tracking import clinical_plots as cp


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def binary():
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.4).astype(int)
    p1 = 1 / (1 + np.exp(-(2.5 * y - 1.2 + rng.normal(size=300))))
    return y, np.stack([1 - p1, p1], axis=1), ["normal", "pneumonia"]


@pytest.fixture(scope="module", params=[3, 10])
def multiclass(request):
    k = request.param
    rng = np.random.default_rng(k)
    y = rng.integers(0, k, 50 * k)
    z = rng.normal(size=(len(y), k))
    z[np.arange(len(y)), y] += 2.0
    names = [f"tissue_type_{chr(65 + c)}_long" for c in range(k)]
    return y, softmax(z), names


def test_roc_curve_binary_with_intervals_and_operating_points(binary):
    y, p, names = binary
    intervals = cm.bootstrap_intervals(y, p, class_names=names, n_resamples=200)
    fit = cm.fit_threshold(y, p[:, 1], {"sensitivity": 0.9})
    fig = cp.roc_curve(y, p, names, intervals=intervals,
                       operating_points={"0.5": 0.5, "sensitivity >= 0.9": fit.threshold})
    auc = intervals["roc_auc"]
    assert_readable(fig, ["pneumonia (positive)", f"AUC {auc}", "sensitivity >= 0.9",
                          "1 - specificity", "sensitivity (true positive rate)", "n = 300"])


def test_roc_and_pr_curves_one_vs_rest(multiclass):
    y, p, names = multiclass
    assert_readable(cp.roc_curve(y, p, names), [*names, "one-vs-rest", "chance"])
    assert_readable(cp.precision_recall_curve(y, p, names),
                    [*names, "recall (sensitivity)", "precision (PPV)", "AP "])


def test_precision_recall_curve_binary(binary):
    y, p, names = binary
    fig = cp.precision_recall_curve(y, p, names, operating_points={"0.5": 0.5})
    ap = cm.pr_curves(y, p, class_names=names)[0].area
    assert_readable(fig, [f"AP {ap:.3f}", "prevalence", "0.5: t=0.5"])


def test_reliability_diagram_names_ece_before_and_after(binary):
    y, p, _ = binary
    logits = cm.logits_from_outputs(p[:, 1], "binary_crossentropy") * 3  # over-confident
    raw = softmax(logits)
    calibrated = cm.fit_temperature(logits[:150], y[:150]).apply(logits[150:])
    before = cm.expected_calibration_error(y[150:], raw[150:])
    after = cm.expected_calibration_error(y[150:], calibrated)
    fig = cp.reliability_diagram(y[150:], calibrated, uncalibrated=raw[150:])
    assert_readable(fig, [f"ECE {after:.3f} (before calibration {before:.3f})",
                          "15 equal-width bins", "confidence (highest class probability)",
                          "images", "perfect calibration"])
    assert_readable(cp.reliability_diagram(y, p, n_bins=10), ["10 equal-width bins"])


def test_confusion_matrix_with_per_class_recall(binary, multiclass):
    y, p, names = binary
    fig = cp.confusion_matrix(y, p.argmax(axis=1), names)
    matrix = cm.confusion_counts(y, p.argmax(axis=1), 2)
    recall = np.diagonal(matrix) / matrix.sum(axis=1)
    assert_readable(fig, ["recall (sensitivity)", f"{recall[0]:.2f}", f"{recall[1]:.2f}",
                          f"normal (n={matrix[0].sum()})", "predicted class", "true class",
                          str(matrix[0, 1])])
    y, p, names = multiclass
    assert_readable(cp.confusion_matrix(y, p.argmax(axis=1), names), names)


def test_a_test_that_can_fail_catches_overlap():
    """The checker itself: two titles on top of each other must be reported."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 3), layout="constrained")
    ax = fig.subplots()
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.text(0.2, 0.5, "annotation")
    ax.text(0.25, 0.52, "annotation")
    with pytest.raises(AssertionError, match="overlaps"):
        assert_readable(fig)
    fig = Figure(figsize=(2, 2), layout="constrained")
    ax = fig.subplots()
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("a title far too long for a two inch figure, surely")
    with pytest.raises(AssertionError, match="leaves the figure"):
        assert_readable(fig)
