"""The ablation's variant logic and numbers, as pure functions on parameters and histories."""

from __future__ import annotations

import math

import pytest

from tunelab.search.ablation import (
    AUGMENTATION_ON,
    AblationError,
    SeedRun,
    Variant,
    ablation_seeds,
    coerce,
    curve_band,
    figure_series,
    first_epoch_reaching,
    knob_table,
    parse_knob,
    report_section,
    variants_for,
)
from tunelab.search.space import SearchSpace

PARAMS = {"learning_rate": 0.001, "n_base": 16, "batch_norm": False, "dropout": 0.2,
          "optimizer": "adam", "dense_units": "128-64"}
DEFAULTS = {"n_base": 16, "batch_norm": False, "dense_batch_norm": False, "dropout": 0.0,
            "dense_units": 64, "kernel_size": 3, "learning_rate": 0.001, "optimizer": "adam",
            "rotation": 0.0, "width_shift": 0.0, "height_shift": 0.0, "horizontal_flip": False,
            "vertical_flip": False, "zoom": 0.0, "intensity_percentile": 0.0}


def changes(knob, params=PARAMS, space=None):
    return [v.change for v in variants_for(parse_knob(knob), params, DEFAULTS, space)]


def test_named_knobs_mean_the_labs_variants():
    assert changes("batch_norm") == [{}, {"batch_norm": True}]
    assert changes("dense_batch_norm") == [{}, {"dense_batch_norm": True}]  # not searched
    assert changes("dropout") == [{}, {"dropout": 0.0}, {"dropout": 0.4}]  # 0.2 is the base
    lr = changes("learning_rate")
    assert lr[0] == {} and [math.isclose(c["learning_rate"], v)
                            for c, v in zip(lr[1:], [0.01, 0.0001], strict=True)] == [True] * 2
    assert changes("n_base") == [{}, {"n_base": 8}, {"n_base": 32}]
    assert changes("augmentation") == [{}, AUGMENTATION_ON]
    augmented = {**PARAMS, "rotation": 15.0, "horizontal_flip": True}
    assert changes("augmentation", augmented) == [{}, {"rotation": 0.0, "horizontal_flip": False}]


def test_given_values_and_searched_dimensions():
    assert changes("optimizer=sgd,rmsprop,adam") == [{}, {"optimizer": "sgd"},
                                                     {"optimizer": "rmsprop"}]
    assert changes("dense_units=256-64,128-64") == [{}, {"dense_units": "256-64"}]
    space = SearchSpace.from_yaml({"optimizer": ["adam", "sgd"], "n_base": [8, 16, 32],
                                   "dropout": {"low": 0.0, "high": 0.5}})
    assert changes("optimizer", space=space) == [{}, {"optimizer": "sgd"}]
    assert changes("dropout=0.5", space=space) == [{}, {"dropout": 0.5}]
    with pytest.raises(AblationError, match="give them, e.g. kernel_size=A,B"):
        changes("kernel_size")  # not searched, not named: the values must be given
    with pytest.raises(AblationError, match="not a hyperparameter"):
        changes("momentumm")
    with pytest.raises(AblationError, match="nothing to compare"):
        changes("optimizer=adam")


def test_a_variant_changes_only_its_knob_and_a_family_knob_keeps_its_name():
    variant = variants_for(parse_knob("batch_norm"), PARAMS, DEFAULTS)[1]
    assert variant.params == {**PARAMS, "batch_norm": True}
    family = {"model": "lenet", "lenet.n_base": 8, "learning_rate": 0.01}
    doubled = variants_for(parse_knob("n_base"), family, DEFAULTS)[2]
    assert doubled.params == {"model": "lenet", "lenet.n_base": 16, "learning_rate": 0.01}
    widths = variants_for(parse_knob("dense_units=256-64"), PARAMS, DEFAULTS)[1]
    assert widths.params["dense_units"] == "256-64"
    with pytest.raises(AblationError, match="family"):
        changes("model=lenet")


def test_values_are_typed_like_the_base():
    assert coerce("0.5", 0.2) == 0.5 and coerce("32", 16) == 32 and coerce("off", True) is False
    assert coerce("sgd", "adam") == "sgd" and isinstance(coerce("1", 0.1), float)
    with pytest.raises(AblationError):
        coerce("maybe", False)


