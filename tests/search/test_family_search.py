"""The model family as a searched, conditional parameter; a user's own builder; warm starts;
and frozen-backbone features shared by the trials of a real (in-process) study."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from conftest import tiny_study

import tunelab
from tunelab.config import ConfigError, config_from_dict
from tunelab.models import feature_cache
from tunelab.search.conditional import FamilySpace, build_space, split_params
from tunelab.validation import validate_against_data

FAMILY_SPACE = {
    "model": ["lenet", "mlp", "resnet8"],
    "learning_rate": {"low": 1e-3, "high": 1e-2, "log": True},
    "batch_size": 128,
    "n_base": [4, 8],  # lenet and resnet8 have n_base, mlp does not
    "mlp": {"dense_units": [8, 16], "n_layers": [1, 2]},
    "resnet8": {"n_base": [4]},  # the family's own value wins over the shared one
}


def test_suggests_the_family_first_then_only_its_parameters():
    space = build_space(FAMILY_SPACE)
    assert isinstance(space, FamilySpace)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(20):
        trial = study.ask()
        params = space.suggest(trial)
        study.tell(trial, 0.0)
        family = params["model"]
        seen.add(family)
        assert set(trial.params) == set(params) - {"resnet8.n_base", "batch_size"}  # Fixed
        if family == "mlp":
            assert "n_base" not in params and {"mlp.dense_units", "mlp.n_layers"} <= set(params)
        else:
            assert "n_base" in params and not any(k.startswith("mlp.") for k in params)
        name, model, training = split_params(params, "lenet")
        assert name == family and "learning_rate" in training
        assert not any("." in k for k in model)
        if family == "resnet8":
            assert model["n_base"] == 4
    assert seen == {"lenet", "mlp", "resnet8"}
    assert space.to_yaml()["mlp"] == {"dense_units": [8, 16], "n_layers": [1, 2]}


def test_model_list_is_the_family_search(tmp_path):
    config = config_from_dict(tiny_study(tmp_path, model=["lenet", "alexnet"]))
    assert config.model == "lenet"
    assert config.space["model"] == ["lenet", "alexnet"]
    assert config.search_space.families() == ["lenet", "alexnet"]
    with pytest.raises(ConfigError, match="'vgg16' is not one of the models space.model"):
        config_from_dict({**tiny_study(tmp_path), "model": "vgg16",
                          "space": {"model": ["lenet", "alexnet"]}})


@pytest.mark.parametrize(("space", "words"), [
    ({"model": ["lenet", "mlp"], "mlp": {"n_base": [4, 8]}}, r"space\.mlp\.n_base.*'mlp'"),
    ({"model": ["lenet", "mlp"], "n_stages": [2, 3]}, r"space\.n_stages.*any searched model"),
    ({"model": ["lenet", "vgg16"]}, r"vgg16.*32x32"),
    ({"model": ["lenet", "nope"]}, r"model: unknown model 'nope'"),
])
def test_family_space_is_checked_per_family(tmp_path, space, words):
    from tunelab.wiring import load_data

    config = config_from_dict(tiny_study(tmp_path, space=space))
    with pytest.raises(ConfigError, match=words):
        validate_against_data(config, load_data(config))


@pytest.mark.slow
def test_one_study_compares_families_with_a_warm_start(tmp_path):
    raw = tiny_study(tmp_path, space=FAMILY_SPACE, n_trials=3,
                     warm_start=[{"model": "resnet8", "learning_rate": 5e-3, "n_base": 8}])
    study = tunelab.tune(raw, in_process=True)
    trials = sorted(study.trials, key=lambda t: t.number)
    assert trials[0].user_attrs.get("warm_start") is True
    assert trials[0].params == {"model": "resnet8", "learning_rate": 5e-3, "n_base": 8}
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    for t in trials:
        assert t.user_attrs["model"] == t.params["model"]
    # resuming with a bigger budget does not enqueue the warm start again
    study = tunelab.tune({**raw, "n_trials": 4}, in_process=True)
    assert sum(bool(t.user_attrs.get("warm_start")) for t in study.trials) == 1
    assert len(study.trials) == 4


@pytest.mark.parametrize(("entry", "words"), [
    ({"n_bse": 8}, r"warm_start\[0\]\.n_bse: not a searched parameter"),
    ({"n_base": 12}, r"warm_start\[0\]\.n_base: 12 is outside space\.n_base"),
    ({"batch_size": 64}, r"batch_size: not a searched"),  # fixed in the space
])
def test_bad_warm_start_names_the_entry(tmp_path, entry, words):
    with pytest.raises(ConfigError, match=words):
        config_from_dict(tiny_study(tmp_path, warm_start=[entry]))


USER_MODULE = '''
import keras
from tunelab.models import Head


def build(input_shape, n_classes, width=8, depth=1, loss="categorical_crossentropy"):
    """A user's tiny CNN."""
    inputs = keras.Input(input_shape)
    x = inputs
    for _ in range(depth):
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, Head(loss, n_classes).output_layer()(x))


