"""How a study looks in the MLflow UI: the experiment's kind, the runs view, run notes, links.

Read from MLflow 3.17's own source (``mlflow/server/js``, the ``ExperimentKind`` enum and the
experiment page):

- The experiment tag ``mlflow.experimentKind`` holds the experiment's kind, one of
  ``EXPERIMENT_KINDS``; the UI's kind selector writes ``custom_model_development`` when a
  user picks "Model training" ("Machine learning"). tunelab writes it on every experiment it
  creates.
- Which page the UI opens is decided by its "GenAI / Model training" switch, which it
  remembers per browser (local storage ``mlflow.workflowType``, default GenAI) and which the
  URL parameter ``workflowType=machine_learning`` overrides. The links tunelab prints carry
  it, so they open on the runs table even in a browser that never clicked the switch.
- A saved view is the experiment tag ``mlflow.sharedViewState.<key>``: a JSON envelope
  ``{name, createdAt, updatedAt, state}`` whose ``state`` is the JSON of the runs table's
  search facets and columns; ``?viewStateShareKey=<key>`` opens it, and the "Views" menu
  lists it. The UI ignores row expansion in a saved view, so the study's parent run still
  opens collapsed.
- A run's note (its "Description", rendered as markdown) is the tag ``mlflow.note.content``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
EXPERIMENT_KINDS = ("genai_development", "custom_model_development",
                    "genai_development_inferred", "custom_model_development_inferred",
                    "no_inferred_type", "finetuning", "forecasting", "classification",
                    "regression", "automl", "")
NOTE_TAG = "mlflow.note.content"
RUN_NAME_TAG = "mlflow.runName"
VIEW_KEY = "tunelab"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
VIEW_NAME = "tunelab: trials"
MAX_VIEW_VALUE = 20_000  # MLflow's limit for an experiment tag's value
MAX_NOTE = 8000  # ... and for a run tag's
# summary metrics every trial run has, after the objective's own best_<metric>
VIEW_METRICS = ("gap_accuracy", "gap_loss", "best_epoch", "epochs_trained")


def runs_url(base_url: str, experiment_id: str | None) -> str:
    """The study's runs table, in model-training mode, with tunelab's columns."""
    base = base_url.rstrip("/")
    if experiment_id is None:
        return f"{base}/#/experiments?{urlencode({'workflowType': 'machine_learning'})}"
    query = urlencode({"workflowType": "machine_learning", "viewStateShareKey": VIEW_KEY})
    return f"{base}/#/experiments/{experiment_id}/runs?{query}"


def runs_view(params: Sequence[str], metric: str, direction: str = "maximize") -> str:
    """The value of ``VIEW_TAG``: the run's state, the objective's best-epoch metric, the gap
    and the searched parameters as columns, best trial first."""
    columns = ["tags.`tunelab.state`", f"metrics.`best_{metric}`",
               *(f"metrics.`{m}`" for m in VIEW_METRICS)]
    columns += [f"params.`{p}`" for p in params]
    state = {"searchFilter": "", "orderByKey": f"metrics.`best_{metric}`",
             "orderByAsc": direction == "minimize", "startTime": "ALL",
             "lifecycleFilter": "Active", "modelVersionFilter": "All Runs",
             "datasetsFilter": [], "selectedColumns": columns}
    now = int(time.time() * 1000)
    envelope = {"name": VIEW_NAME, "createdAt": now, "updatedAt": now,
                "state": json.dumps(state)}
    text = json.dumps(envelope)
    while len(text) > MAX_VIEW_VALUE and state["selectedColumns"]:  # very many parameters
        state["selectedColumns"].pop()
        envelope["state"] = json.dumps(state)
        text = json.dumps(envelope)
    return text


def searched_names(space: Mapping[str, Any] | None, prefix: str = "") -> list[str]:
    """Parameter names a study's space (as in the study file) searches: lists of several
    choices and ranges; a family's own sub-space gives ``family.param``."""
    names: list[str] = []
    for key, value in (space or {}).items():
        if isinstance(value, list) and len(value) > 1:
            names.append(prefix + key)
        elif isinstance(value, Mapping) and ("low" in value or "high" in value):
            names.append(prefix + key)
        elif isinstance(value, Mapping) and not prefix:
            names += searched_names(value, prefix=f"{key}.")
    return names


