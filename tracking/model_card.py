"""The model card: one markdown page a lab can paste into its report or its ethics file.

Written by :func:`model_card` from plain data (the shell gathers it: the study's config, the
dataset's counts, the selection, the calibration stored in the model, the evaluation report
of :func:`tracking.evaluation.evaluate`), so it needs neither MLflow nor Keras. It goes on
the model version (its description) and into the evaluation run (``model_card.md``).

Sections: data (source, fingerprint, class counts per split, how the splits were made, the
group or patient guard), the selection procedure (search space, budget, rule, trials tried,
confirmation), the metrics with their intervals, the calibration, the operating point,
Grad-CAM examples, and the known limits (validation and test sizes, a single source, ...).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _interval(iv: Mapping[str, Any]) -> str:
    return f"{_fmt(iv.get('estimate'))} ({_fmt(iv.get('low'))} - {_fmt(iv.get('high'))})"


def _counts_table(class_counts: Mapping[str, Mapping[str, int]]) -> list[str]:
    splits = list(class_counts)
    classes: list[str] = []
    for counts in class_counts.values():
        classes += [c for c in counts if c not in classes]
    lines = ["| class | " + " | ".join(SPLIT_NAMES.get(s, s) for s in splits) + " |",
             "|---|" + "---|" * len(splits)]
    for c in classes:
        lines.append(f"| {c} | " + " | ".join(str(class_counts[s].get(c, 0)) for s in splits)
                     + " |")
    lines.append("| **total** | " + " | ".join(str(sum(class_counts[s].values()))
                                              for s in splits) + " |")
    return lines


def _metrics_table(entry: Mapping[str, Any], confidence: float) -> list[str]:
    lines = [f"| metric | estimate ({confidence:.0%} CI) |", "|---|---|"]
    for metric, iv in entry["metrics"].items():
        lines.append(f"| {metric} | {_interval(iv)} |")
    return lines


def known_limits(class_counts: Mapping[str, Mapping[str, int]], *, n_sources: int = 1,
                 evaluation: Mapping[str, Any] | None = None,
                 calibration: Mapping[str, Any] | None = None,
                 group_pattern: str | None = None, trained_on: str | None = None
                 ) -> list[str]:
    """What a reader must know before trusting the numbers, in sentences."""
    limits = []
    val = sum(class_counts.get("val", {}).values())
    test = sum(class_counts.get("test", {}).values())
    if trained_on == "train+validation":
        limits.append(f"Validation split: {val} images, pooled with train for the "
                      "cross-validated selection, the out-of-fold calibration and operating "
                      "point, and the final training.")
    else:
        limits.append(f"Validation split: {val} images (used for selection, calibration and "
                      "the operating point).")
    if test:
        small = min(class_counts["test"].values())
        limits.append(f"Test split: {test} images, smallest class {small}"
                      + (": the intervals are wide." if test < 200 or small < 30 else "."))
    else:
        limits.append("No test split: the only numbers are validation numbers, which "
                      "selection has already used (optimistic).")
    if n_sources <= 1:
        limits.append("Single source: every split comes from the same data source; "
                      "performance on other sites, scanners or populations is unknown.")
    if not group_pattern:
        limits.append("No group (patient) guard: dataset.group_pattern was not set, so "
                      "images of one patient may sit in more than one split.")
    if trained_on == "train+validation":
        limits.append("Cross-validated study: the registered model was retrained on train + "
                      "validation, so no image outside the test split is new to it. Its "
                      "calibration and operating point were fitted on the folds' out-of-fold "
                      "predictions (each image scored by the fold model that did not train "
                      "on it), then applied to the retrained model, which saw more data and "
                      "may be somewhat more confident than the fold models were.")
    if evaluation is not None and (
            evaluation.get("calibration", {}).get("ece_after_in_sample")
            or evaluation.get("split", {}).get("name") == (calibration or {}).get("fitted_on")):
        limits.append("The evaluated split is the one calibration was fitted on: ECE after "
                      "calibration is optimistic.")
    return limits


def model_card(*, title: str, model: Mapping[str, Any], data: Mapping[str, Any],
               selection: Mapping[str, Any] | None = None,
               calibration: Mapping[str, Any] | None = None,
               evaluation: Mapping[str, Any] | None = None,
               gradcam: str | None = None, limits: Sequence[str] = ()) -> str:
    """Markdown. ``model``: name, version, trial, family, params, source; ``data``: source,
    fingerprint, class_counts (split -> class -> n), splits (how they were made), group_guard;
    ``selection``: search_space, budget, rule, trials, explanation, confirmation;
    ``calibration``: the stored ``Calibration.to_dict()``; ``evaluation``: the report of
    ``tracking.evaluation.evaluate``; ``gradcam``: where the Grad-CAM figure is."""
    out = [f"# Model card: {title}", ""]
    out += ["## Model", ""]
    for key in ("name", "version", "study", "trial", "family", "source", "trained_on"):
        if model.get(key) is not None:
            out.append(f"- **{key.replace('_', ' ')}**: {model[key]}")
    if model.get("params"):
        out.append(f"- **hyperparameters**: `{json.dumps(model['params'], default=str)}`")
    out += ["", "## Data", ""]
    out.append(f"- **source**: `{data.get('source')}`")
    out.append(f"- **fingerprint**: `{data.get('fingerprint')}`")
    out.append(f"- **how the splits were made**: {data.get('splits', 'n/a')}")
    out.append(f"- **group / patient guard**: {data.get('group_guard') or 'none'}")
    if data.get("class_counts"):
        out += ["", "Class counts per split:", "", *_counts_table(data["class_counts"])]
    if selection:
        out += ["", "## Selection procedure", ""]
        if selection.get("search_space") is not None:
            space = json.dumps(selection["search_space"], default=str)
            out.append(f"- **search space**: `{space}`")
        for key in ("budget", "rule", "trials", "confirmation"):
            if selection.get(key) is not None:
                out.append(f"- **{key}**: {selection[key]}")
        if selection.get("explanation"):
            out += ["", str(selection["explanation"])]
    if evaluation:
        split = evaluation["split"]
        boot = evaluation["bootstrap"]
        out += ["", f"## Metrics on the {split['name']} split ({split['n']} images)", "",
                f"Intervals ({boot['confidence']:.0%}, {boot['n_resamples']} resamples, seed "
                f"{boot['seed']}): {boot['method']}"]
        if split.get("warning"):
            out += ["", f"> {split['warning']}"]
        for point, entry in evaluation["operating_points"].items():
            out += ["", f"### Operating point `{point}`: {entry['decision_rule']}", "",
                    *_metrics_table(entry, boot["confidence"])]
            achieved = entry.get(f"achieved_sensitivity_on_{split['name']}")
            if achieved is not None:
                target = entry.get("target")
                out += ["", f"Rule `{entry.get('rule')}`"
                        + (f" (target sensitivity {target:g})" if target is not None else "")
                        + f", fitted on {entry['fitted_on']['split']}; achieved sensitivity on "
                        f"{split['name']}: {_interval(achieved)}"
                        + ("" if target is None else
                           (" - target met" if entry.get(f"target_met_on_{split['name']}")
                            else " - target NOT met"))]
    if calibration:
        cal = calibration["calibrator"]
        params = (f"temperature {_fmt(cal.get('temperature'), 4)}" if cal["kind"] == "temperature"
                  else f"a {_fmt(cal.get('a'), 4)}, b {_fmt(cal.get('b'), 4)}")
        out += ["", "## Calibration", "",
                f"- **method**: {cal['kind']} scaling ({params}): `{cal.get('formula')}`",
                f"- **fitted on**: {calibration.get('fitted_on')} ({calibration.get('n_fit')} "
                "images, out of sample: the model that scored them did not train on them)",
                f"- **ECE on the fitting data**: {_fmt(calibration.get('ece_fit_before'))} "
                "before; after: "
                + (f"{_fmt(calibration.get('ece_cross_fitted_after'))} cross-fitted (each "
                   f"image calibrated by a calibrator fitted on the other "
                   f"{calibration.get('cross_fit_parts')} - 1 parts), "
                   if calibration.get("cross_fit_parts") else "")
                + f"{_fmt(calibration.get('ece_fit_after'))} in sample (optimistic)"]
        if evaluation:
            name = evaluation["split"]["name"]
            ev = evaluation["calibration"]
            used = ("in sample for the after value: the calibration was fitted on these "
                    "images" if ev.get("ece_after_in_sample") else "not used to fit")
            out.append(f"- **ECE on {name}** ({used}): "
                       f"{_fmt(ev.get(f'ece_before_on_{name}'))} before, "
                       f"{_fmt(ev.get(f'ece_after_on_{name}'))} after ({ev.get('ece')})")
        t = calibration.get("threshold")
        out += ["", "## Operating point", ""]
        if t:
            target = f" (target {t['target']:g})" if t.get("target") is not None else ""
            out.append(f"- **rule**: `{t['rule']}`{target}; **threshold** "
                       f"{t['threshold']:.6g} on the calibrated P(positive)")
            out.append(f"- on {calibration.get('fitted_on')}: sensitivity "
                       f"{_fmt(t['sensitivity'])}, specificity {_fmt(t['specificity'])}, "
                       f"accuracy {_fmt(t['accuracy'])} ({t['n']} images, {t['n_positive']} "
                       "positive)")
        else:
            out.append(f"- {calibration.get('decision')}")
    out += ["", "## Grad-CAM examples", "",
            gradcam or "none (the model has no convolutional layer)"]
    if limits:
        out += ["", "## Known limits", "", *[f"- {line}" for line in limits]]
    return "\n".join(out) + "\n"


__all__ = ["known_limits", "model_card"]
