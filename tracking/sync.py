"""Log trials that never reached MLflow (tracking was down) from what Optuna kept."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .runs import TRIAL_TAG, StudyTracker

TERMINAL = ("FINISHED", "FAILED", "KILLED")


def sync_trials(tracker: StudyTracker, records: Iterable[Mapping[str, Any]], *,
                config: Mapping[str, Any], data_info: Mapping[str, Any]) -> list[int]:
    """Each record: number, state, params, history, summary, reason, seed. Returns the trial
    numbers logged. A run left RUNNING by a failed attempt is replaced, never duplicated."""
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
        trial_run = tracker.trial_run(number, {"model": config.get("model"), **record["params"]},
                                      seed=record.get("seed", 0), config=config,
                                      data_info=data_info,
                                      extra_tags={"tunelab.synced": "true"})
        if trial_run.run_id is None:
            raise RuntimeError(f"tracking is still unavailable at {tracker.tracking_uri}")
        history = record.get("history") or {}
        n_epochs = max((len(v) for v in history.values()), default=0)
        for epoch in range(n_epochs):
            trial_run.log_metrics({k: v[epoch] for k, v in history.items() if epoch < len(v)},
                                  step=epoch)
        trial_run.finish(state=record["state"], summary=record.get("summary") or None,
                         history=history or None, reason=record.get("reason", ""))
        if trial_run.broken:  # known here only when the tracker logs in this process
            raise RuntimeError(f"logging trial {number} failed; see the error above")
        logged.append(number)
    return logged
