"""A champion's clinical evaluation: calibrated probabilities, operating points, intervals,
figures, in one report.

Two steps, on two different sets of images, as a clinical paper needs them:

1. :func:`fit_calibration` on **out-of-sample** predictions (the validation split, or the
   out-of-fold predictions of a cross-validated study): temperature scaling (or Platt
   scaling, binary) and, for two classes, the stored operating point
   (``registry.threshold``: ``accuracy``, ``youden`` or ``{sensitivity: 0.9}``), fitted on the
   calibrated probabilities. The result is a :class:`Calibration`, serializable to a dict so
   it can travel inside the logged model and be re-applied there with numpy alone.
2. :func:`evaluate` on the **evaluated split** (the test split, never used for selection or
   calibration): the calibrated probabilities' ROC AUC, accuracy, balanced accuracy and per
   class sensitivity, specificity, PPV and NPV, each with a stratified bootstrap interval,
   at the stored threshold and at 0.5 (two classes) or at argmax (more); ECE before and
   after calibration, measured on this split; the small-sample warning; the figures.

Only calibrated outputs are called probabilities here (``prob_*`` downstream); the raw head
outputs are "outputs", their log-scale version "logits".

Why not ``mlflow.models.evaluate``: its default classifier evaluator computes point metrics
(accuracy, precision, recall, F1, ROC AUC, log loss) and its own plots at a fixed 0.5 or
argmax rule, with no confidence intervals, no stratified bootstrap, no calibration fitted
out of sample and no fitted operating point, so everything the issue asks for would still be
computed here; calling it as well would log a second, differently defined set of the same
names (its ``recall_score`` is our sensitivity of one class only) and needs a model or a
predictions frame run through it. The evaluation run is logged with plain MLflow calls by
the shell instead (see :func:`version_tags` and :func:`flat_metrics`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import clinical_metrics as cm

CALIBRATION_METHODS = ("temperature", "platt")


@dataclass(frozen=True)
class Calibration:
    """How raw head outputs become probabilities and, for two classes, decisions.

    ``loss`` names the head (see :func:`clinical_metrics.logits_from_outputs`);
    ``calibrator`` maps its logits to probabilities; ``threshold`` (two classes, optional) is
    the stored operating point on the calibrated ``P(positive)``, with what it achieved on
    the predictions it was fitted on."""

    loss: str | None
    calibrator: cm.TemperatureScaling | cm.PlattScaling
    threshold: cm.ThresholdFit | None = None
    positive: int = 1
    n_fit: int = 0
    fitted_on: str = "validation"
    ece_fit_before: float = math.nan
    ece_fit_after: float = math.nan  # in sample: the calibrator was fitted on these cases
    ece_cross_fitted_after: float = math.nan  # each case calibrated by a calibrator fitted
    cross_fit_parts: int = 0  # on the other parts of the fitting data (out of sample)

    def logits(self, outputs: Any) -> np.ndarray:
        return cm.logits_from_outputs(outputs, self.loss)

    def probabilities(self, outputs: Any) -> np.ndarray:
        """Calibrated class probabilities ``(n, k)`` of raw head outputs."""
        return self.calibrator.apply(self.logits(outputs))

    def predict(self, outputs: Any) -> np.ndarray:
        """Class ids: the stored threshold on ``P(positive)`` if any, else argmax."""
        threshold = None if self.threshold is None else self.threshold.threshold
        return cm.predict_labels(self.probabilities(outputs), threshold=threshold,
                                 positive=self.positive)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; with the formulas, so that a model can re-apply it without tunelab."""
        return {"loss": self.loss, "calibrator": self.calibrator.to_dict(),
                "threshold": None if self.threshold is None else self.threshold.to_dict(),
                "positive": self.positive, "n_fit": self.n_fit, "fitted_on": self.fitted_on,
                "ece_fit_before": self.ece_fit_before, "ece_fit_after": self.ece_fit_after,
                "ece_cross_fitted_after": self.ece_cross_fitted_after,
                "cross_fit_parts": self.cross_fit_parts,
                "decision": ("argmax of the calibrated probabilities" if self.threshold is None
                             else "predict the positive class when its calibrated "
                                  "probability >= threshold")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        t = data.get("threshold")
        threshold = None if t is None else cm.ThresholdFit(
            t["rule"], float(t["threshold"]), float(t["sensitivity"]),
            float(t["specificity"]), float(t["accuracy"]), int(t["n"]), int(t["n_positive"]),
            None if t.get("target") is None else float(t["target"]))
        return cls(data.get("loss"), cm.calibrator_from_dict(data["calibrator"]), threshold,
                   int(data.get("positive", 1)), int(data.get("n_fit", 0)),
                   str(data.get("fitted_on", "validation")),
                   float(data.get("ece_fit_before", math.nan)),
                   float(data.get("ece_fit_after", math.nan)),
                   float(data.get("ece_cross_fitted_after", math.nan)),
                   int(data.get("cross_fit_parts", 0)))


def fit_calibration(y_true: Any, outputs: Any, *, loss: str | None,
                    method: str = "temperature", threshold: Any = None, positive: int = 1,
                    fitted_on: str = "validation", n_bins: int = 15) -> Calibration:
    """Fit the calibration (and, for two classes, the operating point ``threshold``: a rule
    of :func:`clinical_metrics.fit_threshold`) on out-of-sample predictions.

    The operating point is fitted on the calibrated probabilities, so that it is a threshold
    on the same ``P(positive)`` the model reports. ECE on the fitting data: before (the
    head's own softmax, nothing fitted: out of sample as the predictions are), after in
    sample (``ece_fit_after``, optimistic) and after cross-fitted
    (``ece_cross_fitted_after``: :func:`cross_fitted_probabilities`, each case calibrated
    without itself); :func:`evaluate` measures ECE on a split not used here."""
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration method {method!r}: one of "
                         f"{', '.join(CALIBRATION_METHODS)}")
    logits = cm.logits_from_outputs(outputs, loss)
    if threshold is not None and logits.shape[1] != 2:
        raise ValueError(f"registry.threshold applies to two classes only; this model has "
                         f"{logits.shape[1]} (the decision is argmax)")
    def fit_one(z: np.ndarray, y: np.ndarray):
        if method == "platt":
            return cm.fit_platt(z, y, positive=positive)
        return cm.fit_temperature(z, y)

    calibrator = fit_one(logits, y_true)
    probs = calibrator.apply(logits)
    y = cm.check_labels(y_true, logits.shape[1])
    fit = None
    if threshold is not None:
        fit = cm.fit_threshold(y, probs[:, positive], threshold, positive=positive)
    before = cm.expected_calibration_error(y, _softmax(logits), n_bins)
    after = cm.expected_calibration_error(y, probs, n_bins)
    crossed, parts = cross_fitted_probabilities(y, logits, fit_one)
    cross_after = (math.nan if crossed is None
                   else cm.expected_calibration_error(y, crossed, n_bins))
    return Calibration(loss, calibrator, fit, positive, len(y), fitted_on, before, after,
                       cross_after, parts)


