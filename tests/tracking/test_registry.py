"""Register, load, predict: a real tiny study, a real SQLite MLflow store and registry in
tmp_path, the model loaded back through mlflow.pyfunc with raw images of other sizes."""

import mlflow
import numpy as np
import pytest
from conftest import tiny_study
from mlflow import MlflowClient

import tunelab
from tunelab.models import Head
from tunelab.registering import register
from tunelab.tracking.pyfunc_model import ImageClassifier, prepare_images, probabilities

NAME = "tiny-clf"


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reg")
    raw = tiny_study(tmp, **{"dataset.test_fraction": 0.15, "objective.gap_tolerance": 1.0})
    tunelab.tune(raw, in_process=True)
    first = register(NAME, "tiny", raw["storage"])
    return tmp, raw, first


def test_version_is_champion_with_tags_test_metrics_and_report(registered):
    tmp, raw, first = registered
    client = MlflowClient(raw["tracking_uri"])
    version = client.get_model_version_by_alias(NAME, "champion")
    assert str(version.version) == first.version == "1" and first.champion
    assert first.model_source.startswith("checkpoint")  # weights kept, nothing retrained
    tags = version.tags
    assert tags["tunelab.study"] == "tiny" and tags["tunelab.trial"] == str(first.trial)
    assert len(tags["data_fingerprint"]) == 16
    assert 0 <= float(tags["test_accuracy"]) <= 1 and "val_accuracy" in tags
    assert "gap_accuracy" in tags and "selection" in tags
    artifacts = {a.path for a in client.list_artifacts(first.run_id)}
    assert {"gradcam.png", "selection"} <= artifacts
    inner = {a.path for a in client.list_artifacts(first.run_id, "selection")}
    assert "selection/candidates.txt" in inner
    assert any(p.startswith("selection/learning_curves_trial_") for p in inner)
    run = client.get_run(first.run_id)
    assert "test_accuracy" in run.data.metrics  # once, on the registration run
    # its own experiment, beside the study's (never a series in the trials' charts),
    # linked both ways by tags
    study_experiment = client.get_experiment_by_name("tiny")
    home = client.get_experiment(run.info.experiment_id)
    assert home.name == "tiny registrations" and home.experiment_id != \
        study_experiment.experiment_id
    assert home.tags["mlflow.experimentKind"] == "custom_model_development"
    assert home.tags["tunelab.study_experiment_id"] == study_experiment.experiment_id
    assert not [r for r in client.search_runs([study_experiment.experiment_id])
                if r.data.tags.get("tunelab.role") == "registration"]
    trial_run = run.data.tags["tunelab.trial_run_id"]
    assert client.get_run(trial_run).data.tags["tunelab.trial"] == str(first.trial)
    assert client.get_run(trial_run).data.tags["tunelab.registered_as"] == f"{NAME} v1"
    assert run.data.tags["tunelab.study_run_id"] and "mlflow.note.content" in run.data.tags
    mlmodel = client.download_artifacts(first.run_id, "model/MLmodel", str(tmp))
    text = open(mlmodel).read()
    assert "signature" in text
    reqs = open(client.download_artifacts(first.run_id, "model/requirements.txt",
                                          str(tmp))).read()
    assert "keras==" in reqs and "tensorflow" in reqs


def test_round_trip_with_raw_images_of_another_size(registered):
    tmp, raw, first = registered
    mlflow.set_tracking_uri(raw["tracking_uri"])
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    rng = np.random.default_rng(0)
    for batch in (rng.integers(0, 256, (3, 13, 11), dtype=np.uint8),      # grey, (N, H, W)
                  rng.integers(0, 256, (2, 20, 20, 3), dtype=np.uint8),   # RGB
                  rng.integers(0, 256, (2, 5, 7, 1), dtype=np.uint8)):    # smaller than 8x8
        frame = model.predict(batch)
        assert len(frame) == len(batch)
        assert list(frame.columns) == ["label"] + [f"prob_{c}" for c in map(str, range(10))]
        assert set(frame["label"]) <= set(map(str, range(10)))
        np.testing.assert_allclose(frame.iloc[:, 1:].sum(axis=1), 1.0, atol=1e-5)
    ragged = np.empty(2, dtype=object)
    ragged[:] = [rng.integers(0, 256, (9, 9), dtype=np.uint8),
                 rng.integers(0, 256, (30, 12, 3), dtype=np.uint8)]
    assert len(model.predict(ragged)) == 2
    with pytest.raises(Exception, match="not raw 8-bit"):
        model.predict(rng.random((2, 8, 8)).astype("float32"))
    # The digits the study validated on, as 8-bit images: the same accuracy as at registration
    from tunelab.registering import open_finished_study, to_uint8
    from tunelab.wiring import load_data

    data = load_data(open_finished_study("tiny", raw["storage"]).config)
    frame = model.predict(to_uint8(data.val.x))
    accuracy = np.mean(frame["label"].astype(int).to_numpy() == data.val.y)
    assert accuracy == pytest.approx(first.val_accuracy)


