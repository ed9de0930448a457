"""The Optuna side of a study: storage, sampler, pruner, and the trial budget."""

from __future__ import annotations

import inspect
import signal
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import optuna
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

T = TypeVar("T")

RDB_PREFIXES = ("sqlite:", "postgresql", "mysql", "oracle", "mssql")
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)


# Optuna 4.9 renamed failed_trial_callback (the old name warns and goes in 6.0)
_STALE_CALLBACK_ARG = ("heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback"
                       in inspect.signature(RDBStorage.__init__).parameters
                       else "failed_trial_callback")


def open_storage(url: str, *, heartbeat_interval: int | None = None,
                 on_stale: Callable[[FrozenTrial], None] | None = None,
                 ) -> optuna.storages.BaseStorage:
    """A database URL gives RDB storage (heartbeats, many machines); a file path gives
    Optuna's journal file (safe for parallel local workers, no heartbeats).

    With RDB storage and ``heartbeat_interval``, a trial whose worker died (no heartbeat for
    twice the interval) is marked failed, ``on_stale`` is told, and it is retried once."""
    if url.startswith(RDB_PREFIXES):
        kwargs: dict[str, Any] = {}
        if heartbeat_interval and not url.startswith("sqlite:"):
            kwargs = {"heartbeat_interval": heartbeat_interval,
                      "grace_period": 2 * heartbeat_interval,
                      _STALE_CALLBACK_ARG: _RetryOnce(on_stale)}
        return _retrying(lambda: RDBStorage(url, engine_kwargs={"pool_pre_ping": True},
                                            **kwargs))
    path = Path(url.removeprefix("journal:")).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(UninterruptedJournal(str(path)))


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Optuna's journal op code for a new trial (the journal file's format, stable across
#: versions: JournalOperation.CREATE_TRIAL)
CREATE_TRIAL_OP = 4
#: stop signals held over from a block that asked to carry them (see ``stop_signals_held``)
_carried: list[int] = []


