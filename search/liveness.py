"""Who runs a trial, and whether it still does: owners, heartbeats and the reaper.

Optuna's journal file has no heartbeats, so a trial whose process was killed (SIGKILL, a
lost machine, an OOM kill) stayed RUNNING forever, and ``run_trials`` waited for it forever.
Here every trial records its owner (host, pid, the process's start time, so that a reused
pid is not taken for the owner) and a heartbeat that a background thread writes every
``interval`` seconds while the trial runs, whatever the trial is doing (never tied to
epochs: a first epoch can take minutes). Both are trial system attributes, in any storage.

``reap_dead_trials`` is called by every process that checks the budget: a RUNNING trial is
dead when its owner is on this host and its process is gone, or (another host) when its
heartbeat is older than ``2 * interval``. It is failed with the reason, retried once with
the same parameters (``enqueue_trial(params, user_attrs={"retry_of": n})``; a retry that
dies again stays failed), and the caller is told (to end its MLflow run as FAILED).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from .study import OWNER, process_started, this_owner
from .trial import TrialHooks

HEARTBEAT = "tunelab:heartbeat"  # time.time() of the last beat
#: a RUNNING trial with no owner at all (made by an older tunelab, or killed between its
#: creation and its first line) is dead once it is this much older than the grace period
NO_OWNER_GRACE = 60.0


class OwnerHooks(TrialHooks):
    """Records the trial's owner when it starts and beats every ``interval`` seconds from a
    daemon thread until it ends."""

    def __init__(self, interval: float):
        self.interval = float(interval)
        self._beating: dict[int, threading.Event] = {}
        self._owner = this_owner()

    def claim(self, trial: optuna.Trial) -> None:
        """Owner and first heartbeat, then the heartbeat thread; idempotent."""
        if trial.number in self._beating:
            return
        storage, trial_id = trial.study._storage, trial._trial_id
        storage.set_trial_system_attr(trial_id, OWNER, self._owner)
        storage.set_trial_system_attr(trial_id, HEARTBEAT, time.time())
        stop = threading.Event()
        self._beating[trial.number] = stop
        threading.Thread(target=self._beat, args=(storage, trial_id, stop), daemon=True,
                         name=f"tunelab-heartbeat-{trial.number}").start()

    def release(self, trial: optuna.Trial) -> None:
        stop = self._beating.pop(trial.number, None)
        if stop is not None:
            stop.set()

    def _beat(self, storage, trial_id: int, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            try:
                storage.set_trial_system_attr(trial_id, HEARTBEAT, time.time())
            except Exception:  # the trial ended meanwhile, or the storage hiccuped
                try:
                    if storage.get_trial(trial_id).state.is_finished():
                        return
                except Exception:
                    pass

    def trial_started(self, trial, plan):
        self.claim(trial)

    def trial_ended(self, trial, plan, end):
        self.release(trial)


def dead_reason(trial: FrozenTrial, interval: float, now: float | None = None) -> str | None:
    """Why a RUNNING trial is dead, or None while it may still be alive."""
    now = time.time() if now is None else now
    owner = trial.system_attrs.get(OWNER)
    beat = trial.system_attrs.get(HEARTBEAT)
    if not owner:
        started = trial.datetime_start.timestamp() if trial.datetime_start else now
        if now - started > NO_OWNER_GRACE + 2 * interval:
            return (f"its process is unknown and it started {now - started:.0f} s ago "
                    "without a heartbeat")
        return None
    where = f"pid {owner.get('pid')} on {owner.get('host')}"
    if owner.get("host") == socket.gethostname():
        started = process_started(int(owner["pid"]))
        if started is None:
            return f"its process ({where}) is gone"
        if owner.get("started") is not None and abs(started - float(owner["started"])) > 1:
            return f"its process ({where}) is gone (the pid now belongs to another process)"
        return None
    if beat is None:  # owned (in study.ask) but killed before its first heartbeat
        beat = trial.datetime_start.timestamp() if trial.datetime_start else now
    if now - float(beat) > 2 * interval:
        return f"its process ({where}) sent no heartbeat for {now - float(beat):.0f} s"
    return None


def reap_dead_trials(study: optuna.Study, interval: float,
                     on_failed: Callable[[FrozenTrial, str], None] | None = None,
                     ) -> list[FrozenTrial]:
    """Fail the study's dead RUNNING trials with the reason, retry each once with the same
    parameters, tell ``on_failed``; returns the trials this call failed."""
    failed = []
    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = dead_reason(trial, interval, now)
        if reason is None:
            continue
        storage, trial_id = study._storage, trial._trial_id
        try:
            storage.set_trial_user_attr(trial_id, "reason", f"died: {reason}")
            storage.set_trial_user_attr(trial_id, "state", "FAILED")
            if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
                continue
        except (optuna.exceptions.UpdateFinishedTrialError, KeyError, RuntimeError):
            continue  # another process failed it first; it retries it
        retried = trial.user_attrs.get("retry_of") is None and bool(trial.params)
        if retried:
            study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})
        print(f"tunelab: trial {trial.number} FAILED: {reason}; "
              + ("retried once with the same parameters" if retried
                 else "not retried (it was a retry already)" if trial.params
                 else "it had no parameters yet"), flush=True)
        failed.append(trial)
        if on_failed is not None:
            on_failed(trial, f"its worker died: {reason}")
    return failed


def running_elsewhere(study: optuna.Study) -> list[FrozenTrial]:
    """RUNNING trials owned by other processes (the ones a waiting worker waits for)."""
    me = (socket.gethostname(), os.getpid())
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if (t.system_attrs.get(OWNER, {}).get("host"),
                t.system_attrs.get(OWNER, {}).get("pid")) != me]


def fail_own_running(study: optuna.Study, reason: str) -> list[int]:
    """Interrupted: fail the RUNNING trials this process owns (one the interrupt caught in
    ``study.ask``, before its objective ran, which Optuna leaves RUNNING)."""
    me = this_owner()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.system_attrs.get(OWNER) or {}
        if (owner.get("host"), owner.get("pid")) != (me["host"], me["pid"]):
            continue
        try:
            study._storage.set_trial_user_attr(trial._trial_id, "reason", reason)
            study._storage.set_trial_user_attr(trial._trial_id, "state", "FAILED")
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            failed.append(trial.number)
        except Exception:
            pass
    return failed


def fail_orphans_of_stop(study: optuna.Study, reason: str) -> list[int]:
    """After a stop (Ctrl-C, SIGTERM), once its workers have exited: fail the RUNNING trials
    whose owner on this host is gone, with ``reason`` (``KeyboardInterrupt: ...`` makes
    their MLflow runs end KILLED). A worker that the stop caught where it could not record
    its trial's end would otherwise leave the trial and its run RUNNING until the next
    process that checks the budget. Trials of live processes and of other hosts are left
    alone; nothing is retried (an interrupted trial is not, either)."""
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.system_attrs.get(OWNER) or {}
        if owner.get("host") != socket.gethostname() or owner.get("pid") is None:
            continue
        started = process_started(int(owner["pid"]))
        alive = started is not None and (owner.get("started") is None
                                         or abs(started - float(owner["started"])) <= 1)
        if alive:
            continue
        try:
            study._storage.set_trial_user_attr(trial._trial_id, "reason", reason)
            study._storage.set_trial_user_attr(trial._trial_id, "state", "FAILED")
            if study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                failed.append(trial.number)
        except (optuna.exceptions.UpdateFinishedTrialError, KeyError, RuntimeError):
            continue  # it ended meanwhile
    return failed