@pytest.mark.slow
def test_second_registration_moves_the_alias_and_a_worse_model_does_not(registered, capsys):
    tmp, raw, _ = registered
    client = MlflowClient(raw["tracking_uri"])
    name = NAME + "-moves"  # its own model: the other tests read NAME's champion, in any order
    register(name, "tiny", raw["storage"])
    second = register(name, "tiny", raw["storage"])
    assert second.version == "2" and second.champion
    assert "new" in second.compared and "champion v1" in second.compared
    assert str(client.get_model_version_by_alias(name, "champion").version) == "2"
    # A barely trained study on the same data: scores worse, so the alias stays...
    bad = tiny_study(tmp, **{"study_name": "tiny-bad", "n_trials": 1, "max_epochs": 1,
                             "dataset.test_fraction": 0.15, "objective.gap_tolerance": 1.0,
                             "space.learning_rate": 1e-6, "space.n_base": 4})
    tunelab.tune(bad, in_process=True)
    worse = register(name, "tiny-bad", raw["storage"])
    assert worse.version == "3" and not worse.champion
    assert worse.val_accuracy < second.val_accuracy
    assert str(client.get_model_version_by_alias(name, "champion").version) == "2"
    assert "champion v2" in worse.compared
    assert "tunelab.champion_refused" in client.get_model_version(name, "3").tags
    assert "stays on version 2" in capsys.readouterr().out
    # ...unless forced
    forced = register(name, "tiny-bad", raw["storage"], force=True)
    assert forced.champion and "--force" in forced.compared
    assert str(client.get_model_version_by_alias(name, "champion").version) == forced.version


@pytest.mark.parametrize("loss", ["binary_crossentropy", "hinge", "categorical_crossentropy",
                                  "categorical_hinge"])
def test_wrapper_probabilities_match_the_heads(loss):
    n = 2 if loss in ("binary_crossentropy", "hinge") else 4
    outputs = np.random.default_rng(1).normal(size=(5, 1 if n == 2 else n))
    if loss == "categorical_crossentropy":
        outputs = np.exp(outputs) / np.exp(outputs).sum(axis=1, keepdims=True)
    if loss == "binary_crossentropy":
        outputs = 1 / (1 + np.exp(-outputs))
    np.testing.assert_allclose(probabilities(outputs, loss),
                               Head(loss, n).probabilities(outputs))


def test_prepare_images_refuses_what_it_cannot_read():
    with pytest.raises(ValueError, match="shape"):
        prepare_images(np.zeros((2, 8), np.uint8), (8, 8, 1))
    with pytest.raises(ValueError, match="outside 0..255"):
        prepare_images(np.full((1, 8, 8), 300, np.int64), (8, 8, 1))
    with pytest.raises(ValueError, match="empty"):
        prepare_images(np.zeros((0, 8, 8), np.uint8), (8, 8, 1))
    grey = prepare_images(np.full((1, 4, 4, 3), 255, np.uint8), (8, 8, 1))
    assert grey.shape == (1, 8, 8, 1) and np.allclose(grey, 1.0, atol=1e-3)
    assert prepare_images([np.zeros((3, 3), np.uint8)], (2, 2, 3)).shape == (1, 2, 2, 3)
    assert isinstance(ImageClassifier(), ImageClassifier)


@pytest.mark.slow
def test_retrain_without_checkpoints_rebuilds_fixed_hyperparameters(tmp_path):
    # dense_units is fixed at a non-default width: Optuna's trial.params omit fixed values,
    # so a retrain that read only them would rebuild the default model
    raw = tiny_study(tmp_path, study_name="retrain", n_trials=1, max_epochs=1,
                     **{"checkpoints.keep_top": 0, "objective.gap_tolerance": 1.0})
    raw["space"]["dense_units"] = 24
    study = tunelab.tune(raw, in_process=True)
    trained = study.trials[0].user_attrs["n_params"]
    result = register("retrained-clf", "retrain", raw["storage"])
    assert result.model_source == "retrained"
    mlflow.set_tracking_uri(raw["tracking_uri"])
    model = mlflow.pyfunc.load_model("models:/retrained-clf@champion")
    keras_model = model.unwrap_python_model().model
    assert keras_model.count_params() == trained
