"""Confirmation runs in a real tiny study: run by tune's parent inside the trial budget, kept
in the Optuna storage (not as trials), resumed when killed, nested in MLflow under their
candidate's trial run, and shown by `tunelab best`."""

import pytest
from conftest import tiny_study
from mlflow import MlflowClient

import tunelab
from tunelab.cli import main
from tunelab.config import load_config
from tunelab.registering import best, open_finished_study
from tunelab.search.confirm import confirmation_key, stored_confirmations
from tunelab.wiring import confirm, load_data, search_deadline, trial_budget


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("confirm")
    raw = tiny_study(tmp, n_trials=6, **{"selection.method": "confirm_mean",
                                         "selection.confirm_top": 2,
                                         "selection.confirm_seeds": 1,
                                         "selection.reserve_fraction": 0.34})
    tunelab.tune(raw, in_process=True)
    return tmp, raw


def test_confirmation_counts_against_n_trials_and_is_not_a_trial(study):
    _, raw = study
    opened = open_finished_study("tiny", raw["storage"])
    assert len(opened.study.trials) == 4  # 6 = 4 search trials + 2 confirmation runs
    stored = stored_confirmations(opened.study)
    assert len(stored) == 2 and all(len(v) == 1 for v in stored.values())
    for number, runs in stored.items():
        assert runs[0]["kind"] == "seeds" and 0 <= runs[0]["score"] <= 1
        assert runs[0]["seed"] != opened.study.trials[number].user_attrs["seed"]
    selection = best("tiny", raw["storage"])
    assert selection.chosen.number in stored
    assert selection.choice.confirmed
    assert "confirmed" in selection.explanation()


def test_confirmations_nest_under_their_trial_runs(study):
    _, raw = study
    opened = open_finished_study("tiny", raw["storage"])
    client = MlflowClient(raw["tracking_uri"])
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id], "tags.`tunelab.role` = 'confirmation'")
    assert len(runs) == 2
    for run in runs:
        number = int(run.data.tags["tunelab.confirmation_of"])
        assert run.data.tags["mlflow.parentRunId"] == \
            opened.study.trials[number].user_attrs["mlflow_run_id"]
        assert "score" in run.data.metrics
        # the retraining's curves, one point per epoch from 1 (logged in batches)
        curve = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert [m.step for m in curve] == list(range(1, len(curve) + 1)) and curve
        assert len(client.get_metric_history(run.info.run_id, "loss")) == len(curve)


def test_best_shows_mean_and_spread_or_not_confirmed(study, capsys):
    _, raw = study
    assert main(["best", "--study-name", "tiny", "--storage", raw["storage"]]) == 0
    out = capsys.readouterr().out
    assert "confirmed (mean +/- sd)" in out and "(1 seeds)" in out
    assert "not confirmed" in out  # the two trials outside the top 2


def test_the_model_card_names_the_confirmation_and_its_scores(study):
    from tunelab.registering import confirmation_summary

    _, raw = study
    opened = open_finished_study("tiny", raw["storage"])
    text = confirmation_summary(opened.config, best("tiny", raw["storage"]))
    assert text.startswith("confirm_mean, top 2 retrained with 1 fresh seed(s)")
    for number, runs in stored_confirmations(opened.study).items():
        assert f"trial {number} {runs[0]['score']:.4f} (1 seeds)" in text
    assert "not confirmed" not in text and "not used" not in text


def test_a_killed_confirmation_resumes_with_the_missing_runs_only(study):
    _, raw = study
    opened = open_finished_study("tiny", raw["storage"])
    stored = stored_confirmations(opened.study)
    first, second = sorted(stored)
    opened.study.set_user_attr(confirmation_key(second), [])  # as if killed before it ran
    logged = []
    config = opened.config
    data = load_data(config)
    import tunelab.search.confirm as confirm_module

    original = confirm_module.retrain
    confirm_module.retrain = lambda *a, **k: (logged.append(k["number"]), original(*a, **k))[1]
    try:
        confirm(opened.study, config, data, None)
    finally:
        confirm_module.retrain = original
    assert logged == [second]
    again = stored_confirmations(open_finished_study("tiny", raw["storage"]).study)
    assert again[first] == stored[first] and len(again[second]) == 1


def test_budget_split_between_search_and_confirmation():
    config = load_config(None, {"n_trials": 20})
    assert config.selection.runs(20) == 6 and trial_budget(config) == 14
    assert load_config(None, {"n_trials": 3}).selection.runs(3) == 0  # too small: no confirming
    timed = load_config(None, {"n_trials": None, "timeout": 600})
    assert search_deadline(timed, 1000.0) == pytest.approx(1000.0 - 180.0)
    rule_only = load_config(None, {"timeout": 600, "selection": {"method": "rule"}})
    assert search_deadline(rule_only, 1000.0) == 1000.0 and trial_budget(rule_only) == 20


