"""A worker's tracker that never imports MLflow: its trial runs live in the writer process.

A worker trains; its writer process (``writer.py``, started when the worker is launched,
after its TensorFlow import) imports MLflow on the other core while the worker opens the
study and builds its first model, then opens the study's experiment and creates each trial's
run. The worker only submits calls. Measured before this: importing MLflow in the worker,
building its client and looking up the experiment and parent run put about 1.5 s on the
path to the first epoch (BENCHMARKS.md, start-up).

A trial run is named by a token the worker makes (``RemoteTrialRun``); the writer maps it to
the run it created, so the trial's epochs and end are submitted at once, in order, without
waiting for the run id. The id comes back as the creating call's result (``run_id``), for the
trial's ``mlflow_run_id`` attribute.

Failures stay the writer's: a tracking store that cannot be reached is reported once (from the
writer, on the worker's stderr) and the trials go on, their results in the Optuna storage.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from .writer import BackgroundWriter, shared_writer

_tokens = itertools.count()


class RemoteTracker:
    """The ``StudyTracker`` calls a worker makes (``trial_run``, ``mark_failed``, the writer's
    ``flush`` and ``detach``), each run in the writer process."""

    def __init__(self, tracking_uri: str, study_name: str, parent_run_id: str | None = None,
                 writer: BackgroundWriter | None = None):
        self.tracking_uri, self.study_name = tracking_uri, study_name
        self.parent_run_id = parent_run_id
        self.writer = writer if writer is not None else shared_writer()
        self._key = (tracking_uri, study_name, parent_run_id)
        # the writer opens the store and the experiment now, while this process goes on
        self.writer.submit(_prepare, self._key)

    def trial_run(self, number: int, params: Mapping[str, Any], *, seed: int,
                  config: Mapping[str, Any], data_info: Mapping[str, Any],
                  extra_tags: Mapping[str, Any] = ()) -> RemoteTrialRun:
        token = f"{os.getpid()}-{next(_tokens)}"
        future = self.writer.call(_open_trial_run, self._key, token, number, dict(params),
                                  seed=seed, config=dict(config), data_info=dict(data_info),
                                  extra_tags=dict(extra_tags))
        return RemoteTrialRun(self.writer, token, number, future)

    def mark_failed(self, run_id: str, reason: str) -> None:
        self.writer.submit(_mark_failed, self._key, run_id, reason)

    def flush(self) -> None:
        self.writer.flush()

    def detach(self) -> None:
        self.writer.detach()


class RemoteTrialRun:
    """A trial's run as the worker sees it: what ``TrialRun`` offers a trial, submitted."""

    def __init__(self, writer: BackgroundWriter, token: str, number: int, future: Future):
        self.writer, self.token, self.number = writer, token, number
        self._future = future

    @property
    def run_id(self) -> str | None:
        """The MLflow run id once the writer has created the run (None before, or if it
        could not)."""
        return self.wait_run_id(0)

    def wait_run_id(self, timeout: float) -> str | None:
        try:
            return self._future.result(timeout=timeout)
        except FutureTimeout:
            return None
        except Exception:  # noqa: BLE001  the writer is gone or the store refused: untracked
            return None

    def epoch_ended(self, epoch: int, logs: Mapping[str, float]) -> None:
        self.writer.submit(_run_call, self.token, "epoch_ended", epoch, dict(logs))

    def finish(self, **details: Any) -> None:
        self.writer.submit(_run_call, self.token, "finish", **details)

    def log_image_grid(self, images, row_labels, name: str, title: str = "") -> None:
        self.writer.submit(_run_call, self.token, "_log_image_grid", images, row_labels, name,
                           title)


# -- the writer's side (these run in the writer process, where MLflow is loaded) ----------
_trackers: dict[tuple, Any] = {}
_runs: dict[str, Any] = {}


def _tracker(key: tuple):
    if key not in _trackers:
        from .runs import StudyTracker

        tracking_uri, study_name, parent_run_id = key
        try:
            _trackers[key] = StudyTracker(tracking_uri, study_name,
                                          parent_run_id=parent_run_id, background=False)
        except Exception as err:  # tracking down must not stop the study
            print(f"tunelab: tracking unavailable ({type(err).__name__}: {err}); trials go on "
                  "and keep their results in the Optuna storage; `tunelab sync` logs them "
                  "later", file=sys.stderr, flush=True)
            _trackers[key] = None
    return _trackers[key]


def _prepare(key: tuple) -> None:
    _tracker(key)


def _open_trial_run(key: tuple, token: str, number: int, params: Mapping[str, Any],
                    **kwargs: Any) -> str | None:
    tracker = _tracker(key)
    if tracker is None:
        return None
    run = tracker.trial_run(number, params, **kwargs)
    _runs[token] = run
    return run.run_id


def _run_call(token: str, method: str, *args: Any, **kwargs: Any) -> None:
    run = _runs.get(token)
    if run is None:  # not tracked (the store was down when the trial started)
        return
    if method == "finish":
        del _runs[token]
    getattr(run, method)(*args, **kwargs)


def _mark_failed(key: tuple, run_id: str, reason: str) -> None:
    tracker = _tracker(key)
    if tracker is not None:
        tracker.mark_failed(run_id, reason)
