"""The Optuna objective: one trial = suggest hyperparameters, then the trial lifecycle.

The lifecycle (``trial.py``) builds, trains, reports, records and tells its hooks; the
objective adds what is Optuna-specific to a search: the budget check across workers and the
sampler's suggestions. ``run_trials`` is a worker's loop over trials.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import optuna

from tunelab.models import timeline
from tunelab.models.data import Dataset
from tunelab.models.training import TrainingSettings

from .liveness import OwnerHooks, fail_own_running, reap_dead_trials, running_elsewhere
from .progress import Emit, ProgressHooks
from .selection import ObjectiveRule
from .space import SearchSpace
from .study import (
    counted_trials,
    deliver_held_signals,
    duplicate_of,
    fail_stale_trials,
    over_budget,
)
from .trial import (
    BudgetReached,
    TrackingHooks,
    TrialDiverged,
    TrialFailed,
    TrialHooks,
    TrialLifecycle,
    current_rss_mb,
)

__all__ = ["BudgetReached", "Objective", "TrialDiverged", "TrialFailed", "current_rss_mb",
           "run_trials"]


@dataclass
class Objective:
    model_name: str
    space: SearchSpace
    data: Dataset
    training: TrainingSettings
    metric: str
    direction: str
    n_trials: int | None = None
    seed: int = 0
    config: Mapping[str, Any] = field(default_factory=dict)
    tracker: Any = None  # has trial_run(number, params, *, seed, config, data_info)
    progress: Emit | None = None  # receives the trials' events (progress.py); None: silent
    worker: int | None = None  # named in the events
    tensorboard: bool = False
    rule: ObjectiveRule | None = None  # objective kind and gap limit; None: the raw metric
    checkpoints: Any = None  # a search.top_checkpoints.CheckpointStore; None: keep no weights
    feature_cache_dir: str | None = None  # frozen-backbone features shared by trials (disk)
    cv_folds: int = 1  # > 1: every trial is k-fold cross-validation (crossval.py)
    hooks: list[TrialHooks] = field(default_factory=list)  # more observers
    heartbeat_interval: float | None = 10.0  # owner + heartbeat thread per trial; None: off
    no_repeats: bool = False  # grid: never train a grid point twice (retries aside)
    #: raises to stop (the shell's stop-signal check): before every trial, after every batch
    stop_check: Callable[[], None] | None = None
    #: the block a trial's work runs in (``TrialLifecycle.stop_guard``)
    stop_guard: Callable[[], Any] | None = None
    _lifecycle: TrialLifecycle | None = field(default=None, init=False, repr=False)

    @property
    def lifecycle(self) -> TrialLifecycle:
        """Built on first use, from the fields as they are then (benchmarks replace the
        progress printer or the checkpoint store after construction)."""
        if self._lifecycle is None:
            lifecycle = TrialLifecycle(
                data=self.data, model=self.model_name, training=self.training,
                metric=self.metric, direction=self.direction, seed=self.seed, rule=self.rule,
                checkpoints=self.checkpoints, feature_cache_dir=self.feature_cache_dir,
                cv_folds=self.cv_folds, tensorboard=self.tensorboard,
                stop_check=self.stop_check, stop_guard=self.stop_guard)
            hooks = list(self.hooks)
            if self.heartbeat_interval:
                hooks.append(OwnerHooks(self.heartbeat_interval))
            if self.tracker is not None:
                hooks.append(TrackingHooks(self.tracker, config=self.config,
                                           data_info=lifecycle.data_info, data=self.data))
            if self.progress is not None:
                hooks.append(ProgressHooks(self.progress, metric=self.metric,
                                           worker=self.worker))
            lifecycle.hooks = hooks
            self._lifecycle = lifecycle
        return self._lifecycle

    @property
    def data_info(self) -> dict[str, Any]:
        return self.lifecycle.data_info

    @property
    def owner(self) -> OwnerHooks | None:
        return next((h for h in self.lifecycle.hooks if isinstance(h, OwnerHooks)), None)

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        timeline.mark("trial_start", trial=trial.number)
        owner = self.owner
        try:
            if owner is not None:  # first: a process killed from here on leaves its owner
                owner.claim(trial)
        finally:  # a stop that arrived while the trial was created: inside the objective,
            deliver_held_signals()  # so Optuna records the trial as failed
        try:
            if self.stop_check is not None:
                self.stop_check()
            if over_budget(trial.study, trial.number, self.n_trials):
                trial.set_user_attr("skipped", "the trial budget was already filled")
                raise BudgetReached("the trial budget was already filled by other workers")
            params = self.space.suggest(trial)
            timeline.mark("suggested")
            if self.no_repeats and "retry_of" not in trial.user_attrs:
                earlier = duplicate_of(trial.study, trial.number, trial.params)
                if earlier is not None:
                    trial.set_user_attr("skipped", f"grid point of trial {earlier} already "
                                                   "trained")
                    raise BudgetReached(f"its grid point was already trained by trial "
                                        f"{earlier}")
            return self.lifecycle.run(trial, params).objectives
        finally:
            if owner is not None:
                owner.release(trial)


def run_trials(study: optuna.Study, objective: Objective, *, n_trials: int | None,
               max_trials_here: int | None = None, deadline: float | None = None,
               poll_seconds: float = 2.0, heartbeat_interval: float | None = None,
               on_dead=None) -> str:
    """Run trials until the study's budget is met, the deadline passes, or this process has
    run ``max_trials_here`` (then it should be recycled). Returns which of the three.

    At start and on every poll of the budget wait, trials of dead processes are failed and
    retried once (``liveness.reap_dead_trials``; ``on_dead(trial, reason)`` is told)."""
    done_here, backoff = 0, 1.0
    interval = heartbeat_interval or objective.heartbeat_interval
    waiting_for: tuple[int, ...] = ()
    while True:
        if objective.stop_check is not None:  # a stop swallowed while this loop waited
            objective.stop_check()
        if n_trials is not None:
            fail_stale_trials(study)
            if interval:
                reap_dead_trials(study, interval, on_dead)
            counted = counted_trials(study)
            if counted >= n_trials:
                return "budget"
            running = len(study.get_trials(deepcopy=False,
                                           states=(optuna.trial.TrialState.RUNNING,)))
            if counted + running >= n_trials:
                if deadline is not None and time.time() >= deadline:
                    return "deadline"
                others = running_elsewhere(study)
                if tuple(t.number for t in others) != waiting_for and others:
                    waiting_for = tuple(t.number for t in others)
                    print(f"tunelab: {counted} of {n_trials} trials done; waiting for "
                          f"{_names(others)} in other processes: "
                          + (f"at most until the deadline ({deadline - time.time():.0f} s)"
                             if deadline is not None else "until they end")
                          + (f", or {2 * interval:.0f} s after a heartbeat stops (a trial "
                             "whose process is gone is failed and retried at once)"
                             if interval else ""), flush=True)
                time.sleep(poll_seconds)  # others' running trials may still fill the budget
                continue
        if deadline is not None and time.time() >= deadline:
            return "deadline"
        if max_trials_here is not None and done_here >= max_trials_here:
            return "recycle"
        guard = objective.stop_guard() if objective.stop_guard is not None else nullcontext()
        try:
            timeline.mark("trial_ask")
            # Optuna's ask and tell inside the guard too: a stop delivered at the end of the
            # journal append of a tell raised inside Optuna's _run_trial, which then failed
            # with UnboundLocalError and a traceback; now it waits for the next check (the
            # objective's first, a batch's end, or this loop's top once the tell is stored)
            with guard:
                study.optimize(objective, n_trials=1, catch=(TrialFailed,))
            timeline.mark("trial_end")  # after Optuna stored the trial's state
        except KeyboardInterrupt as interrupt:
            fail_own_running(study, f"{type(interrupt).__name__}: interrupted")
            raise
        except optuna.exceptions.StorageInternalError as err:
            print(f"tunelab: storage error ({err}); retrying in {backoff:.0f} s", flush=True)
            time.sleep(backoff)
            backoff = min(2 * backoff, 60.0)
            continue
        backoff = 1.0
        done_here += 1


def _names(trials) -> str:
    from .liveness import OWNER

    parts = []
    for t in trials:
        owner = t.system_attrs.get(OWNER) or {}
        where = f" (pid {owner.get('pid')} on {owner.get('host')})" if owner else ""
        parts.append(f"trial {t.number}{where}")
    return ", ".join(parts)