@contextmanager
def stop_signals_held(*, carry: bool = False):
    """Hold SIGINT and SIGTERM until the block ends, then deliver them to the handlers that
    were installed. ``carry``: keep them for the end of the next held block (or
    ``deliver_held_signals``) instead. In the main thread only (the only thread Python
    interrupts); elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread() \
            or any(signal.getsignal(s) is None for s in STOP_SIGNALS):  # a C-level handler
        yield
        return
    arrived: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: arrived.append(signum))
                for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _carried.extend(arrived)
        if not carry:
            deliver_held_signals()


def deliver_held_signals() -> None:
    """Deliver the stop signals carried over from a held block, once each."""
    pending = list(dict.fromkeys(_carried))
    _carried.clear()
    for s in pending:
        signal.raise_signal(s)


class UninterruptedJournal(JournalFileBackend):
    """Optuna's journal file, each append finished before a stop signal is handled.

    Optuna's file lock is not safe against a ``KeyboardInterrupt``: one raised inside its
    ``release`` (Ctrl-C, or SIGTERM turned into an interrupt) left the lock file behind, so
    every other worker of the study waited out the lock's 30 s grace period, and replaced the
    interrupt with a ``FileNotFoundError`` traceback, so the trial's run ended FAILED instead
    of KILLED. Appends are short (one fsync); the signal is delivered right after."""

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        # a stop during the creation of a trial waits for this process's next append (the
        # trial's owner, written when its objective starts): an interrupt between the two
        # left a trial RUNNING that no process owned or could fail
        creates = any(log.get("op_code") == CREATE_TRIAL_OP for log in logs)
        with stop_signals_held(carry=creates):
            super().append_logs(logs)


class _RetryOnce:
    def __init__(self, on_stale: Callable[[FrozenTrial], None] | None):
        self.retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
        self.on_stale = on_stale

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.retry(study, trial)
        if self.on_stale is not None:
            self.on_stale(trial)


def _retrying(call: Callable[[], T], attempts: int = 6, first_wait: float = 1.0) -> T:
    """Storage errors (a restarted database, a lock timeout) are retried with backoff."""
    wait = first_wait
    for attempt in range(attempts):
        try:
            return call()
        except (optuna.exceptions.StorageInternalError, OSError) as err:
            if attempt == attempts - 1:
                raise
            print(f"tunelab: storage error ({type(err).__name__}: {err}); retrying in "
                  f"{wait:.0f} s", flush=True)
            time.sleep(wait)
            wait = min(wait * 2, 30)
        except Exception as err:
            if type(err).__module__.startswith("sqlalchemy") and attempt < attempts - 1:
                print(f"tunelab: storage error ({type(err).__name__}); retrying in "
                      f"{wait:.0f} s", flush=True)
                time.sleep(wait)
                wait = min(wait * 2, 30)
                continue
            raise
    raise AssertionError("unreachable")


OWNER = "tunelab:owner"  # a trial's owner, a system attribute: {"host", "pid", "started"}


def process_started(pid: int) -> float | None:
    """A process's start time (tells a live owner from a reused pid); None: no process, or
    a zombie (killed, not yet reaped: in a container whose init does not reap orphans, a
    killed worker's children stay zombies and would pass for live owners forever)."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return round(process.create_time(), 2)
    except psutil.Error:
        return None


def this_owner() -> dict[str, Any]:
    import os
    import socket

    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": process_started(os.getpid())}


def trial_seed(seed: int, number: int) -> int:
    """The sampler's seed for trial ``number`` of a study seeded ``seed``."""
    return (seed * 1_000_003 + 7919 * (number + 1)) % 2**32


class _SeededPerTrial:
    """A sampler whose random state is reseeded before each trial from the study's seed and
    the trial's number, which the storage hands out once per study. Seeding a process's
    sampler once (``seed + 7919 * worker_index``) made every ``tune`` call, numbering its
    workers from 0, replay the same stream: a resumed study re-drew the points it already
    had, and two processes started together drew identical pairs. Per trial, a resumed
    study, a second process and every recycled or parallel worker draw new points, and a
    fresh single-worker study with the same seed repeats the same trials."""

    study_seed: int = 0

    def before_trial(self, study, trial):
        # the owner, as soon as the trial exists (inside study.ask): an interrupt before the
        # objective's first line then still finds the trial this process must fail
        study._storage.set_trial_system_attr(trial._trial_id, OWNER, this_owner())
        state = trial_seed(self.study_seed, trial.number)
        for sampler in (self, getattr(self, "_random_sampler", None)):
            rng = getattr(sampler, "_rng", None)  # Optuna's LazyRandomState
            if rng is not None:
                rng.rng.seed(state)
        return super().before_trial(study, trial)


class SeededTPESampler(_SeededPerTrial, optuna.samplers.TPESampler):
    pass


class SeededRandomSampler(_SeededPerTrial, optuna.samplers.RandomSampler):
    pass


class SeededGridSampler(_SeededPerTrial, optuna.samplers.GridSampler):
    pass


def make_sampler(kind: str, *, seed: int, n_startup_trials: int = 5,
                 grid: dict[str, list[Any]] | None = None) -> optuna.samplers.BaseSampler:
    """``seed`` is the study's; each trial's draws are seeded from it and the trial's number
    (``trial_seed``), so no two trials of a study replay one random stream."""
    if kind == "tpe":
        sampler = SeededTPESampler(seed=seed, n_startup_trials=n_startup_trials,
                                   multivariate=True, constant_liar=True)
    elif kind == "random":
        sampler = SeededRandomSampler(seed=seed)
    elif kind == "grid":
        sampler = SeededGridSampler(grid or {}, seed=seed)
    else:
        raise ValueError(f"unknown sampler {kind!r}: choose tpe, random or grid")
    sampler.study_seed = seed
    return sampler


def make_pruner(kind: str, *, max_epochs: int, n_startup_trials: int = 3,
                n_warmup_steps: int = 2, min_resource: int = 1,
                reduction_factor: int = 3) -> optuna.pruners.BasePruner:
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials,
                                           n_warmup_steps=n_warmup_steps)
    if kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_resource,
                                                      reduction_factor=reduction_factor)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=min_resource, max_resource=max_epochs,
                                              reduction_factor=reduction_factor)
    if kind == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {kind!r}: choose median, successive_halving, "
                     "hyperband or none")


def open_study(*, storage: str, study_name: str, direction: str | None = None,
               directions: Sequence[str] | None = None,
               sampler: optuna.samplers.BaseSampler | None = None,
               pruner: optuna.pruners.BasePruner | None = None,
               heartbeat_interval: int | None = None,
               on_stale: Callable[[FrozenTrial], None] | None = None) -> optuna.Study:
    """Create the study, or resume it by name; without a direction it must already exist.

    ``directions`` (several) makes a multi-objective study. Resuming a study whose
    directions differ from the ones asked for is a ``ValueError``: a study keeps its
    objectives."""
    # ERROR: Optuna's warning for a failed trial carries its whole traceback (Ctrl-C's
    # included); the trial's one line comes from progress.py and the traceback goes into the
    # trial's attributes and MLflow run (trial.py)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    backend = open_storage(storage, heartbeat_interval=heartbeat_interval, on_stale=on_stale)
    if direction is not None and directions is not None:
        raise ValueError("give direction or directions, not both")
    wanted = list(directions or ([direction] if direction else []))
    if not wanted:
        try:
            return optuna.load_study(study_name=study_name, storage=backend, sampler=sampler,
                                     pruner=pruner)
        except KeyError:
            names = [s.study_name for s in optuna.get_all_study_summaries(backend)]
            raise ValueError(f"no study named {study_name!r} in {storage} (found: "
                             f"{', '.join(names) or 'none'})") from None
    study = optuna.create_study(storage=backend, study_name=study_name, directions=wanted,
                                sampler=sampler, pruner=pruner, load_if_exists=True)
    found = [d.name.lower() for d in study.directions]
    if found != wanted:
        raise ValueError(f"study {study_name!r} in {storage} exists with {_objectives(found)}; "
                         f"this run asks for {_objectives(wanted)}: a study keeps its "
                         "objectives, so start a new study (another study name) or resume it "
                         "with its own objective")
    return study


