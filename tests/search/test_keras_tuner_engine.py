"""engine: keras-tuner runs the same space with KerasTuner and records like the Optuna engine."""

import optuna
import pytest
from conftest import tiny_study
from mlflow import MlflowClient

pytest.importorskip("keras_tuner", reason="pip install 'tunelab[keras-tuner]'")

import tunelab  # noqa: E402
from tunelab.config import ConfigError, config_from_dict  # noqa: E402
from tunelab.search.keras_tuner_engine import declare, decode, distributions  # noqa: E402
from tunelab.search.space import SearchSpace  # noqa: E402


def test_space_maps_onto_keras_tuner_and_back():
    import keras_tuner

    space = SearchSpace.from_yaml({
        "learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
        "n_base": {"low": 4, "high": 16, "step": 4}, "dropout": {"low": 0.0, "high": 0.5,
                                                                 "step": 0.1},
        "batch_norm": [True, False], "mixed": [16, "auto"], "dense_units": 32,
    })
    hp = keras_tuner.HyperParameters()
    declare(space, hp)
    assert set(hp.values) == {"learning_rate", "n_base", "dropout", "batch_norm", "mixed",
                              "dense_units"}
    # KerasTuner's own values decode to booleans, whichever it draws (it used to hand the
    # model builder 0 / 1: "batch_norm=1 is invalid")
    for index, want in enumerate([True, False]):
        hp.values["batch_norm"] = hp.get("batch_norm") if index == 0 else 1
        assert decode(space, hp.values)["batch_norm"] is want
    hp.values.update({"mixed": 1, "dropout": 0.30000000000000004, "n_base": 12})
    params = decode(space, hp.values)
    assert params["mixed"] == "auto" and params["dense_units"] == 32
    assert params["dropout"] == 0.3 and params["n_base"] == 12
    dists = distributions(space)
    assert set(dists) == {"learning_rate", "n_base", "dropout", "batch_norm", "mixed"}
    for name, dist in dists.items():
        assert dist._contains(dist.to_internal_repr(params[name])), name


def test_config_refuses_what_the_engine_cannot_run(tmp_path):
    raw = tiny_study(tmp_path, engine="keras-tuner")
    assert config_from_dict(raw).keras_tuner.kind == "hyperband"
    with pytest.raises(ConfigError, match="workers"):
        config_from_dict({**raw, "workers": 2})
    with pytest.raises(ConfigError, match="model family"):
        config_from_dict({**raw, "model": ["lenet", "mlp"]})
    with pytest.raises(ConfigError, match="keras_tuner.kind"):
        config_from_dict({**raw, "keras_tuner": {"kind": "grid"}})
    for transfer_model in ("vgg16_transfer", "transfer"):  # refused, not silently unfrozen
        with pytest.raises(ConfigError, match="cannot train transfer models"):
            config_from_dict({**raw, "model": transfer_model, "space": {}})


# RandomSearch takes the same path (the full search_efficiency benchmark runs it)
@pytest.mark.parametrize("kind", ["hyperband", "bayesian"])
def test_keras_tuner_trials_are_optuna_trials_and_mlflow_runs(tmp_path, kind):
    raw = tiny_study(tmp_path, engine="keras-tuner", **{"keras_tuner.kind": kind,
                                                        "keras_tuner.factor": 2})
    raw["n_trials"] = 3 if kind == "hyperband" else 2  # hyperband: enough to promote one
    study = tunelab.tune(raw, in_process=True)
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) == raw["n_trials"]
    for t in done:
        assert t.user_attrs["engine"] == f"keras-tuner/{kind}"
        assert set(t.params) == {"learning_rate", "n_base"}
        assert t.user_attrs["summary"]["epochs_trained"] == len(t.user_attrs["history"]["loss"])
        assert t.value == t.user_attrs["summary"]["best_val_accuracy"]
        # the one trial lifecycle: the same summary as an Optuna-engine trial
        assert {"n_params", "process_rss_mb", "process_peak_rss_mb", "objective",
                "train_seconds"} <= set(t.user_attrs["summary"])
        assert t.user_attrs["n_params"] == t.user_attrs["summary"]["n_params"] > 0
        assert t.intermediate_values  # epochs reported to the Optuna trial
    if kind == "hyperband":  # max_epochs 2, factor 2: the 1-epoch bracket promotes a trial
        resumed = [t for t in done if "resumed_from" in t.user_attrs["keras_tuner"]]
        assert resumed
        for t in resumed:  # only the new epochs are trained and counted
            kt = t.user_attrs["keras_tuner"]
            assert min(t.intermediate_values) == kt["initial_epoch"] == 1
            assert t.user_attrs["summary"]["epochs_trained"] == kt["epochs"] - kt["initial_epoch"]
    client = MlflowClient(tracking_uri=raw["tracking_uri"])
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.data.tags.get("tunelab.role") == "study"]
    trials = [r for r in runs if r.data.tags.get("tunelab.role") == "trial"]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    assert len(trials) == raw["n_trials"]
    assert {r.info.run_id for r in trials} == {t.user_attrs["mlflow_run_id"] for t in done}
    for r in trials:
        assert r.info.status == "FINISHED"
        assert r.data.tags["tunelab.engine"] == f"keras-tuner/{kind}"
        assert r.data.tags["mlflow.parentRunId"] == parent[0].info.run_id
        assert "val_accuracy" in r.data.metrics and "best_epoch" in r.data.metrics
        names = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert {"learning_curves.png", "confusion_matrix.png"} <= names
    assert parent[0].data.tags["tunelab.best_trial"] == str(study.best_trial.number)
