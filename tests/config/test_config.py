"""Every kind of bad input is refused before anything is trained or written."""

import contextlib
import io
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tunelab.config import ConfigError, StudyConfig, load_config
from tunelab.search.space import Choice, Fixed, FloatRange, IntRange


def write(tmp_path: Path, raw: dict) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_default_config_is_valid_and_searches_the_lab_knobs():
    config = load_config()
    assert isinstance(config, StudyConfig)
    assert config.dataset.source == "digits"
    searched = set(config.search_space.searched())
    assert {"learning_rate", "batch_size", "n_base", "dropout", "spatial_dropout",
            "batch_norm", "optimizer", "loss"} <= searched
    assert config.storage_url.endswith("mlruns/optuna.journal")
    assert config.resolved_tracking_uri == "sqlite:///mlruns/mlflow.db"
    assert config.direction == "maximize"


def test_space_yaml_maps_onto_typed_dimensions():
    config = load_config(overrides={"space": {
        "learning_rate": {"low": 1e-5, "high": 1e-2, "log": True},
        "n_base": {"low": 8, "high": 32, "step": 8},
        "batch_size": [32, 64],
        "batch_norm": True,
    }})
    dims = config.search_space.dimensions
    assert dims["learning_rate"] == FloatRange(1e-5, 1e-2, None, True)
    assert dims["n_base"] == IntRange(8, 32, 8, False)
    assert dims["batch_size"] == Choice((32, 64))
    assert dims["batch_norm"] == Fixed(True)
    assert config.search_space.to_yaml()["n_base"] == {"low": 8, "high": 32, "step": 8}


def test_file_then_flags_override(tmp_path):
    path = write(tmp_path, {"model": "alexnet", "n_trials": 5, "max_epochs": 4})
    config = load_config(path, {"n_trials": 7, "dataset.source": "digits"})
    assert (config.model, config.n_trials, config.max_epochs) == ("alexnet", 7, 4)


@pytest.mark.parametrize("raw, words", [
    ({"n_trails": 3}, ["n_trails", "did you mean 'n_trials'"]),
    ({"dataset": {"imag_size": 3}}, ["dataset.imag_size", "image_size"]),
    ({"space": {"learning_rate": -0.001}}, ["space.learning_rate", "-0.001", "> 0"]),
    ({"space": {"learning_rate": {"low": -1, "high": 0.1}}}, ["space.learning_rate", "-1"]),
    ({"space": {"learning_rate": {"low": 0.1, "high": 0.01}}}, ["low (0.1)", "high (0.01)"]),
    ({"space": {"learning_rate": {"low": 0, "high": 0.1, "log": True}}}, ["log range", "low > 0"]),
    ({"space": {"batch_size": [32, 0]}}, ["space.batch_size", "0", ">= 1"]),
    ({"space": {"optimizer": ["adam", "adagrad"]}}, ["adagrad", "adam, sgd, rmsprop"]),
    ({"space": {"dropout": {"low": 0, "hi": 1}}}, ["space.dropout", "'low' and 'high'"]),
    ({"n_trials": -2}, ["n_trials", "-2"]),
    ({"n_trials": "ten"}, ["n_trials", "expected an integer", "ten"]),
    ({"max_epochs": 0}, ["max_epochs", "0"]),
    ({"timeout": -5}, ["timeout", "-5"]),
    ({"sampler": {"kind": "cmaes"}}, ["sampler.kind", "cmaes", "tpe, random, grid"]),
    ({"pruner": {"kind": "patient"}}, ["pruner.kind", "median"]),
    ({"lr_schedule": {"kind": "exp"}}, ["lr_schedule.kind", "cosine"]),
    ({"early_stopping": {"patience": -1}}, ["early_stopping.patience", "-1"]),
    ({"objective": {"metric": "accuracy"}}, ["'accuracy'", "validation metric"]),
    ({"objective": {"metric": "val_loss"}}, ["val_loss", "not comparable", "space.loss"]),
    ({"n_trials": None, "timeout": None}, ["budget"]),
    ({"sampler": {"kind": "grid"}}, ["grid", "space.learning_rate"]),
    ({"dataset": {"validation_fraction": 1.5}}, ["dataset.validation_fraction", "1.5"]),
    ({"study_name": "my study/1"}, ["study_name", "my study/1"]),
    ({"tracking_uri": "./mlruns"}, ["tracking_uri", "bare file store"]),
])
def test_bad_values_name_the_key_and_what_is_allowed(tmp_path, raw, words):
    path = write(tmp_path, raw)
    with pytest.raises(ConfigError) as info:
        if "tracking_uri" in raw:  # checked when the store would be opened, before writing
            from tunelab.tracking import resolve_tracking_uri
            try:
                resolve_tracking_uri(load_config(path).resolved_tracking_uri)
            except ValueError as err:
                raise ConfigError(str(err)) from None
        else:
            load_config(path)
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="no such study file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [lenet\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def run_cli(args, cwd):
    """The CLI in this process, saving a TensorFlow import per case (the installed command
    itself runs in test_examples.py::test_the_real_command)."""
    from tunelab.cli import main

    out, err, before = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(before)
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


@pytest.mark.parametrize("extra, words", [
    ({"model": "vgg16"}, ["vgg16", "32x32", "8x8", "image_size"]),
    ({"space": {"loss": ["binary_crossentropy", "categorical_crossentropy"]}},
     ["binary_crossentropy", "two classes", "10"]),
    ({"space": {"n_bse": [8, 16]}}, ["space.n_bse", "n_base"]),
    ({"space": {"dropout": [0.2, 1.5]}}, ["space.dropout", "1.5", "[0, 1)"]),
    ({"model": "resnet50x"}, ["resnet50x", "lenet"]),
    ({"dataset": {"source": "missing.npz", "image_size": 8}}, ["missing.npz", "no such file"]),
])
def test_impossible_combinations_exit_nonzero_and_write_nothing(tmp_path, extra, words):
    raw = {"study_name": "bad", "dataset": {"source": "digits", "image_size": 8},
           "n_trials": 1, "max_epochs": 1, **extra}
    write(tmp_path, raw)
    result = run_cli(["tune", "study.yaml"], tmp_path)
    assert result.returncode == 2, result.stderr
    for word in words:
        assert word in result.stderr, f"{word!r} not in {result.stderr!r}"
    assert not (tmp_path / "mlruns").exists(), "a refused config must not write to any store"
    assert "Traceback" not in result.stderr


def test_print_config_shows_the_resolved_config(tmp_path):
    result = run_cli(["tune", "--model", "alexnet", "--n-trials", "4", "--print-config"],
                     tmp_path)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert resolved["model"] == "alexnet" and resolved["n_trials"] == 4
    assert resolved["space"]["learning_rate"]["log"] is True