def short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def params_text(params: Mapping[str, Any], width: int | None = None) -> str:
    text = ", ".join(f"{k}={short(v)}" for k, v in params.items())
    if width is not None and len(text) > width:
        text = text[:width - 1] + "\u2026"
    return text


def _number(value: Any, digits: str = ".4f") -> str:
    return format(value, digits) if isinstance(value, (int, float)) else "-"


def trial_note(*, number: int, state: str, params: Mapping[str, Any],
               summary: Mapping[str, Any] | None, metric: str | None, reason: str = "",
               study_run_id: str | None = None) -> str:
    """A trial run's markdown note: what was tried, how it ended, where it was best."""
    s = summary or {}
    lines = [f"### Trial {number}: {state.lower()}" + (f" ({reason})" if reason else ""), ""]
    if s.get("best_epoch") is not None:
        best = f"best epoch **{int(s['best_epoch'])}**"
        if s.get("epochs_trained") is not None:
            best += f" of {int(s['epochs_trained'])} trained"
        parts = [best]
        if metric and f"best_{metric}" in s:
            parts.append(f"{metric} **{_number(s[f'best_{metric}'])}**")
        if "gap_accuracy" in s:
            parts.append("gap (train - validation accuracy at the best epoch) "
                         f"**{_number(s['gap_accuracy'])}**")
        if s.get("overfitting"):
            parts.append("validation loss rising while training loss falls")
        lines += ["; ".join(parts) + ".", ""]
    if params:
        lines += ["| parameter | value |", "|---|---|"]
        lines += [f"| {k} | {short(v)} |" for k, v in params.items()]
        lines.append("")
    if study_run_id:
        lines.append(f"Study run: `{study_run_id}`.")
    return "\n".join(lines).strip()[:MAX_NOTE]


def study_note(*, study_name: str, metric: str, direction: str, counts: Mapping[str, int],
               top: Sequence[Mapping[str, Any]], figures: Sequence[str] = (),
               notes: Sequence[str] = ()) -> str:
    """The parent run's markdown note: the trial counts and the top trials.

    ``top``: dicts with number, value, gap, best_epoch, epochs, state and params."""
    better = "higher" if direction == "maximize" else "lower"
    lines = [f"### Study {study_name}", "",
             f"{counts.get('n_complete', 0)} complete, {counts.get('n_pruned', 0)} pruned, "
             f"{counts.get('n_fail', 0)} failed trials; objective: best-epoch {metric} "
             f"({better} is better).", ""]
    if top:
        lines += [f"| trial | {metric} | gap | best epoch | parameters |",
                  "|---|---|---|---|---|"]
        for row in top:
            epochs = (f"{row.get('best_epoch')}/{row.get('epochs')}"
                      if row.get("best_epoch") is not None else "-")
            lines.append(f"| {row['number']} | {_number(row.get('value'))} | "
                         f"{_number(row.get('gap'), '.3f')} | {epochs} | "
                         f"{params_text(row.get('params') or {}, 200)} |")
        lines.append("")
        lines.append("gap: train minus validation accuracy at the best epoch (the larger, the "
                     "more the model overfits).")
        lines.append("")
    if "overfitting" in figures:
        lines.append("Which model overfits: `study/overfitting.png` (train solid, validation "
                     "dashed, on shared axes, with each trial's gap).")
    if "interactive" in figures:
        lines.append("Interactive study plots (zoom, hover): `study/interactive.html`.")
    for note in notes:
        lines.append(f"- {note}")
    return "\n".join(lines).strip()[:MAX_NOTE]