def _objectives(directions: Sequence[str]) -> str:
    if len(directions) == 1:
        return f"one objective ({directions[0]})"
    return f"{len(directions)} objectives ({', '.join(directions)})"


def fail_stale_trials(study: optuna.Study) -> None:
    """Fail (and retry) trials whose worker stopped sending heartbeats; RDB storage only
    (Optuna's own call does nothing for storages without heartbeats)."""
    if not isinstance(study._storage, RDBStorage):
        return
    import warnings

    with warnings.catch_warnings():  # "experimental since v2.9.0", on every poll
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        _retrying(lambda: optuna.storages.fail_stale_trials(study))


def counted_trials(study: optuna.Study) -> int:
    """Trials that use up the budget: complete or pruned."""
    return len(study.get_trials(deepcopy=False, states=COUNTED))


def over_budget(study: optuna.Study, number: int, n_trials: int | None) -> bool:
    """True when trials numbered before ``number`` that have not failed already fill the
    budget. Trial numbers are handed out by the storage, so several workers agree."""
    if n_trials is None:
        return False
    earlier = [t for t in study.get_trials(deepcopy=False)
               if t.number < number and t.state in (*COUNTED, TrialState.RUNNING,
                                                    TrialState.WAITING)]
    return len(earlier) >= n_trials


def duplicate_of(study: optuna.Study, number: int, params: dict[str, Any]) -> int | None:
    """The number of another trial that trained (or is training) exactly ``params``:
    running, complete, pruned, or failed after training started; None if there is none."""
    for t in study.get_trials(deepcopy=False):
        if t.number == number or t.params != params or "skipped" in t.user_attrs:
            continue
        if t.state in (*COUNTED, TrialState.RUNNING) or (
                t.state == TrialState.FAIL and "history" in t.user_attrs):
            return t.number
    return None


def ended_trials(study: optuna.Study) -> dict[int, str]:
    """Failed trials -> the status their MLflow run should end with: KILLED (interrupted)
    or FAILED."""
    return {t.number: ("KILLED" if any(word in t.user_attrs.get("reason", "")
                                       for word in ("KeyboardInterrupt", "Terminated"))
                       or "reason" not in t.user_attrs else "FAILED")
            for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}


def is_multi_objective(study: optuna.Study) -> bool:
    return len(study.directions) > 1


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best complete trial; for a multi-objective study, the Pareto-front trial with the
    best first objective (``primary_value``)."""
    if is_multi_objective(study):
        front = study.best_trials
        if not front:
            return None
        sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
        return min(front, key=lambda t: (sign * t.values[0], t.number))
    try:
        return study.best_trial
    except ValueError:
        return None


def primary_value(trial: FrozenTrial) -> float | None:
    """The trial's (first) objective value; ``trial.value`` raises on multi-objective trials."""
    return trial.values[0] if trial.values else None


# -- what the shell asks of a stored study (so that only search/ imports optuna) ----------
def study_names(storage_url: str) -> list[str]:
    """Names of the studies in a storage."""
    return [s.study_name for s in optuna.get_all_study_summaries(open_storage(storage_url))]


def study_overview(storage_url: str) -> list[dict[str, Any]]:
    """One row per study: name, trial count, best value (None for none), tracking URI."""
    rows = []
    for summary in optuna.get_all_study_summaries(open_storage(storage_url),
                                                  include_best_trial=True):
        best = summary.best_trial
        rows.append({"name": summary.study_name, "n_trials": summary.n_trials,
                     "best": primary_value(best) if best else None,
                     "tracking_uri": summary.user_attrs.get("tracking_uri")})
    return rows


