"""Per-layer dense widths as a searched choice: encoded once for Optuna ("128-64"), decoded
once by the model's validator, through both engines, warm starts and config validation."""

from __future__ import annotations

import optuna
import pytest

from tunelab.config import ConfigError, load_config
from tunelab.models import build_model, resolve_hparams
from tunelab.models.dense_widths import decode, encode
from tunelab.search.conditional import split_params
from tunelab.search.space import Choice, Fixed, SearchSpace, parse_dimension
from tunelab.search.warm_start import check_warm_start
from tunelab.validation import validate_against_data
from tunelab.wiring import load_data

STACKS = [[128, 64], [256, 64], [512, 128, 32]]


def test_lists_are_encoded_once_and_decoded_by_the_validator():
    assert parse_dimension("dense_units", STACKS) == Choice(("128-64", "256-64", "512-128-32"))
    assert parse_dimension("dense_units", [[128, 64]]) == Fixed("128-64")
    assert parse_dimension("dense_units", [64, 128]) == Choice((64, 128))  # widths, as before
    assert parse_dimension("dense_units", "128-64") == Fixed("128-64")
    assert [decode("dense_units", encode(s)) for s in STACKS] == [tuple(s) for s in STACKS]
    assert resolve_hparams("alexnet", dense_units="256-64")["dense_units"] == (256, 64)
    with pytest.raises(ValueError, match="per-layer widths"):
        parse_dimension("dense_units", [[128, "x"]])


def test_optuna_suggests_the_encoded_choice_and_the_model_gets_ints():
    space = SearchSpace.from_yaml({"dense_units": STACKS, "n_base": 4})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        params = space.suggest(trial)
        seen.add(params["dense_units"])
        study.tell(trial, 0.0)
    assert seen <= {"128-64", "256-64", "512-128-32"} and len(seen) > 1
    assert isinstance(study.trials[0].distributions["dense_units"],
                      optuna.distributions.CategoricalDistribution)
    _, model_params, _ = split_params({"dense_units": "512-128-32", "n_base": 4}, "alexnet")
    model = build_model("alexnet", (16, 16, 1), 2, **model_params)
    assert [layer.units for layer in model.layers if hasattr(layer, "units")] == [512, 128, 32, 1]


def test_keras_tuner_mapping_carries_the_encoded_choice():
    keras_tuner = pytest.importorskip("keras_tuner")
    from tunelab.search.keras_tuner_engine import declare, decode, distributions

    space = SearchSpace.from_yaml({"dense_units": STACKS, "dropout": [0.0, 0.4]})
    hp = keras_tuner.HyperParameters()
    declare(space, hp)
    hp.values["dense_units"] = "256-64"
    params = decode(space, hp.values)
    assert params["dense_units"] == "256-64"
    dist = distributions(space)["dense_units"]
    assert dist._contains(dist.to_internal_repr(params["dense_units"]))
    mixed = SearchSpace.from_yaml({"dense_units": [64, [128, 64]]})  # int and list: indices
    hp = keras_tuner.HyperParameters()
    declare(mixed, hp)
    hp.values["dense_units"] = 1
    assert decode(mixed, hp.values)["dense_units"] == "128-64"


def test_warm_start_takes_lists_as_the_space_does():
    space = SearchSpace.from_yaml({"dense_units": STACKS})
    assert check_warm_start([{"dense_units": [256, 64]}], space) == [{"dense_units": "256-64"}]
    with pytest.raises(ValueError, match="outside space.dense_units"):
        check_warm_start([{"dense_units": [256, 32]}], space)


def test_config_validation_checks_every_stack_against_the_model(tmp_path):
    base = {"model": "alexnet", "dataset": {"source": "digits", "image_size": 8,
                                            "cache_dir": str(tmp_path / "cache")}}
    config = load_config(overrides={**base, "space": {"dense_units": STACKS}})
    assert config.search_space.dimensions["dense_units"] == Choice(
        ("128-64", "256-64", "512-128-32"))
    data = load_data(config)
    validate_against_data(config, data)
    bad = load_config(overrides={**base, "space": {"dense_units": [[128, 0], [64]]}})
    with pytest.raises(ConfigError, match=r"space.dense_units: .*'128-0'"):
        validate_against_data(bad, data)
