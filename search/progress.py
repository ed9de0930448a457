"""What a trial tells the terminal: events, never drawing.

A trial's life becomes three kinds of events, plain JSON-able dicts: ``trial_started``
(number, position in the budget, parameters, the study's best so far), ``epoch`` (the
epoch's train and validation loss and accuracy and the objective metric) and
``trial_ended`` (state, reason, value, one-line detail). ``ProgressHooks`` sends them to a
callable: in a ``tunelab worker`` started by ``tunelab tune``, an ``EventWriter`` that writes
them as JSON lines to a pipe the parent reads; in the ``tune`` process itself (in-process
trials, the KerasTuner engine), the display's own ``handle``. Only the ``tune`` process
draws (``tunelab/terminal.py``), so several workers never write over each other.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from .trial import TrialHooks

Emit = Callable[[dict[str, Any]], None]
SHOWN_LOGS = ("loss", "accuracy", "val_loss", "val_accuracy")


def jsonable(value: Any) -> Any:
    """Numbers, strings and booleans as they are (NaN as None); anything else as text."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    try:
        number = float(value)  # numpy scalars
    except (TypeError, ValueError):
        return str(value)
    return None if math.isnan(number) or math.isinf(number) else number


class EventWriter:
    """Events as JSON lines on a file descriptor (a pipe to the ``tune`` process). A reader
    that went away (Ctrl-C) costs nothing: the trial goes on, its events are dropped."""

    def __init__(self, fd: int):
        self._file = os.fdopen(fd, "w", buffering=1, encoding="utf-8")
        self._lock = threading.Lock()
        self.broken = False

    def __call__(self, event: Mapping[str, Any]) -> None:
        if self.broken:
            return
        line = json.dumps(event, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                self._file.write(line)
                self._file.flush()
            except (OSError, ValueError):
                self.broken = True


class ProgressHooks(TrialHooks):
    """The trial lifecycle as events for the terminal (see the module's docstring)."""

    def __init__(self, emit: Emit, *, metric: str, worker: int | None = None):
        self.emit, self.metric, self.worker = emit, metric, worker

    def _send(self, kind: str, trial, **fields: Any) -> None:
        event = {"event": kind, "trial": trial.number, "time": time.time(),
                 "worker": self.worker if self.worker is not None else os.getpid(), **fields}
        try:
            self.emit(event)
        except Exception:  # the display never fails a trial
            pass

    def trial_started(self, trial, plan):
        from .study import best_trial, counted_trials, primary_value

        best = best_trial(trial.study)
        self._send("trial_started", trial, position=counted_trials(trial.study) + 1,
                   params={k: jsonable(v) for k, v in plan.params.items()},
                   model=plan.model_name,
                   best=[primary_value(best), best.number, {
                       k: jsonable(v) for k, v in best.params.items()}] if best else None)

    def epoch_ended(self, trial, epoch, logs):
        shown = {k: jsonable(logs[k]) for k in (*SHOWN_LOGS, self.metric) if k in logs}
        self._send("epoch", trial, epoch=int(epoch), logs=shown)

    def trial_ended(self, trial, plan, end):
        state = "FAILED" if end.state == "KILLED" else end.state
        self._send("trial_ended", trial, state=state, reason=end.reason or "",
                   value=jsonable(end.value), detail=end.detail or "",
                   params={k: jsonable(v) for k, v in plan.params.items()})