CROSS_FIT_PARTS = 5


def cross_fitted_probabilities(y: np.ndarray, logits: np.ndarray, fit, *,
                               n_parts: int = CROSS_FIT_PARTS, seed: int = 0,
                               ) -> tuple[np.ndarray | None, int]:
    """Calibrated probabilities of the fitting data, each case's from a calibrator
    ``fit(logits, y)`` fitted on the other parts: ``n_parts`` stratified, seeded parts
    (fewer when the data are few). Returns ``(probabilities, parts)``, or ``(None, 0)`` when
    a class has fewer than two cases (no part would leave it in the fit)."""
    counts = np.bincount(y, minlength=logits.shape[1])
    if counts.min() < 2:
        return None, 0
    n_parts = int(min(n_parts, len(y)))
    rng = np.random.default_rng(seed)
    part = np.empty(len(y), dtype="int64")
    for c in range(logits.shape[1]):  # stratified: each class dealt round the parts
        rows = rng.permutation(np.flatnonzero(y == c))
        part[rows] = (np.arange(len(rows)) + c) % n_parts
    out = np.empty((len(y), logits.shape[1]))
    for j in range(n_parts):
        held = part == j
        if held.any():
            out[held] = fit(logits[~held], y[~held]).apply(logits[held])
    return out, n_parts


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Evaluation:
    """The report (JSON-ready), the figures by artifact name, and the small-sample warning."""

    report: dict[str, Any]
    figures: dict[str, Any] = field(default_factory=dict)
    warning: str | None = None

    @property
    def primary(self) -> str:
        """The operating point the headline numbers are read at."""
        return self.report["primary_operating_point"]


def _nll(y: np.ndarray, probs: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-15, 1.0))))