def no_head(input_shape, n_classes):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_lab_models.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_lab_models"


def test_user_model_in_a_study(tmp_path, user_module):
    raw = tiny_study(tmp_path, model=f"{user_module}:build",
                     space={"width": [4, 8], "depth": [1, 2], "batch_size": 128})
    study = tunelab.tune(raw, in_process=True)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 3 and all(set(t.params) <= {"width", "depth"} for t in done)


def test_user_model_joins_a_family_search(tmp_path, user_module):
    name = f"{user_module}:build"
    space = {"model": ["lenet", name], name: {"width": [4, 8]}, "batch_size": 128}
    config = config_from_dict(tiny_study(tmp_path, space=space))
    from tunelab.wiring import load_data

    validate_against_data(config, load_data(config))
    assert f"{name}.width" in config.search_space.dimensions


@pytest.mark.parametrize(("model", "words"), [
    ("no_such_module:build", r"cannot import module 'no_such_module'.*PYTHONPATH"),
    ("my_lab_models:missing", r"has no 'missing' \(it has: .*build"),
    ("my_lab_models", r"unknown model"),
])
def test_user_model_import_errors_are_clear(tmp_path, user_module, model, words):
    from tunelab.wiring import load_data

    config = config_from_dict(tiny_study(tmp_path, model=model, space={"batch_size": 128}))
    with pytest.raises(ConfigError, match=words):
        validate_against_data(config, load_data(config))


def test_user_model_output_must_fit_the_loss(user_module):
    from tunelab.models import build_model

    with pytest.raises(ValueError, match="3 units but loss 'binary_crossentropy'.*needs 1"):
        build_model(f"{user_module}:no_head", (8, 8, 1), 2)


def _tiny_npz(path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 30), ("val", 15)):
        arrays[f"{split}_images"] = (rng.random((n, 8, 8)) * 255).astype("uint8")
        arrays[f"{split}_labels"] = (np.arange(n) % 3).reshape(-1, 1)
    np.savez(path, **arrays)
    return path


def test_trials_share_cached_backbone_features(tmp_path, monkeypatch):
    monkeypatch.setattr(feature_cache, "STATS", feature_cache.Counter())
    feature_cache.clear_memory()
    raw = tiny_study(tmp_path, model="vgg16_transfer", n_trials=2,
                     dataset={"source": str(_tiny_npz(tmp_path / "tiny.npz")), "image_size": 8,
                              "cache_dir": str(tmp_path / "cache"), "cv_folds": 1},
                     space={"weights": None, "dense_units": [8, 16], "batch_size": 16,
                            "learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}})
    study = tunelab.tune(raw, in_process=True)
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert trials[0].user_attrs["transfer"]["feature_cache"] == "train: computed, val: computed"
    assert trials[1].user_attrs["transfer"]["feature_cache"] == "train: memory, val: memory"
    assert feature_cache.STATS["computed"] == 2  # train and val, once for the whole study
    files = list((tmp_path / "cache" / "features").glob("features-vgg16-*.npy"))
    assert len(files) == 2
