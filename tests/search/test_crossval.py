"""k-fold cross-validation: the folds (stratified, group-aware), a real tiny study whose trials
are cross-validated (Optuna attributes, MLflow metrics, out-of-fold predictions, `tunelab best`,
`tunelab register` calibrating out of fold), pruning steps counted across folds, and frozen
features computed once for the pool."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest
from conftest import tiny_study
from mlflow import MlflowClient

import tunelab
from tunelab.models import Head, build_model, feature_cache
from tunelab.models.data import Dataset, Split, load_dataset
from tunelab.models.data.folds import fold_rows, k_folds
from tunelab.models.data.sources import DataError
from tunelab.models.training import TrainingSettings
from tunelab.registering import best, open_finished_study, register, selection_table
from tunelab.search import Objective, SearchSpace
from tunelab.search.crossval import OutOfFold, train_folds
from tunelab.search.selection import ObjectiveRule, select_from_study
from tunelab.search.trial import confusion_counts
from tunelab.tracking.evaluation import fit_calibration
from tunelab.wiring import checkpoint_store, load_data


def _labels(n_per_class=(12, 9, 6), seed=0):
    y = np.concatenate([np.full(n, c) for c, n in enumerate(n_per_class)])
    return np.random.default_rng(seed).permutation(y)


def test_folds_cover_the_pool_once_and_are_stratified():
    y = _labels()
    folds = fold_rows(y, 3, seed=0)
    assert len(folds) == 3
    val = np.concatenate([v for _, v in folds])
    assert sorted(val.tolist()) == list(range(len(y)))  # each row validated exactly once
    for train, v in folds:
        assert not set(train) & set(v) and len(train) + len(v) == len(y)
        assert np.bincount(y[v], minlength=3).tolist() == (np.bincount(y) // 3).tolist()
    assert [v.tolist() for _, v in fold_rows(y, 3, seed=0)] == [v.tolist() for _, v in folds]
    assert [v.tolist() for _, v in fold_rows(y, 3, seed=1)] != [v.tolist() for _, v in folds]


def test_group_aware_folds_put_each_group_in_one_validation_part():
    rng = np.random.default_rng(0)
    groups = np.repeat([f"patient{i:02d}" for i in range(15)], 4)
    y = np.repeat(rng.integers(0, 2, 15), 4)  # a patient's images share their label
    folds = fold_rows(y, 3, seed=0, groups=groups)
    seen: dict[str, int] = {}
    for i, (train, val) in enumerate(folds):
        assert not set(groups[train]) & set(groups[val])
        for g in set(groups[val]):
            assert g not in seen, f"{g} validated in folds {seen[g]} and {i}"
            seen[g] = i
    assert set(seen) == set(groups)


def test_too_few_images_of_a_class_or_groups_is_a_clear_error():
    with pytest.raises(DataError, match=r"dataset.cv_folds: 7 folds need at least 7 images of "
                                        r"every class, but class id\(s\) \[2\] have only 6"):
        fold_rows(_labels(), 7, seed=0)
    groups = np.repeat(["a", "b", "c"], 9)
    with pytest.raises(DataError, match=r"dataset.cv_folds: 4 folds need at least 4 groups "
                                        r"but dataset.group_pattern finds 3"):
        fold_rows(_labels(), 4, seed=0, groups=groups)


def test_k_folds_keep_the_test_split_aside_and_groups_together():
    rng = np.random.default_rng(0)

    def split(n, first_group):  # groups of 3 images of one class
        groups = np.array([f"g{first_group + i // 3}" for i in range(n)])
        return Split(rng.random((n, 4, 4, 1), dtype="float32"), (np.arange(n) // 3) % 3,
                     groups)

    data = Dataset("tiny", ("a", "b", "c"), split(27, 0), split(18, 9), split(9, 15))
    folds = list(k_folds(data, 3, seed=0))
    pool_x = np.concatenate([data.train.x, data.val.x])
    for fold in folds:
        assert fold.data.test is data.test
        assert len(fold.data.train) + len(fold.data.val) == 45
        assert not set(fold.data.train.groups) & set(fold.data.val.groups)
        np.testing.assert_array_equal(fold.data.val.x, pool_x[fold.val_rows])
        np.testing.assert_array_equal(fold.data.train.x, pool_x[fold.train_rows])


# -- a real study -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cv_study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cv")
    raw = tiny_study(tmp, **{"dataset.cv_folds": 3, "n_trials": 2, "dataset.test_fraction": 0.2,
                             "objective.gap_tolerance": 1.0})
    study = tunelab.tune(raw, in_process=True)
    return tmp, raw, study


def test_trials_carry_fold_summaries_mean_and_fold_std(cv_study):
    _, raw, study = cv_study
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 2
    for trial in trials:
        folds = trial.user_attrs["folds"]
        assert [f["fold"] for f in folds] == [0, 1, 2]
        per_fold = [f["summary"]["best_val_accuracy"] for f in folds]
        summary = trial.user_attrs["summary"]
        assert summary["cv_folds"] == 3
        assert trial.value == pytest.approx(np.mean(per_fold))
        assert summary["best_val_accuracy"] == pytest.approx(np.mean(per_fold))
        assert summary["fold_std_val_accuracy"] == pytest.approx(np.std(per_fold))
        assert [summary[f"fold_{i}_val_accuracy"] for i in range(3)] == pytest.approx(per_fold)
        gaps = [f["summary"]["gap_accuracy"] for f in folds]
        assert summary["gap_accuracy"] == pytest.approx(np.mean(gaps))
        # pruning steps: fold f's epoch e is step f * max_epochs + e
        assert sorted(trial.intermediate_values) == [0, 1, 2, 3, 4, 5]
        for f, fold in enumerate(folds):
            reported = [trial.intermediate_values[f * 2 + e] for e in range(fold["epochs"])]
            assert reported == pytest.approx(
                trial.user_attrs["history"]["val_accuracy"][f * 2:f * 2 + 2], abs=1e-6)
        assert "checkpoint" not in trial.user_attrs  # no single model to keep


def test_fold_sizes_add_up_to_the_pool(cv_study):
    _, raw, study = cv_study
    data = load_dataset("digits", image_size=8, seed=42,  # the study's default seed
                        test_fraction=0.2)
    n_pool = len(data.train) + len(data.val)
    for trial in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        folds = trial.user_attrs["folds"]
        assert sum(f["n_val"] for f in folds) == n_pool
        assert all(f["n_train"] + f["n_val"] == n_pool for f in folds)


def test_mlflow_runs_carry_fold_metrics_and_curves_across_folds(cv_study):
    _, raw, study = cv_study
    client = MlflowClient(raw["tracking_uri"])
    for trial in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        metrics = run.data.metrics
        summary = trial.user_attrs["summary"]
        for i in range(3):
            assert metrics[f"fold_{i}_val_accuracy"] == pytest.approx(
                summary[f"fold_{i}_val_accuracy"])
        assert metrics["fold_std_val_accuracy"] == pytest.approx(
            summary["fold_std_val_accuracy"])
        assert metrics["cv_folds"] == 3
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")
                 if m.step < 100]  # the final summary value is logged at step 0 too
        assert {2, 3, 4, 5} <= set(steps)


def test_best_shows_the_fold_std(cv_study):
    _, raw, study = cv_study
    selection = best("tiny", raw["storage"])
    chosen = selection.chosen
    trial = study.trials[chosen.number]
    assert chosen.fold_std == pytest.approx(trial.user_attrs["summary"]["fold_std_val_accuracy"])
    text = selection_table(selection)
    assert "fold std" in text and f"{chosen.fold_std:.4f}" in text
    rule = ObjectiveRule("val_accuracy", "maximize", gap_tolerance=1.0)
    assert select_from_study(study, rule).chosen.number == chosen.number


def test_trials_keep_their_out_of_fold_outputs(cv_study):
    tmp, raw, study = cv_study
    config = open_finished_study("tiny", raw["storage"]).config
    data = load_data(config)
    pool_y = np.concatenate([data.train.y, data.val.y])
    store = checkpoint_store(config)
    client = MlflowClient(raw["tracking_uri"])
    for trial in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        path = store.out_of_fold_path(trial.number)
        assert trial.user_attrs["out_of_fold"] == str(path) and path.is_file()
        oof = OutOfFold.load(path)
        # every pool image once, scored by the model of the fold that held it out
        assert oof.rows.tolist() == list(range(len(pool_y)))
        np.testing.assert_array_equal(oof.y, pool_y)
        assert np.bincount(oof.fold).tolist() == [f["n_val"] for f in trial.user_attrs["folds"]]
        assert oof.outputs.shape == (len(pool_y), 10) and oof.fingerprint == data.fingerprint()
        assert oof.loss == "categorical_crossentropy"  # the default head of 10 classes
        # the same predictions the trial's validation confusion counts were made from
        pred = Head(oof.loss, 10).probabilities(oof.outputs).argmax(axis=1)
        assert confusion_counts(oof.y, pred, 10) == trial.user_attrs["val_confusion"]
        # and the trial's MLflow run keeps the same file
        run_id = trial.user_attrs["mlflow_run_id"]
        logged = np.load(client.download_artifacts(run_id, "out_of_fold.npz", str(tmp)))
        np.testing.assert_array_equal(logged["outputs"], oof.outputs)


def test_register_calibrates_a_cross_validated_trial_out_of_fold(cv_study):
    tmp, raw, study = cv_study
    import io

    printed = io.StringIO()
    reg = register("cv-clf", "tiny", raw["storage"], out=printed)
    assert reg.model_source == "retrained on train+validation (cross-validated trial)"
    assert "optimistic" in reg.compared and "over 3 folds" in reg.compared
    assert "training its 3 folds again" not in printed.getvalue()
    client = MlflowClient(raw["tracking_uri"])
    version = client.get_model_version("cv-clf", reg.version)
    assert version.tags["tunelab.trial"] == str(reg.trial)
    config = open_finished_study("tiny", raw["storage"]).config
    oof = OutOfFold.load(checkpoint_store(config).out_of_fold_path(reg.trial))
    n = len(oof.y)
    # fitted on the folds' out-of-fold outputs, not on the retrained model's own outputs
    # (it trained on every one of those images)
    assert f"fitted on out-of-fold predictions ({n} images)" in version.tags["calibration"]
    assert "in sample" not in version.tags["calibration"]
    expected = fit_calibration(oof.y, oof.outputs, loss=oof.loss)
    cal = logged_calibration(raw, "cv-clf", reg.version)
    assert cal["fitted_on"] == "out-of-fold predictions" and cal["n_fit"] == n
    assert cal["calibrator"]["temperature"] == pytest.approx(
        expected.calibrator.temperature, rel=1e-6)
    # ECE after, measured out of sample: cross-fitted within the out-of-fold set, and on the
    # test split in the evaluation run
    assert cal["cross_fit_parts"] == 5 and np.isfinite(cal["ece_cross_fitted_after"])
    report = json.load(open(client.download_artifacts(reg.evaluation_run_id,
                                                      "evaluation/report.json", str(tmp))))
    assert report["split"]["name"] == "test" and not report["calibration"][
        "ece_after_in_sample"]
    assert "which the calibration was not fitted on" in report["calibration"]["ece"]
    card = version.description
    assert f"out-of-fold predictions ({n} images, out of sample" in card
    assert "cross-fitted" in card and "not kept" not in card
    assert "calibration and operating point were fitted on the folds' out-of-fold" in card


def test_register_trains_the_folds_again_when_out_of_fold_outputs_are_missing(cv_study):
    tmp, raw, study = cv_study
    import io

    config = open_finished_study("tiny", raw["storage"]).config
    chosen = best("tiny", raw["storage"]).chosen.number
    path = checkpoint_store(config).out_of_fold_path(chosen)
    kept = OutOfFold.load(path)
    path.unlink()  # as in a study made before they were kept
    printed = io.StringIO()
    reg = register("cv-clf-again", "tiny", raw["storage"], out=printed)
    assert f"trial {chosen}: its out-of-fold predictions are not kept" in printed.getvalue()
    assert "training its 3 folds again" in printed.getvalue()
    client = MlflowClient(raw["tracking_uri"])
    version = client.get_model_version("cv-clf-again", reg.version)
    assert (f"fitted on out-of-fold predictions ({len(kept.y)} images)"
            in version.tags["calibration"])
    # same folds, same seeds: the outputs the study kept, made again
    cal = logged_calibration(raw, "cv-clf-again", reg.version)
    again = fit_calibration(kept.y, kept.outputs, loss=kept.loss)
    assert cal["calibrator"]["temperature"] == pytest.approx(again.calibrator.temperature,
                                                             rel=0.05)
    kept.save(path)


def logged_calibration(raw, name, version):
    """The calibration the registered model carries (its meta, loaded through MLflow)."""
    from tunelab.tracking import model_registry

    model = model_registry.load_pyfunc(raw["tracking_uri"], f"models:/{name}/{version}")
    return model.unwrap_python_model().meta["calibration"]


# -- pruning ------------------------------------------------------------------------------
def test_pruner_sees_steps_beyond_max_epochs(tmp_path):
    data = load_dataset("digits", image_size=8, seed=0)
    objective = Objective(model_name="lenet",
                          space=SearchSpace.from_yaml({"n_base": 4, "dense_units": 8}),
                          data=data, training=TrainingSettings(max_epochs=2, batch_size=128),
                          metric="val_accuracy", direction="maximize", cv_folds=3)
    # no accuracy reaches 1.5: the pruner stops the trial at the first step after its warm-up,
    # which lies in the second fold
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(
        lower=1.5, n_warmup_steps=3))
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert sorted(trial.intermediate_values) == [0, 1, 2, 3]  # fold 1, epoch 1 is step 3
    assert [f["fold"] for f in trial.user_attrs["folds"]] == [0]
    assert trial.user_attrs["reason"] == "pruned at epoch 4"


# -- frozen features ----------------------------------------------------------------------
def test_frozen_features_are_computed_once_for_the_pool(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)

    def split(n):
        return Split(rng.random((n, 8, 8, 1), dtype="float32"), np.arange(n) % 3)

    data = Dataset("tiny", ("a", "b", "c"), split(24), split(12))
    feature_cache.clear_memory()
    monkeypatch.setattr(feature_cache, "STATS", feature_cache.Counter())
    head = Head("categorical_crossentropy", 3)
    settings = TrainingSettings(max_epochs=1, batch_size=8)
    study = optuna.create_study(direction="maximize")
    caches = []
    for _ in range(2):
        trial = study.ask()
        result = train_folds(
            trial, data, 3, head=head, settings=settings, metric="val_accuracy",
            direction="maximize", seed=0, fold_seed=0, feature_cache_dir=str(tmp_path),
            build=lambda: build_model("vgg16_transfer", data.input_shape, 3, weights=None,
                                      dense_units=8))
        caches.append([e["feature_cache"] for e in result.extra["folds"]])
        assert len(result.y_pred) == 36
        feature_cache.clear_memory()  # as in a fresh worker process
    assert caches == [["cross-validation pool: computed"] + ["cross-validation pool: memory"] * 2,
                      ["cross-validation pool: disk"] + ["cross-validation pool: memory"] * 2]
    assert feature_cache.STATS == {"computed": 1, "memory": 4, "loaded": 1}
    assert len(list(tmp_path.glob("features-*.npy"))) == 1


def test_a_lab_npz_with_a_small_validation_class_gets_cross_validated_trials(tmp_path, capsys):
    """The lab default (``dataset.cv_folds: auto``): a validation split with 4 images of its
    smallest class makes every trial a 3-fold CV, picked by the CV mean; the header says
    why, and the study stores the decision."""
    rng = np.random.default_rng(0)
    path = tmp_path / "lab.npz"
    train_y, val_y = np.arange(60) % 3 == 0, np.array([1] * 4 + [0] * 16)
    np.savez(path, train_images=rng.integers(0, 255, (60, 8, 8), dtype="uint8"),
             train_labels=train_y.astype("int64"),
             val_images=rng.integers(0, 255, (20, 8, 8), dtype="uint8"),
             val_labels=val_y.astype("int64"))
    storage = str(tmp_path / "optuna.journal")
    study = tunelab.tune({"dataset": {"source": str(path), "cache_dir": str(tmp_path / "c")},
                          "n_trials": 1, "max_epochs": 1, "tracking": False,
                          "storage": storage, "checkpoints": {"dir": str(tmp_path / "ck")},
                          "space": {"learning_rate": [1e-3], "n_base": [4],
                                    "batch_size": [16]}}, in_process=True)
    header = capsys.readouterr().out
    assert ("3-fold cross-validation on train + validation (dataset.cv_folds auto: the "
            "validation split's smallest class has 4 images, fewer than 50)") in header
    assert "selection best_validation (selection.method auto)" in header
    stored = study.user_attrs["config"]
    assert stored["dataset"]["cv_folds"] == 3
    assert stored["selection"]["method"] == "best_validation"
    (trial,) = study.trials
    assert trial.user_attrs["summary"]["cv_folds"] == 3.0


def test_a_missing_out_of_fold_file_is_made_again_by_training_the_folds(cv_study, tmp_path):
    """``register`` calibrates out of fold; without the kept file (another machine, a trial
    outside the top checkpoints) it trains the trial's folds again and says so."""
    import dataclasses
    import io

    from tunelab.config import load_config
    from tunelab.registering import trial_out_of_fold
    from tunelab.search.selection import records_from_study

    _, raw, study = cv_study
    config = load_config(None, raw)
    config = dataclasses.replace(config, checkpoints=dataclasses.replace(
        config.checkpoints, dir=str(tmp_path / "elsewhere")))
    data = load_data(config)
    record = records_from_study(study, config.objective.metric)[0]
    said = io.StringIO()
    oof = trial_out_of_fold(config, data, record, out=said)
    assert "is missing" in said.getvalue() and "training its 3 folds again" in said.getvalue()
    assert sorted(set(oof.fold.tolist())) == [0, 1, 2] and oof.fingerprint == data.fingerprint()
