"""On a lab's own data (any source but the bundled digits) the keys a user leaves out take
``config.lab_defaults()``; digits keeps its defaults; a stored study keeps its own values."""

from tunelab.config import config_from_dict, default_space, lab_defaults, load_config
from tunelab.identity import merge_stored

NPZ = "/data/breastmnist.npz"  # the config never opens the file


def test_a_lab_dataset_gets_the_lab_defaults():
    config = load_config(None, {"dataset.source": NPZ})
    lab = lab_defaults()
    assert config.objective.metric == "val_auc"
    assert config.space == lab["space"]
    assert {"class_weight", "rotation", "width_shift", "horizontal_flip"} <= set(config.space)
    assert config.space["learning_rate"]["low"] == 1e-5 and "loss" not in config.space
    assert (config.max_epochs, config.early_stopping.patience) == (30, 6)
    assert (config.pruner.kind, config.pruner.n_warmup_steps) == ("median", 5)
    assert config.study_name == "breastmnist-lenet"


def test_digits_keeps_its_defaults():
    config = load_config(None, {})
    assert config.objective.metric == "val_accuracy" and config.space == default_space()
    assert (config.max_epochs, config.early_stopping.patience) == (15, 5)
    assert config.pruner.n_warmup_steps == 2


def test_keys_the_user_gives_win_and_sections_merge():
    mine = {"learning_rate": [1e-3], "n_base": [4]}
    config = load_config(None, {"dataset.source": NPZ, "objective.kind": "penalized",
                                "max_epochs": 4, "space": mine,
                                "pruner": {"kind": "none"}})
    assert (config.objective.kind, config.objective.metric) == ("penalized", "val_auc")
    assert config.max_epochs == 4 and config.space == mine
    assert config.pruner.kind == "none" and config.pruner.n_warmup_steps == 5
    # a model list searches the families over the lab space
    config = load_config(None, {"dataset.source": NPZ, "model": ["lenet", "alexnet"]})
    assert config.space["model"] == ["lenet", "alexnet"] and "class_weight" in config.space


def test_a_stored_study_keeps_the_defaults_it_was_made_with():
    """A study created before these defaults (digits-style space, val_accuracy) resumed with
    just its dataset keeps every stored value: a change of defaults never alters it."""
    before = config_from_dict({"dataset": {"source": NPZ}, "space": default_space(),
                               "objective": {"metric": "val_accuracy"}, "max_epochs": 15,
                               "early_stopping": {"patience": 5},
                               "pruner": {"n_startup_trials": 3, "n_warmup_steps": 2}})
    merged = merge_stored(before.to_dict(), {"dataset": {"source": NPZ}},
                          study_name=before.study_name, storage=None)
    resumed = config_from_dict(merged)
    assert resumed.objective.metric == "val_accuracy" and resumed.space == default_space()
    assert (resumed.max_epochs, resumed.pruner.n_warmup_steps) == (15, 2)


def test_registry_ensemble_is_checked_before_anything_runs():
    import pytest

    from tunelab.config import ConfigError

    with pytest.raises(ConfigError, match=r"registry.ensemble: 0 must be > 0"):
        load_config(None, {"registry.ensemble": 0})
    with pytest.raises(ConfigError, match=r"registry.ensemble: 3 with dataset.cv_folds 3"):
        load_config(None, {"registry.ensemble": 3, "dataset.cv_folds": 3})
    assert load_config(None, {"registry.ensemble": 3}).registry.ensemble == 3


def test_cross_validation_is_decided_by_the_validation_splits_smallest_class():
    """``dataset.cv_folds: auto`` and ``selection.method: auto`` (a lab's data): 3-fold
    trials picked by their CV mean when the validation split's smallest class has fewer
    than 50 images (BreastMNIST's 15 malignant), else plain trials and confirm_mean."""
    from tunelab.config import CV_AUTO_BELOW, resolve_auto

    config = load_config(None, {"dataset.source": NPZ})
    assert (config.dataset.cv_folds, config.selection.method) == ("auto", "auto")
    assert config.dataset.folds == 1  # undecided: no folds yet
    small, why = resolve_auto(config, CV_AUTO_BELOW - 1)
    assert (small.dataset.cv_folds, small.selection.method) == (3, "best_validation")
    assert "smallest class has 49 images, fewer than 50" in why
    large, why = resolve_auto(config, CV_AUTO_BELOW)
    assert (large.dataset.cv_folds, large.selection.method) == (1, "confirm_mean")
    # what the user sets wins; the KerasTuner engine and an ensemble train no folds
    mine, _ = resolve_auto(load_config(None, {"dataset.source": NPZ, "dataset.cv_folds": 5,
                                              "selection.method": "rule"}), 10)
    assert (mine.dataset.cv_folds, mine.selection.method) == (5, "rule")
    for keys in ({"engine": "keras-tuner"}, {"registry.ensemble": 3}):
        other, why = resolve_auto(load_config(None, {"dataset.source": NPZ, **keys}), 10)
        assert other.dataset.cv_folds == 1 and other.selection.method == "confirm_mean", why
    # digits has nothing auto
    digits = load_config(None, {})
    assert resolve_auto(digits, 10) == (digits, "")


def test_a_study_stores_its_decision_and_resumes_with_it():
    """The stored config holds the resolved folds: a resume (whose data might now decide
    otherwise) keeps them, so a study never changes its trials' kind."""
    from tunelab.config import resolve_auto

    created, _ = resolve_auto(load_config(None, {"dataset.source": NPZ}), 15)
    merged = merge_stored(created.to_dict(), {"dataset": {"source": NPZ}},
                          study_name=created.study_name, storage=None)
    resumed = config_from_dict(merged)
    assert (resumed.dataset.cv_folds, resumed.selection.method) == (3, "best_validation")
    assert resolve_auto(resumed, 500) == (resumed, "")


def test_too_few_images_for_the_folds_means_plain_trials():
    """A validation split small enough for ``auto`` folds, but a class with fewer images in
    train + validation than folds: plain trials (not a refusal), and the header says why."""
    import numpy as np

    from tunelab.models.data import Dataset, Split
    from tunelab.wiring import resolve_for_data

    def split(labels):
        labels = np.array(labels)
        return Split(np.zeros((len(labels), 4, 4, 1), dtype="float32"), labels)

    data = Dataset("tiny", ("a", "b"), split([0] * 10 + [1]), split([0] * 5 + [1]), None)
    config = resolve_for_data(load_config(None, {"dataset.source": NPZ}), data)
    assert (config.dataset.cv_folds, config.selection.method) == (1, "confirm_mean")
    assert data.info["auto_rule"].startswith(
        "no cross-validation (dataset.cv_folds auto: 3 folds need at least 3 images")