def test_seeds_start_at_the_trial_seed():
    assert ablation_seeds(45, 3) == [45, 46, 47]
    with pytest.raises(AblationError):
        ablation_seeds(45, 0)


def test_curve_band_and_first_epoch():
    mean, std = curve_band([{"a": [0.0, 1.0, 2.0]}, {"a": [2.0, 3.0]}], "a")
    assert mean == [1.0, 2.0, 2.0] and std == [1.0, 1.0, 0.0]
    assert first_epoch_reaching([0.5, 0.7, 0.9, 0.95], 0.9) == 3
    assert first_epoch_reaching([0.5, 0.7], 0.9) is None


def run(seed, acc, val):
    history = {"accuracy": acc, "val_accuracy": val, "loss": [1 - a for a in acc],
               "val_loss": [1 - v for v in val]}
    from tunelab.search.ablation import seed_run

    return seed_run(seed, history, "val_accuracy", "maximize")


def test_knob_table_numbers_and_statement():
    base = Variant("base", {}, {"batch_norm": False})
    bn = Variant("batch_norm=True", {"batch_norm": True}, {"batch_norm": True})
    results = [
        (base, [run(1, [0.5, 0.6, 0.7, 0.8], [0.5, 0.55, 0.6, 0.58]),
                run(2, [0.4, 0.6, 0.8, 0.8], [0.5, 0.5, 0.62, 0.6])]),
        (bn, [run(1, [0.7, 0.85, 0.9, 0.95], [0.6, 0.65, 0.64, 0.63]),
              run(2, [0.6, 0.8, 0.9, 0.9], [0.55, 0.66, 0.6, 0.6])]),
    ]
    table = knob_table("batch_norm", results, "val_accuracy", "maximize")
    assert table.target == pytest.approx(0.8)  # the base's final training accuracy
    b, v = table.rows
    assert b.is_base and b.best == pytest.approx((0.6 + 0.62) / 2)
    assert b.final == pytest.approx((0.58 + 0.6) / 2)
    assert b.reach_epoch == pytest.approx((4 + 3) / 2) and b.reach_seeds == 2
    assert v.best == pytest.approx((0.65 + 0.66) / 2)
    assert v.best_sd == pytest.approx(math.sqrt(2 * 0.005**2))
    assert v.effect == pytest.approx(((0.65 - 0.6) + (0.66 - 0.62)) / 2)
    assert v.effect_sd == pytest.approx(math.sqrt(2 * 0.005**2))
    assert v.reach_epoch == pytest.approx(2.0)
    assert v.gap == pytest.approx(((0.85 - 0.65) + (0.8 - 0.66)) / 2)
    assert v.per_seed[1]["epoch_reaching_base_accuracy"] == 2
    statement = table.statement()
    assert statement == ("batch_norm: batch_norm=True: +0.045 val_accuracy (best epoch), "
                         "0.007 across 2 seeds; reaches the base's final training accuracy "
                         "0.800 at epoch 2 instead of 3.5")
    assert table.header()[2] == "best val_accuracy" and len(table.cells()) == 2
    assert table.to_dict()["rows"][1]["effect"] == pytest.approx(v.effect)
    assert "### batch_norm" in report_section([table], trial=3)
    series = figure_series(results)
    assert series[0]["base"] and series[1]["curves"]["accuracy"]["mean"][0] == pytest.approx(
        0.65)


def test_a_variant_that_never_reaches_the_base_accuracy_says_so():
    base = Variant("base", {}, {})
    slow = Variant("learning_rate=1e-05", {"learning_rate": 1e-5}, {"learning_rate": 1e-5})
    results = [(base, [run(1, [0.5, 0.9], [0.5, 0.8])]),
               (slow, [run(1, [0.5, 0.6], [0.5, 0.55])])]
    table = knob_table("learning_rate", results, "val_accuracy", "maximize")
    assert table.rows[1].reach_epoch is None and table.cells()[1][7] == "never"
    assert "in none of its epochs instead of 2" in table.statement()
    assert "one seed: no spread" in table.statement()
    assert isinstance(results[0][1][0], SeedRun)