def find_stored_study(storage_url: str, study_name: str) -> dict[str, Any] | None:
    """What a storage holds of a study, read without writing anything: None when the journal
    file, the SQLite file, the database's tables or the study do not exist; else its user
    attributes (``user_attrs``), trial count (``n_trials``) and the distributions its trials
    suggested from (``distributions``). ``tune`` compares them with the new config before it
    opens the study for writing."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage_url.startswith(RDB_PREFIXES):
        if storage_url.startswith("sqlite:"):
            from sqlalchemy.engine import make_url

            database = make_url(storage_url).database
            if not database or database == ":memory:" or not Path(database).is_file():
                return None
        else:
            import sqlalchemy

            engine = sqlalchemy.create_engine(storage_url)
            try:
                tables = _retrying(lambda: sqlalchemy.inspect(engine).get_table_names())
            finally:
                engine.dispose()
            if "studies" not in tables:  # Optuna would create its tables: a write
                return None
        storage = open_storage(storage_url)
    else:
        path = Path(storage_url.removeprefix("journal:")).expanduser()
        if not path.is_file():
            return None
        storage = JournalStorage(UninterruptedJournal(str(path)))
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return None
    trials = storage.get_all_trials(study_id, deepcopy=False)
    distributions: dict[str, Any] = {}
    for trial in trials:
        distributions.update(trial.distributions)
    return {"user_attrs": dict(storage.get_study_user_attrs(study_id)),
            "n_trials": len(trials), "distributions": distributions}


def stored_user_attrs(storage_url: str, study_name: str) -> dict[str, Any]:
    """A stored study's user attributes (its tunelab config, tracking URI, parent run)."""
    return dict(open_study(storage=storage_url, study_name=study_name).user_attrs)


def delete_study(storage_url: str, study_name: str) -> None:
    optuna.delete_study(study_name=study_name, storage=open_storage(storage_url))


def state_counts(study: optuna.Study) -> dict[str, int]:
    """``n_complete``, ``n_pruned``, ``n_fail``: the study's trials by state."""
    from collections import Counter

    states = Counter(t.state.name.lower() for t in study.get_trials(deepcopy=False))
    return {f"n_{state}": states.get(state, 0) for state in ("complete", "pruned", "fail")}


def top_trials(study: optuna.Study, k: int = 5) -> list[FrozenTrial]:
    """The ``k`` complete trials with the best (first) objective value."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    reverse = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    return sorted(complete, key=lambda t: t.values[0], reverse=reverse)[:k]


def finished_trial_records(study: optuna.Study) -> list[dict[str, Any]]:
    """Every trial that trained and ended (complete, pruned or failed), as plain dicts with
    what a tracking store needs to log it again (``tunelab sync``)."""
    records = []
    for t in study.get_trials(deepcopy=False):
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL):
            continue
        if "skipped" in t.user_attrs or ("history" not in t.user_attrs
                                         and t.state == TrialState.FAIL):
            continue
        records.append({"number": t.number, "state": t.user_attrs.get("state", t.state.name),
                        "params": t.user_attrs.get("hparams", t.params),
                        "history": t.user_attrs.get("history"),
                        "summary": t.user_attrs.get("summary"),
                        "reason": t.user_attrs.get("reason", ""),
                        "seed": t.user_attrs.get("seed", 0),
                        "model_summary": t.user_attrs.get("model_summary"),
                        "confusion": t.user_attrs.get("val_confusion")})
    return records


# -- a study's end, computed once ---------------------------------------------------------
def study_end(study: optuna.Study, selection: Any, k: int = 5) -> dict[str, Any]:
    """What the end of a study reports, from one selection (``selection.select_from_study``):
    state counts, the best trial (for a multi-objective study, the rule's pick on the Pareto
    front), the Pareto front and its points, the top ``k`` trials."""
    from .selection import overfit_gap

    multi = is_multi_objective(study)
    if multi:
        record = selection.chosen or selection.best_by_objective
        best = None if record is None else study.trials[record.number]
    else:
        best = best_trial(study)
    summary: dict[str, Any] = state_counts(study)
    if best is not None:
        summary.update({"best_value": best.values[0], "best_trial": best.number,
                        "best_params": best.params,
                        "best_run_id": best.user_attrs.get("mlflow_run_id")})
    front = sorted(v.record.number for v in selection.verdicts if v.on_front) if multi else []
    if multi:
        summary["pareto_front"] = front
        summary["n_pareto_front"] = len(front)
    return {"summary": summary, "best": best, "multi": multi, "front": front,
            "pareto_points": [(v.record.number, v.record.value, overfit_gap(v.record.gap),
                               v.on_front) for v in selection.verdicts] if multi else [],
            "chosen": selection.chosen.number if selection.chosen else None,
            "top": top_trials(study, k)}
