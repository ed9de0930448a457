"""What the ``tune`` process shows while a study runs, from the trials' events.

Workers never draw: they send events (``search/progress.py``) and this module, in the
``tune`` process only, renders all of them. On a terminal it is one live display (rich):
the study's progress (trials done of the budget, or time used of the timeout, and an
estimate of the time left), one epoch bar per running trial with its time left and train
and validation accuracy, the best so far, and one permanent line per finished trial (state,
reason, parameters against the best). It redraws at most 4 times a second, only when
something changed or once a second for the clocks, and measures what its redraws cost
(``refresh_seconds``). Every line is cut to the terminal's width, never wrapped.
Anywhere else (a pipe, CI, a log file) it prints one plain line per epoch and per finished
trial.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

MAX_REFRESH_PER_SECOND = 4
ABBREVIATIONS = {"learning_rate": "lr", "batch_size": "batch", "spatial_dropout": "sp_drop",
                 "batch_norm": "bn", "optimizer": "opt", "dense_units": "dense"}


def clock(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "?"
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def param_name(name: str) -> str:
    family, _, leaf = name.rpartition(".")
    leaf = ABBREVIATIONS.get(leaf, leaf)
    return f"{family}.{leaf}" if family else leaf


def against_best(params: Mapping[str, Any], best: Mapping[str, Any] | None) -> str:
    """``lr=0.00397 (best 0.00237) n_base=4``: each parameter, with the best trial's value
    where it differs; those first, so that a line cut to the terminal's width keeps them."""
    differ, same = [], []
    for key, value in params.items():
        text = f"{param_name(key)}={short(value)}"
        if best is not None and key in best and short(best[key]) != short(value):
            differ.append(f"{text} (best {short(best[key])})")
        else:
            same.append(text)
    return " ".join(differ + same)


@dataclass
class RunningTrial:
    number: int
    position: int | None
    started: float
    params: dict[str, Any]
    epochs: int = 0
    last_epoch_at: float | None = None
    logs: dict[str, float] = field(default_factory=dict)

    def epoch_seconds(self) -> float | None:
        if not self.epochs or self.last_epoch_at is None:
            return None
        return (self.last_epoch_at - self.started) / self.epochs


