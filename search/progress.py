"""What the user sees while a study runs: trial out of budget, epoch, best so far, elapsed."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Progress:
    def __init__(self, *, n_trials: int | None, max_epochs: int, metric: str,
                 started_at: float | None = None, stream: TextIO | None = None):
        self.n_trials, self.max_epochs, self.metric = n_trials, max_epochs, metric
        self.started_at = started_at or time.time()
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()
        self.best: tuple[float, int] | None = None
        self.position = 0

    def trial_started(self, number: int, position: int, best: tuple[float, int] | None) -> None:
        self.position, self.best = position, best

    def _head(self, number: int) -> str:
        budget = f"{self.position}/{self.n_trials}" if self.n_trials else f"{self.position}"
        return f"trial {number:>3} [{budget}]"

    def _tail(self) -> str:
        best = (f"best {self.metric} {self.best[0]:.4f} (trial {self.best[1]})"
                if self.best else "best -")
        return f"{best} | {_clock(time.time() - self.started_at)}"

    def epoch(self, number: int, epoch: int, logs: dict[str, float]) -> None:
        shown = " ".join(f"{k} {logs[k]:.4f}" for k in ("loss", "val_loss", self.metric)
                         if k in logs and not (k == "val_loss" and self.metric == "val_loss"))
        line = (f"{self._head(number)} epoch {epoch + 1:>3}/{self.max_epochs} {shown} | "
                f"{self._tail()}")
        if self.live:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def trial_finished(self, number: int, state: str, value: float | None,
                       detail: str = "") -> None:
        if value is not None and state == "COMPLETE":
            detail = f"{self.metric} {value:.4f}" + (f", {detail}" if detail else "")
        line = f"{self._head(number)} {state.lower()}" + (f": {detail}" if detail else "")
        self.stream.write(("\r\033[K" if self.live else "") + line + "\n")
        self.stream.flush()
