"""Log trials that never reached MLflow (tracking was down) from what Optuna kept."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .runs import TRIAL_TAG, StudyTracker

TERMINAL = ("FINISHED", "FAILED", "KILLED")
NOT_KEPT = ("augmentation.png and tensorboard/ (drawn from the training images, and written, "
            "while the trial trained; the Optuna storage keeps neither)")


def sync_trials(tracker: StudyTracker, records: Iterable[Mapping[str, Any]], *,
                config: Mapping[str, Any], data_info: Mapping[str, Any]) -> list[int]:
    """Each record: number, state, params, history, summary, reason, seed, model_summary and
    confusion (validation counts[true][predicted]). Returns the trial numbers logged. A run
    left RUNNING by a failed attempt is replaced, never duplicated. A logged run has what a
    live one has (curves, metrics, confusion matrix, model summary) except the artifacts its
    ``tunelab.synced.not_restored`` tag names, with the reason."""
    existing: dict[int, Any] = {}
    for run in tracker.trial_runs():
        existing[int(run.data.tags[TRIAL_TAG])] = run
    logged = []
    for record in records:
        number = int(record["number"])
        run = existing.get(number)
        if run is not None and run.info.status in TERMINAL:
            continue
        if run is not None:
            tracker.client.delete_run(run.info.run_id)
        confusion = record.get("confusion")
        missing = [NOT_KEPT]
        if confusion is None and record["state"] == "COMPLETE":
            missing.append("confusion_matrix.png (the trial ran before tunelab kept its "
                           "validation predictions)")
        if not record.get("model_summary"):
            missing.append("model_summary.txt (the trial ran before tunelab kept it)")
        trial_run = tracker.trial_run(number, {"model": config.get("model"), **record["params"]},
                                      seed=record.get("seed", 0), config=config,
                                      data_info=data_info,
                                      extra_tags={"tunelab.synced": "true",
                                                  "tunelab.synced.not_restored":
                                                      "; ".join(missing)})
        if trial_run.run_id is None:
            raise RuntimeError(f"tracking is still unavailable at {tracker.tracking_uri}")
        history = record.get("history") or {}
        n_epochs = max((len(v) for v in history.values()), default=0)
        for epoch in range(n_epochs):
            trial_run.log_metrics({k: v[epoch] for k, v in history.items() if epoch < len(v)},
                                  step=epoch + 1)  # epochs from 1, as live trials log them
        y_true, y_pred = _labels(confusion) if confusion else (None, None)
        trial_run.finish(state=record["state"], summary=record.get("summary") or None,
                         history=history or None, reason=record.get("reason", ""),
                         y_true=y_true, y_pred=y_pred,
                         class_names=data_info.get("class_names") or [
                             str(i) for i in range(len(confusion or []))],
                         model_summary=record.get("model_summary"))
        if trial_run.broken:  # known here only when the tracker logs in this process
            raise RuntimeError(f"logging trial {number} failed; see the error above")
        logged.append(number)
    return logged


def _labels(counts: list[list[int]]) -> tuple[list[int], list[int]]:
    """(y_true, y_pred) with exactly these confusion counts: the live run's matrix again."""
    y_true, y_pred = [], []
    for true, row in enumerate(counts):
        for pred, n in enumerate(row):
            y_true += [true] * int(n)
            y_pred += [pred] * int(n)
    return y_true, y_pred