def evaluate(y_true: Any, outputs: Any, class_names: Sequence[str], calibration: Calibration,
             *, split: str = "test", n_resamples: int = 2000, confidence: float = 0.95,
             seed: int = 0, n_bins: int = 15, figures: bool = True,
             fitted_on_split: bool = False) -> Evaluation:
    """Evaluate raw head ``outputs`` on the evaluated split with labels ``y_true``.

    Operating points: two classes, ``stored`` (the calibration's threshold, when it has one)
    and ``0.5``, on the calibrated ``P(positive)``; more classes, ``argmax``. Every point gets
    the same stratified bootstrap (same seed: the same resamples), so their intervals are
    comparable. ECE before (softmax of the head's logits) and after calibration is measured
    here, on data the calibration was not fitted on; ``fitted_on_split``: the caller says
    this split's images were among those the calibration was fitted on (the validation
    split), and the report says its after-calibration ECE is in sample."""
    names = [str(c) for c in class_names]
    logits = calibration.logits(outputs)
    raw = _softmax(logits)
    probs = calibration.calibrator.apply(logits)
    y, probs = cm.check_inputs(y_true, probs)
    k = probs.shape[1]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a model with {k} outputs")
    positive = calibration.positive
    warning = cm.small_sample_warning(y, names)

    points: dict[str, float | None]
    if k == 2:
        points = {}
        if calibration.threshold is not None:
            points["stored"] = calibration.threshold.threshold
        points["0.5"] = 0.5
    else:
        points = {"argmax": None}
    primary = next(iter(points))
    operating: dict[str, Any] = {}
    results: dict[str, cm.BootstrapResult] = {}
    for label, threshold in points.items():
        result = cm.bootstrap_intervals(y, probs, threshold=threshold, positive=positive,
                                        class_names=names, n_resamples=n_resamples,
                                        confidence=confidence, seed=seed)
        results[label] = result
        entry: dict[str, Any] = {"threshold": threshold, "decision_rule": result.decision_rule,
                                 "metrics": {m: iv.to_dict()
                                             for m, iv in result.intervals.items()}}
        if label == "stored":
            fit = calibration.threshold
            entry["rule"] = fit.rule
            entry["target"] = fit.target
            entry["fitted_on"] = {"split": calibration.fitted_on, **fit.to_dict()}
            entry[f"achieved_sensitivity_on_{split}"] = result["sensitivity"].to_dict()
            if fit.target is not None:
                entry["target_met_on_" + split] = bool(
                    result["sensitivity"].estimate >= fit.target)
        operating[label] = entry

    rel_before = cm.reliability(y, raw, n_bins)
    rel_after = cm.reliability(y, probs, n_bins)
    counts = {n: int(c) for n, c in zip(names, np.bincount(y, minlength=k), strict=True)}
    head = results[primary]
    headline_keys = ["roc_auc", "accuracy", "balanced_accuracy"]
    if k == 2:
        headline_keys += ["sensitivity", "specificity", "ppv", "npv"]
    report: dict[str, Any] = {
        "split": {"name": split, "n": len(y), "class_counts": counts, "warning": warning},
        "class_names": names,
        "positive_class": names[positive] if k == 2 else None,
        "primary_operating_point": primary,
        "operating_points": operating,
        "calibration": {
            **calibration.to_dict(),
            f"ece_before_on_{split}": rel_before.ece, f"ece_after_on_{split}": rel_after.ece,
            f"nll_before_on_{split}": _nll(y, raw), f"nll_after_on_{split}": _nll(y, probs),
            "ece": f"top-label, {n_bins} equal-width bins, measured on the {split} split, "
                   + (f"whose images the calibration was fitted on ({calibration.fitted_on}):"
                      " the value after calibration is in sample, optimistic; the "
                      "cross-fitted ECE on the fitting data, ece_cross_fitted_after, is not"
                      if fitted_on_split else
                      f"which the calibration was not fitted on ({calibration.fitted_on})"),
            "ece_after_in_sample": bool(fitted_on_split),
            "reliability_before": rel_before.to_dict(),
            "reliability_after": rel_after.to_dict(),
        },
        "bootstrap": {"method": head.method, "n_resamples": head.n_resamples,
                      "confidence": head.confidence, "seed": head.seed},
        "headline": {key: str(head[key]) for key in headline_keys},
    }
    figs: dict[str, Any] = {}
    if figures:
        from . import clinical_plots as plots

        marks = {("stored " + _rule_text(calibration.threshold) if label == "stored"
                  else label): t for label, t in points.items() if t is not None}
        title = f"{split}"
        figs["evaluation/roc_curve.png"] = plots.roc_curve(
            y, probs, names, positive=positive, intervals=head, operating_points=marks or None,
            title=f"ROC curve, {title}")
        figs["evaluation/precision_recall_curve.png"] = plots.precision_recall_curve(
            y, probs, names, positive=positive, operating_points=marks or None,
            title=f"Precision-recall, {title}")
        figs["evaluation/reliability_diagram.png"] = plots.reliability_diagram(
            y, probs, n_bins=n_bins, uncalibrated=raw,
            title=f"Reliability, {title}, {calibration.calibrator.kind} scaling")
        pred = cm.predict_labels(probs, threshold=points[primary], positive=positive)
        rule = ("argmax" if points[primary] is None
                else f"P({names[positive]}) >= {points[primary]:.3g}")
        figs["evaluation/confusion_matrix.png"] = plots.confusion_matrix(
            y, pred, names, title=f"Confusion matrix, {title}\n{rule}")
    return Evaluation(report, figs, warning)