def test_register_an_ensemble_of_the_confirmed_candidates(study, capsys):
    """`register --ensemble 2`: one pyfunc model whose probabilities are the stored
    calibration applied to the mean of the two confirmed candidates' probabilities, with the
    candidates' own weights, loadable by MLflow alone; `evaluate` takes it as one model."""
    import json

    import mlflow
    import numpy as np

    from tunelab.models.model_files import load_checkpoint
    from tunelab.registering import evaluate_model, register, to_uint8
    from tunelab.tracking.pyfunc_model import (
        EnsembleClassifier,
        calibrated_probabilities,
        prepare_images,
        probabilities,
    )
    from tunelab.wiring import checkpoint_store

    _, raw = study
    opened = open_finished_study("tiny", raw["storage"])
    ranked = [c.record.number for c in best("tiny", raw["storage"]).choice.candidates][:2]
    reg = register("tiny-ensemble", "tiny", raw["storage"], ensemble=2)
    assert f"an ensemble of trials {ranked[0]}, {ranked[1]}" in capsys.readouterr().out
    client = MlflowClient(raw["tracking_uri"])
    version = client.get_model_version("tiny-ensemble", reg.version)
    assert json.loads(version.tags["tunelab.ensemble"]) == ranked
    mlflow.set_tracking_uri(raw["tracking_uri"])
    loaded = mlflow.pyfunc.load_model(f"models:/tiny-ensemble/{reg.version}")
    inner = loaded.unwrap_python_model()
    assert isinstance(inner, EnsembleClassifier) and len(inner.models) == 2
    data = load_data(opened.config)
    images = to_uint8(data.val.x[:25])
    frame = loaded.predict(images)
    x = prepare_images(images, inner.meta["input_shape"])
    members = []
    for number, model in zip(ranked, inner.models, strict=True):
        path = checkpoint_store(opened.config).path(number)
        if path.is_file():  # the member is the trial's own checkpoint
            kept, _ = load_checkpoint(path, compile=False)
            np.testing.assert_allclose(model.predict(x, verbose=0),
                                       kept.predict(x, verbose=0), atol=1e-6)
        members.append(probabilities(model.predict(x, verbose=0), inner.meta["losses"][0]))
    by_hand = calibrated_probabilities(np.mean(members, axis=0), inner.meta["calibration"])
    columns = [f"prob_{c}" for c in data.class_names]
    np.testing.assert_allclose(frame[columns].to_numpy(), by_hand, atol=1e-5)
    assert list(frame["label"]) == [data.class_names[i] for i in by_hand.argmax(axis=1)]
    result = evaluate_model(f"models:/tiny-ensemble/{reg.version}", split="val",
                            tracking_uri=raw["tracking_uri"], study_name="tiny",
                            storage=raw["storage"])
    assert result.evaluation.report["split"]["n"] == len(data.val)


def test_confirming_again_with_folds_keeps_the_seed_runs_and_ranks_by_the_folds(study):
    """A study confirmed with fresh seeds, then again with `confirm_kind: cv` (as the
    selection benchmark does, and a user who changes the kind and confirms again): the seed
    runs stay stored beside the fold runs, and the ranking uses the folds, the latest kind."""
    from tunelab.search.confirm import confirm_candidates
    from tunelab.search.selection import records_from_study
    from tunelab.search.selection_methods import select_by_method
    from tunelab.wiring import objective_rule, training_settings

    _, raw = study
    opened = open_finished_study("tiny", raw["storage"])
    before = stored_confirmations(opened.study)
    config = opened.config
    rule = objective_rule(config)
    try:
        confirm_candidates(opened.study, rule=rule, data=load_data(config), model=config.model,
                           training=training_settings(config), seed=config.seed, top=2,
                           kind="cv", runs=2, log=lambda m: None)
        after = stored_confirmations(open_finished_study("tiny", raw["storage"]).study)
        assert set(after) == set(before)
        for number, runs in after.items():
            assert [r for r in runs if r["kind"] == "seeds"] == before[number]
            assert sorted(r["index"] for r in runs if r["kind"] == "cv") == [0, 1]
        records = records_from_study(opened.study, rule.metric)
        s = select_by_method(records, rule, "confirm_mean", top=2)
        assert s.choice.confirmed
        for c in s.choice.candidates:
            if c.confirmation is not None:
                assert c.confirmation.kind == "cv" and c.confirmation.n == 2
                folds = [r["score"] for r in after[c.record.number] if r["kind"] == "cv"]
                assert c.confirmation.mean == pytest.approx(sum(folds) / 2)
    finally:  # the module's other tests read the seed runs only
        for number, runs in before.items():
            opened.study.set_user_attr(confirmation_key(number), runs)
