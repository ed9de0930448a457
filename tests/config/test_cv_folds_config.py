"""dataset.cv_folds: bad values and impossible combinations are refused before anything is
trained or written, with the key in the message."""

import pytest
from conftest import tiny_study

import tunelab
from tunelab.config import ConfigError, load_config


@pytest.mark.parametrize("value", [None, 1, 2, 5])
def test_off_or_k_folds_are_accepted(value):
    assert load_config(overrides={"dataset.cv_folds": value}).dataset.cv_folds in (value, 1)


@pytest.mark.parametrize("value, words", [
    (0, r"dataset.cv_folds: 0 must be >= 2 \(k-fold cross-validation\) or 1 / null"),
    (-3, r"dataset.cv_folds: -3 must be >= 2"),
    (2.5, r"dataset.cv_folds: expected an integer, got 2.5"),
    (True, r"dataset.cv_folds: expected an integer, got True"),
])
def test_bad_values_name_the_key(value, words):
    with pytest.raises(ConfigError, match=words):
        load_config(overrides={"dataset.cv_folds": value})


def test_keras_tuner_engine_cannot_cross_validate():
    with pytest.raises(ConfigError, match=r"dataset.cv_folds: 3; engine: keras-tuner .* needs "
                                          r"engine: optuna"):
        load_config(overrides={"dataset.cv_folds": 3, "engine": "keras-tuner"})


def test_more_folds_than_images_of_a_class_is_refused_before_writing(tmp_path):
    # digits has about 180 images of each class in train + validation
    with pytest.raises(ConfigError, match=r"dataset.cv_folds: 400 folds need at least 400 "
                                          r"images of every class.*lower dataset.cv_folds"):
        tunelab.tune(tiny_study(tmp_path, fresh_store=True, **{"dataset.cv_folds": 400}),
                     in_process=True)
    assert not (tmp_path / "mlruns").exists()