def _rule_text(fit: cm.ThresholdFit | None) -> str:
    if fit is None:
        return ""
    return f"(sens >= {fit.target:g})" if fit.rule == "sensitivity" else f"({fit.rule})"


_BAD_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")


def metric_key(name: str) -> str:
    """A name MLflow accepts as a metric or tag key (letters, digits, ``_-. /``)."""
    return _BAD_KEY.sub("_", name)


def flat_metrics(evaluation: Evaluation, prefix: str | None = None) -> dict[str, float]:
    """Every metric of every operating point, with its interval, as MLflow metrics:
    ``<split>_<point>_<metric>``, ``..._low``, ``..._high`` (NaN values left out)."""
    report = evaluation.report
    split = report["split"]["name"]
    prefix = f"{split}_" if prefix is None else prefix
    out: dict[str, float] = {}
    for point, entry in report["operating_points"].items():
        tag = "stored" if point == "stored" else point.replace(".", "")
        for metric, iv in entry["metrics"].items():
            for part, suffix in (("estimate", ""), ("low", "_low"), ("high", "_high")):
                value = iv[part]
                if value is not None and not (isinstance(value, float) and math.isnan(value)):
                    out[metric_key(f"{prefix}{tag}_{metric}{suffix}")] = float(value)
    cal = report["calibration"]
    out[metric_key(f"{prefix}ece_before")] = float(cal[f"ece_before_on_{split}"])
    out[metric_key(f"{prefix}ece_after")] = float(cal[f"ece_after_on_{split}"])
    out[metric_key(f"{prefix}images")] = float(report["split"]["n"])
    return out


def version_tags(evaluation: Evaluation, prefix: str = "eval.") -> dict[str, str]:
    """The headline numbers with their intervals, as model-version tags
    (``eval.test.roc_auc = "0.912 (95% CI 0.881-0.940)"``), with the threshold, ECE, the
    bootstrap's method and the small-sample warning."""
    report = evaluation.report
    split = report["split"]["name"]
    base = f"{prefix}{split}."
    cal = report["calibration"]
    primary = report["operating_points"][evaluation.primary]
    level = f"{report['bootstrap']['confidence']:.0%} CI"
    tags = {}
    for key in report["headline"]:
        iv = primary["metrics"][key]
        tags[metric_key(base + key)] = (f"{iv['estimate']:.3f} ({level} {iv['low']:.3f}-"
                                        f"{iv['high']:.3f})")
    tags[base + "operating_point"] = primary["decision_rule"]
    tags[base + "n"] = str(report["split"]["n"])
    tags[base + "ece"] = (f"{cal[f'ece_after_on_{split}']:.3f} calibrated "
                          f"({cal['calibrator']['kind']}), "
                          f"{cal[f'ece_before_on_{split}']:.3f} before")
    tags[base + "interval_method"] = report["bootstrap"]["method"]
    if evaluation.primary == "stored":
        tags[base + "threshold"] = f"{primary['threshold']:.6g} ({primary['rule']})"
    if evaluation.warning:
        tags[base + "warning"] = evaluation.warning
    return tags


__all__ = ["CALIBRATION_METHODS", "Calibration", "Evaluation", "evaluate", "fit_calibration",
           "flat_metrics", "metric_key", "version_tags"]
