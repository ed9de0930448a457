"""One trial at a time, in process, against a real SQLite MLflow store."""

import optuna
import pytest

from tunelab.models.data import load_dataset
from tunelab.models.training import TrainingSettings
from tunelab.search import Objective, SearchSpace, run_trials, summarize
from tunelab.tracking import StudyTracker


@pytest.fixture(scope="module")
def digits8():
    return load_dataset("digits", image_size=8, seed=0)


def make(tmp_path, data, space, **kw):
    tracker = StudyTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "unit")
    tracker.start_study(config={"model": "lenet"}, space={}, data_info={"fingerprint": "x"})
    objective = Objective(model_name="lenet", space=SearchSpace.from_yaml(space), data=data,
                          training=TrainingSettings(max_epochs=kw.pop("max_epochs", 2),
                                                    batch_size=128),
                          metric="val_accuracy", direction="maximize", tracker=tracker, **kw)
    return objective, tracker


def test_pruned_trial_is_recorded_with_its_epoch(tmp_path, digits8):
    objective, tracker = make(tmp_path, digits8, {"n_base": 4, "dense_units": 8})
    # val_accuracy can never reach 1.5: the pruner stops every trial after its first epoch
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.ThresholdPruner(lower=1.5))
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.user_attrs["reason"] == "pruned at epoch 1"
    assert len(trial.user_attrs["history"]["loss"]) == 1
    (run,) = tracker.trial_runs()
    assert run.data.tags["tunelab.state"] == "PRUNED"
    assert run.data.tags["tunelab.reason"] == "pruned at epoch 1"
    assert run.info.status == "FINISHED"


def test_diverged_trial_fails_with_reason_and_the_study_goes_on(tmp_path, digits8):
    space = {"n_base": 4, "dense_units": 8, "optimizer": "sgd",
             "learning_rate": [1.0e12, 1.0e-3]}
    objective, tracker = make(tmp_path, digits8, space, n_trials=2)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.GridSampler({"learning_rate": [1.0e12, 1.0e-3]}))
    assert run_trials(study, objective, n_trials=2, max_trials_here=5) == "budget"
    states = {t.params["learning_rate"]: t for t in study.trials}
    failed = states[1.0e12]
    assert failed.state == optuna.trial.TrialState.FAIL
    assert "NaN" in failed.user_attrs["reason"]
    assert states[1.0e-3].state == optuna.trial.TrialState.COMPLETE
    runs = {r.data.params["learning_rate"]: r for r in tracker.trial_runs()}
    assert runs["1000000000000.0"].info.status == "FAILED"
    assert "NaN" in runs["1000000000000.0"].data.tags["tunelab.reason"]


def test_budget_is_counted_through_the_storage(tmp_path, digits8):
    objective, _ = make(tmp_path, digits8, {"n_base": 4, "dense_units": 8}, n_trials=2,
                        max_epochs=1)
    study = optuna.create_study(direction="maximize")
    assert run_trials(study, objective, n_trials=2, max_trials_here=1) == "recycle"
    assert run_trials(study, objective, n_trials=2) == "budget"
    assert len(study.trials) == 2
    # a trial asked beyond the budget (as another worker might) fails without training
    objective.n_trials = 2
    study.optimize(objective, n_trials=1, catch=(Exception,))
    extra = study.trials[-1]
    assert extra.state == optuna.trial.TrialState.FAIL
    assert "budget" in extra.user_attrs["skipped"]


def test_summary_gap_and_overfitting_flag():
    history = {"loss": [1.0, 0.5, 0.3, 0.2, 0.1], "val_loss": [1.0, 0.6, 0.7, 0.8, 0.9],
               "accuracy": [0.5, 0.8, 0.9, 0.95, 0.99], "val_accuracy": [0.5, 0.8, 0.78, 0.77,
                                                                         0.76]}
    s = summarize(history, "val_accuracy", "maximize")
    assert s["best_epoch"] == 2 and s["epochs_since_best"] == 3
    assert s["gap_accuracy"] == pytest.approx(0.0)
    assert s["gap_loss"] == pytest.approx(0.1)
    assert s["overfitting"] == 1.0
    history["val_loss"][2] = 0.55
    assert summarize(history, "val_loss", "minimize")["best_epoch"] == 3
