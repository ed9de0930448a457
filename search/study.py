"""The Optuna side of a study: storage, sampler, pruner, and the trial budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

RDB_PREFIXES = ("sqlite:", "postgresql", "mysql", "oracle", "mssql")
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """A database URL gives RDB storage (heartbeats, many machines); a file path gives
    Optuna's journal file (safe for parallel local workers, no heartbeats)."""
    if url.startswith(RDB_PREFIXES):
        return RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
    path = Path(url.removeprefix("journal:")).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def make_sampler(kind: str, *, seed: int, n_startup_trials: int = 5,
                 grid: dict[str, list[Any]] | None = None) -> optuna.samplers.BaseSampler:
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials,
                                          multivariate=True, constant_liar=True)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "grid":
        return optuna.samplers.GridSampler(grid or {}, seed=seed)
    raise ValueError(f"unknown sampler {kind!r}: choose tpe, random or grid")


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
               sampler: optuna.samplers.BaseSampler | None = None,
               pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    """Create the study, or resume it by name; without a direction it must already exist."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    backend = open_storage(storage)
    if direction is None:
        try:
            return optuna.load_study(study_name=study_name, storage=backend, sampler=sampler,
                                     pruner=pruner)
        except KeyError:
            names = [s.study_name for s in optuna.get_all_study_summaries(backend)]
            raise ValueError(f"no study named {study_name!r} in {storage} (found: "
                             f"{', '.join(names) or 'none'})") from None
    return optuna.create_study(storage=backend, study_name=study_name, direction=direction,
                               sampler=sampler, pruner=pruner, load_if_exists=True)


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


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    try:
        return study.best_trial
    except ValueError:
        return None