class StudyState:
    """The study as the events tell it; both displays render this."""

    def __init__(self, *, study_name: str, metric: str, direction: str, max_epochs: int,
                 n_trials: int | None, timeout: float | None, started_at: float,
                 done: int = 0, best: tuple[float, int, dict] | None = None,
                 workers: int = 1):
        self.study_name, self.metric, self.direction = study_name, metric, direction
        self.max_epochs, self.n_trials, self.timeout = max_epochs, n_trials, timeout
        self.started_at, self.done, self.best, self.workers = started_at, done, best, workers
        self.running: dict[int, RunningTrial] = {}
        self.durations: list[float] = []

    def better(self, value: float | None) -> bool:
        if value is None:
            return False
        if self.best is None:
            return True
        return value > self.best[0] if self.direction == "maximize" else value < self.best[0]

    def handle(self, event: Mapping[str, Any]) -> str | None:
        """Update from one event; returns the permanent line a finished trial leaves."""
        kind, number = event.get("event"), event.get("trial")
        now = float(event.get("time") or time.time())
        if kind == "trial_started":
            if event.get("best") and self.better(event["best"][0]):
                self.best = tuple(event["best"])  # another worker's trial, seen in storage
            self.running[number] = RunningTrial(number, event.get("position"), now,
                                                dict(event.get("params") or {}))
        elif kind == "epoch":
            trial = self.running.setdefault(number, RunningTrial(number, None, now, {}))
            trial.epochs, trial.last_epoch_at = int(event["epoch"]) + 1, now
            trial.logs = {k: v for k, v in (event.get("logs") or {}).items() if v is not None}
        elif kind == "trial_ended":
            trial = self.running.pop(number, None)
            if trial is not None:
                self.durations.append(now - trial.started)
            state, value = event.get("state", "?"), event.get("value")
            if state in ("COMPLETE", "PRUNED"):
                self.done += 1
            previous = self.best
            new_best = state == "COMPLETE" and self.better(value)
            if new_best:
                self.best = (value, number, dict(event.get("params") or {}))
            return self.finished_line(number, state, value, event.get("reason") or "",
                                      event.get("detail") or "", event.get("params") or {},
                                      previous, new_best)
        return None

    def finished_line(self, number, state, value, reason, detail, params, previous,
                      new_best) -> str:
        head = f"trial {number:>3} {state.lower():<8}"
        if state == "COMPLETE":
            head += f" {self.metric} {value:.4f}" if value is not None else ""
            head += " new best" if new_best else (
                f" (best {previous[0]:.4f} #{previous[1]})" if previous else "")
            if detail:
                head += f", {detail}"
        elif reason:
            head += f" {reason}"
        best_params = None if previous is None else previous[2]
        return f"{head} | {against_best(params, best_params)}" if params else head

    # -- estimates ---------------------------------------------------------------------
    def trial_left(self, trial: RunningTrial) -> float | None:
        per_epoch = trial.epoch_seconds()
        return None if per_epoch is None else per_epoch * max(0, self.max_epochs - trial.epochs)

    def study_left(self, now: float) -> float | None:
        if self.timeout:
            return max(0.0, self.started_at + self.timeout - now)
        if self.n_trials is None:
            return None
        per_trial = (sum(self.durations) / len(self.durations)) if self.durations else None
        if per_trial is None:
            estimates = [t.epoch_seconds() for t in self.running.values()]
            estimates = [e * self.max_epochs for e in estimates if e]
            per_trial = max(estimates) if estimates else None
        if per_trial is None:
            return None
        waiting = max(0, self.n_trials - self.done - len(self.running))
        running = [self.trial_left(t) or 0.0 for t in self.running.values()]
        return max(running, default=0.0) + waiting * per_trial / max(1, self.workers)

    # -- lines -------------------------------------------------------------------------
    def best_text(self) -> str:
        if self.best is None:
            return "best: none complete yet"
        return f"best {self.metric} {self.best[0]:.4f} (trial {self.best[1]})"

    def position(self, trial: RunningTrial) -> str:
        if trial.position is None:
            return ""
        return f"[{trial.position}/{self.n_trials}]" if self.n_trials else f"[{trial.position}]"

    def metrics_text(self, logs: Mapping[str, float]) -> str:
        parts = []
        if "accuracy" in logs or "val_accuracy" in logs:
            parts.append(f"acc {_num(logs.get('accuracy'))}/{_num(logs.get('val_accuracy'))}")
        if "loss" in logs or "val_loss" in logs:
            parts.append(f"loss {_num(logs.get('loss'))}/{_num(logs.get('val_loss'))}")
        if self.metric not in SHOWN and self.metric in logs:
            parts.append(f"{self.metric} {_num(logs[self.metric])}")
        return " ".join(parts)

    def epoch_line(self, number: int) -> str:
        """The plain line of a trial's last epoch."""
        trial = self.running[number]
        return (f"trial {number:>3} {self.position(trial)} epoch {trial.epochs:>3}/"
                f"{self.max_epochs} {self.metrics_text(trial.logs)} | "
                f"{clock(self.trial_left(trial))} left")


SHOWN = ("loss", "accuracy", "val_loss", "val_accuracy")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _bar(fraction: float, width: int) -> str:
    fraction = min(1.0, max(0.0, fraction))
    full = int(fraction * width)
    return "━" * full + ("╸" if full < width else "") + " " * max(0, width - full - 1)


# -- the two displays -----------------------------------------------------------------
class PlainDisplay:
    """One line per epoch and per finished trial (pipes, CI, log files)."""

    live = False

    def __init__(self, state: StudyState, stream: TextIO | None = None):
        self.state, self.stream = state, stream or sys.stdout
        self._lock = threading.Lock()
        self.refresh_seconds, self.refreshes = 0.0, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def _write(self, line: str) -> None:
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def handle(self, event: Mapping[str, Any]) -> None:
        with self._lock:
            line = self.state.handle(event)
            if event.get("event") == "epoch" and event.get("trial") in self.state.running:
                line = self.state.epoch_line(event["trial"])
            if line:
                self._write(line)

    def message(self, line: str) -> None:
        with self._lock:
            self._write(line.rstrip("\n"))


