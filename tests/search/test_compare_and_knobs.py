"""A grid study over toggles overlays the variants' curves on its parent run; the
labs' remaining knobs are searchable end to end; LeNet's number of conv blocks."""

from __future__ import annotations

import keras
import optuna
import pytest
from conftest import tiny_study
from mlflow import MlflowClient

import tunelab
from tunelab.models import build_model, check_model_input
from tunelab.search.variant_curves import comparison_figure


def test_grid_study_overlays_the_variants_curves_on_the_parent_run(tmp_path):
    raw = tiny_study(tmp_path, n_trials=4, sampler={"kind": "grid"},
                     space={"batch_norm": [True, False], "dropout": [0.0, 0.4],
                            "n_base": 4, "dense_units": 8, "batch_size": 128})
    study = tunelab.tune(raw, in_process=True)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 4
    fig = comparison_figure(complete)
    acc = fig.axes[0]
    assert len(acc.lines) == 8  # train and validation per variant
    labels = [line.get_label() for line in acc.lines if not line.get_label().startswith("_")]
    assert len(labels) == 4 and all("batch_norm=" in s and "dropout=" in s for s in labels)
    client = MlflowClient(tracking_uri=raw["tracking_uri"])
    parent = study.user_attrs["mlflow_parent_run_id"]
    names = [a.path for a in client.list_artifacts(parent, "study")]
    assert "study/overfitting.png" in names  # every variant, with its gap


KNOBS = {"l1": [0.0, 1e-5], "l2": [0.0, 1e-4], "kernel_size": [3, 5], "padding": ["same"],
         "n_blocks": [1, 2], "conv_dropout": [0.0, 0.2], "spatial_dropout": [0.0, 0.1],
         "dense_units": [8, 16], "activation": ["relu", "elu", "gelu"], "n_base": 4,
         "batch_size": 128}


def test_every_knob_is_searchable_end_to_end(tmp_path):
    raw = tiny_study(tmp_path, space=KNOBS, n_trials=2, **{"dataset.image_size": 16})
    study = tunelab.tune(raw, in_process=True)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2
    searched = {k for k, v in KNOBS.items() if isinstance(v, list) and len(v) > 1}
    assert all(set(t.params) == searched for t in done)


@pytest.mark.parametrize("n_blocks", [1, 2, 3])
def test_lenet_number_of_conv_blocks(n_blocks):
    model = build_model("lenet", (32, 32, 1), 2, n_base=4, n_blocks=n_blocks)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [4 * 2**i for i in range(n_blocks)]
    check_model_input("lenet", (2**n_blocks, 2**n_blocks, 1), n_blocks=n_blocks)
    with pytest.raises(ValueError, match="at least"):
        check_model_input("lenet", (2**n_blocks - 1,) * 2 + (1,), n_blocks=n_blocks)
