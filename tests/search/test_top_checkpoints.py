"""The top-checkpoint store with several workers on one study: a worker's prune never deletes
the file of a trial another worker is still finishing (saved before Optuna stores its end)."""

from __future__ import annotations

import numpy as np
import optuna

from tunelab.search.crossval import OutOfFold
from tunelab.search.selection import ObjectiveRule, record_from_summary
from tunelab.search.top_checkpoints import CheckpointStore


def _oof(seed: int) -> OutOfFold:
    rng = np.random.default_rng(seed)
    return OutOfFold(rng.random((6, 2)).astype("float32"), np.array([0, 1] * 3),
                     np.arange(6), np.array([0, 0, 1, 1, 2, 2]), "categorical_crossentropy")


def _record(number: int, value: float):
    summary = {"best_val_accuracy": value, "best_accuracy": value}
    return record_from_summary(number, value, summary, "val_accuracy")


def test_a_prune_keeps_the_file_of_a_trial_another_worker_has_not_finished(tmp_path):
    study = optuna.create_study(direction="maximize")
    store = CheckpointStore(tmp_path, keep_top=1,
                            rule=ObjectiveRule("val_accuracy", "maximize"))
    # worker A: trial 0 trains, ranks first among what is finished, saves its file, and has
    # not yet been told to Optuna (it is still RUNNING in the storage)
    trial_a = study.ask()
    path_a = store.save_out_of_fold(study, _record(trial_a.number, 0.9), _oof(0))
    assert path_a is not None and path_a.exists()
    # worker B: trial 1 ends with a lower score; it ranks first among the finished trials
    # (trial 0 is not finished yet), and its prune must leave trial 0's file alone
    trial_b = study.ask()
    path_b = store.save_out_of_fold(study, _record(trial_b.number, 0.5), _oof(1))
    assert path_b is not None
    assert path_a.exists(), "worker B's prune deleted the file of worker A's running trial"
    study.tell(trial_b, 0.5)
    # once trial 0 is finished, the next save ranks it: the best one stays, the others go
    study.tell(trial_a, 0.9)
    trial_c = study.ask()
    assert store.save_out_of_fold(study, _record(trial_c.number, 0.1), _oof(2)) is None
    assert set(store.saved_out_of_fold()) == {trial_a.number}


def test_without_running_trials_only_the_top_files_stay(tmp_path):
    study = optuna.create_study(direction="maximize")
    store = CheckpointStore(tmp_path, keep_top=2,
                            rule=ObjectiveRule("val_accuracy", "maximize"))
    for i, value in enumerate((0.6, 0.8, 0.7, 0.9)):
        trial = study.ask()
        store.save_out_of_fold(study, _record(trial.number, value), _oof(i))
        study.tell(trial, value)
    assert set(store.saved_out_of_fold()) == {1, 3}