class LiveDisplay(PlainDisplay):
    """One rich live display in the ``tune`` process, redrawn at most 4 times a second."""

    live = True

    def __init__(self, state: StudyState, console=None):
        from rich.console import Console

        super().__init__(state)
        self.console = console or Console()
        self._changed = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live = None

    def start(self) -> None:
        from rich.live import Live

        self._live = Live(_Renderable(self), console=self.console, auto_refresh=False,
                          transient=True, redirect_stdout=True, redirect_stderr=False)
        self._live.start()
        self._thread = threading.Thread(target=self._loop, name="tunelab-display",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if self._live is not None:
            with self._lock:
                self._live.stop()
            self._live = None

    def _loop(self) -> None:
        last = 0.0
        while not self._stop.wait(1.0 / MAX_REFRESH_PER_SECOND):
            now = time.monotonic()
            if self._changed or now - last >= 1.0:
                self.refresh()
                last = now

    def refresh(self) -> None:
        with self._lock:
            if self._live is None:
                return
            began = time.perf_counter()
            self._changed = False
            self._live.refresh()
            self.refresh_seconds += time.perf_counter() - began
            self.refreshes += 1

    def handle(self, event: Mapping[str, Any]) -> None:
        with self._lock:
            line = self.state.handle(event)
            self._changed = True
            if line:
                self._print(line)

    def message(self, line: str) -> None:
        with self._lock:
            self._print(line.rstrip("\n"))

    def _print(self, line: str) -> None:
        from rich.text import Text

        console = self._live.console if self._live is not None else self.console
        # cut to the terminal's width, never wrapped (Text(no_wrap=...) alone still wraps)
        console.print(Text(line), no_wrap=True, overflow="ellipsis", crop=True,
                      soft_wrap=False, highlight=False)

    def lines(self, width: int) -> list[str]:
        """The live region's lines, each at most ``width`` characters."""
        state, now = self.state, time.time()
        elapsed = now - state.started_at
        left = state.study_left(now)
        if state.timeout:
            fraction = elapsed / state.timeout
            done = f"{clock(elapsed)} of {clock(state.timeout)}, {state.done} trials"
        elif state.n_trials:
            fraction = state.done / state.n_trials
            done = f"{state.done}/{state.n_trials} trials"
        else:
            fraction, done = 0.0, f"{state.done} trials"
        tail = f" {done} | {clock(elapsed)} | {clock(left)} left" if left is not None else (
            f" {done} | {clock(elapsed)}")
        head = f"study {state.study_name} "
        out = [head + _bar(fraction, _bar_width(width, head, tail)) + tail,
               state.best_text()]
        for trial in sorted(state.running.values(), key=lambda t: t.number):
            head = f"trial {trial.number:>3} "
            tail = (f" {trial.epochs}/{state.max_epochs} {state.metrics_text(trial.logs)}"
                    f" {clock(state.trial_left(trial))} left")
            out.append(head + _bar(trial.epochs / max(1, state.max_epochs),
                                   _bar_width(width, head, tail)) + tail)
        return [line if len(line) <= width else line[:width - 1] + "…" for line in out]


def _bar_width(width: int, head: str, tail: str) -> int:
    return max(5, min(30, width - len(head) - len(tail)))


class _Renderable:
    def __init__(self, display: LiveDisplay):
        self.display = display

    def __rich_console__(self, console, options):
        from rich.text import Text

        width = max(20, options.max_width)
        for line in self.display.lines(width):
            yield Text(line, no_wrap=True, overflow="ellipsis")


def make_display(state: StudyState, stream: TextIO | None = None, *,
                 live: bool | None = None) -> PlainDisplay:
    """The live display on a terminal, plain lines elsewhere (``live`` forces either)."""
    stream = stream or sys.stdout
    if live is None:
        live = bool(getattr(stream, "isatty", lambda: False)()) and \
            os.environ.get("TERM") != "dumb"
    if not live:
        return PlainDisplay(state, stream)
    try:
        from rich.console import Console
    except ImportError:  # rich is a dependency; a broken install still gets plain lines
        return PlainDisplay(state, stream)
    return LiveDisplay(state, Console(file=stream))
