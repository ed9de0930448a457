"""A study is one question: a reused name with other data, model, space or objective is
refused before anything is written; keys not set keep the stored values; an intended
change is accepted by name and recorded."""

from __future__ import annotations

import pytest
import yaml
from conftest import tiny_study
from mlflow import MlflowClient

import tunelab
from tunelab.cli import main
from tunelab.config import ConfigError, load_config


def base(tmp, **overrides) -> dict:
    """The tiny study of this module: 1 trial of 1 epoch on 8x8 digits, stores in ``tmp``."""
    return tiny_study(tmp, fresh_store=True, n_trials=1, max_epochs=1,
                      **{"dataset.cache_dir": str(tmp / "cache"), **overrides})


@pytest.fixture(scope="module")
def made(tmp_path_factory, tools):
    tmp = tmp_path_factory.mktemp("identity")
    raw = base(tmp)
    tunelab.tune(raw, in_process=True)
    tools.small_npz(tmp / "other.npz")
    return tmp, raw


def test_the_default_study_name_follows_the_dataset_and_the_model(tmp_path, capsys):
    def name(**overrides):
        return load_config(overrides=overrides).study_name

    (tmp_path / "xray" / "NORMAL").mkdir(parents=True)
    assert name() == "digits-lenet"
    assert name(**{"dataset.source": "../shared/data/breastmnist.npz"}) == "breastmnist-lenet"
    assert name(**{"dataset.source": str(tmp_path / "xray") + "/",
                   "model": "alexnet"}) == "xray-alexnet"
    assert name(**{"dataset.source": "BreastMNIST.npz",
                   "model": ["lenet", "alexnet"]}) == "breastmnist-search"
    assert name(**{"dataset.source": "labels.csv", "study_name": "mine"}) == "mine"
    with pytest.raises(SystemExit):
        main(["tune", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "breastmnist-lenet" in text and "<dataset>-search" in text
    assert "--accept-change KEY" in text


@pytest.mark.parametrize(("change", "lines"), [
    ({"dataset.source": "OTHER"}, ["data: stored digits (digits; fingerprint",
                                   "vs new other (", "24 train / 8 validation / 0 test"]),
    ({"model": "alexnet"}, ["model: stored lenet vs new alexnet"]),
    ({"model": ["lenet", "alexnet"]}, ["model: stored lenet vs new [lenet, alexnet]"]),
    ({"space.learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}},
     ["space.learning_rate: stored {high: 0.01, log: true, low: 0.001} vs new "
      "{high: 0.01, log: true, low: 0.0001}"]),
    ({"space.dropout": [0.0, 0.3]}, ["space.dropout: stored (absent) vs new [0.0, 0.3]"]),
    ({"objective.metric": "val_balanced_accuracy"},
     ["objective.metric: stored val_accuracy vs new val_balanced_accuracy"]),
    ({"objective.kind": "pareto"}, ["objective.kind: stored metric vs new pareto"]),
    ({"dataset.image_size": 12}, ["dataset.image_size: stored 8 vs new 12", "data: stored"]),
    ({"dataset.color_mode": "rgb"}, ["dataset.color_mode: stored grayscale vs new rgb"]),
    ({"dataset.cv_folds": 2}, ["dataset.cv_folds: stored 1 vs new 2"]),
    ({"engine": "keras-tuner"}, ["engine: stored optuna vs new keras-tuner"]),
    ({"sampler.kind": "random"}, ["sampler.kind: stored tpe vs new random"]),
    ({"seed": 3}, ["seed: stored 42 vs new 3"]),
], ids=lambda v: next(iter(v)) if isinstance(v, dict) else None)
def test_a_reused_name_with_another_question_is_refused_and_writes_nothing(made, tools,
                                                                           change, lines):
    tmp, raw = made
    change = {k: str(tmp / "other.npz") if v == "OTHER" else v for k, v in change.items()}
    before = tools.snapshot(tmp / "mlruns")
    with pytest.raises(ConfigError) as refused:
        tunelab.tune(base(tmp, **change), in_process=True)
    message = str(refused.value)
    assert "study 'tiny' in" in message and "already holds 1 trial(s)" in message
    for line in lines:
        assert line in message, message
    assert "--accept-change" in message
    assert tools.snapshot(tmp / "mlruns") == before, "a refused resume wrote to a store"


def test_the_cli_refuses_other_data_and_model_with_exit_2_naming_each(made, tools):
    tmp, raw = made
    (tmp / "study.yaml").write_text(yaml.safe_dump(raw))
    before = tools.snapshot(tmp / "mlruns")
    result = tools.run_cli("tune", "study.yaml", "--dataset", "other.npz", "--model", "alexnet",
                           cwd=tmp)
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "  data: stored digits (digits; fingerprint" in result.stderr
    assert "  model: stored lenet vs new alexnet" in result.stderr
    assert "--accept-change data --accept-change model" in result.stderr
    assert tools.snapshot(tmp / "mlruns") == before


def test_an_accepted_change_is_recorded_and_unset_keys_keep_the_stored_values(tmp_path,
                                                                             capsys, tools):
    raw = base(tmp_path)
    tunelab.tune(raw, in_process=True)
    capsys.readouterr()
    # Optuna keeps a categorical's choices for the whole study: no acceptance changes that
    before = tools.snapshot(tmp_path / "mlruns")
    with pytest.raises(ConfigError, match=r"space.n_base: CategoricalDistribution does not "
                                          r"support dynamic value space"):
        tunelab.tune(base(tmp_path, **{"space.n_base": [4, 16]}), in_process=True,
                     accept_changes=["space"])
    assert tools.snapshot(tmp_path / "mlruns") == before
    # only what changes is given: image size 8, one epoch, the cache folder are the study's
    space = {**raw["space"], "learning_rate": {"low": 1e-3, "high": 2e-2, "log": True}}
    study = tunelab.tune({"study_name": "tiny", "storage": raw["storage"],
                          "tracking_uri": raw["tracking_uri"], "n_trials": 2, "space": space},
                         in_process=True, accept_changes=["space"])
    captured = capsys.readouterr()
    err = captured.err
    assert "tunelab: resuming study 'tiny' (1 trial(s)) with changes allowed on resume: " \
           "n_trials 1 -> 2" in captured.out  # a plain resume is not a warning
    assert "changes allowed on resume" not in err
    assert "accepted change(s) space.learning_rate {high: 0.01, log: true, low: 0.001} -> " \
           "{high: 0.02, log: true, low: 0.001}" in err
    assert len(study.trials) == 2 and len(study.trials[1].user_attrs["history"]["loss"]) == 1
    config = study.user_attrs["config"]
    assert config["dataset"]["image_size"] == 8 and config["max_epochs"] == 1
    accepted = study.user_attrs["tunelab.accepted_changes"]
    assert [(a["key"], a["trials_before"]) for a in accepted] == [("space.learning_rate", 1)]
    assert "high: 0.02" in study.user_attrs["tunelab.identity"]["space"]
    client = MlflowClient(tracking_uri=raw["tracking_uri"])
    experiment = client.get_experiment_by_name("tiny")
    parent = [r for r in client.search_runs([experiment.experiment_id])
              if r.data.tags.get("tunelab.role") == "study"]
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    assert parent[0].data.tags["tunelab.accepted.space.learning_rate"].endswith(
        "-> {high: 0.02, log: true, low: 0.001}")
    # the next resume compares with the accepted identity: nothing to refuse (checked as
    # tune checks, without running the study's end again)
    from tunelab.identity import study_identity
    from tunelab.tuning import check_resume, resolve_study
    from tunelab.wiring import load_data

    config, stored = resolve_study({"study_name": "tiny", "storage": raw["storage"],
                                    "space": space}, {})
    check = check_resume(stored, config, study_identity(config, load_data(config)), ())
    assert not check.refused and not check.accepted and not check.allowed


def test_a_study_from_before_identities_resumes_with_a_notice_on_its_stored_config(tmp_path,
                                                                                  capsys):
    """Made by an older tunelab, whose defaults (here seed 7, patience 2, 8x8 images, no
    tracking) were not today's: resuming it by name alone keeps them all."""
    from tunelab.config import config_from_dict
    from tunelab.search import open_study

    raw = base(tmp_path, study_name="old", seed=7, tracking=False,
               **{"early_stopping.patience": 2})
    old = open_study(storage=raw["storage"], study_name="old", direction="maximize")
    old.set_user_attr("config", config_from_dict(raw).to_dict())
    by_name = ["--study-name", "old", "--storage", raw["storage"]]
    assert main(["tune", *by_name, "--print-config"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert (shown["seed"], shown["early_stopping"]["patience"], shown["dataset"]["image_size"],
            shown["tracking"], shown["max_epochs"]) == (7, 2, 8, False, 1)
    study = tunelab.tune({"study_name": "old", "storage": raw["storage"]}, in_process=True)
    err = capsys.readouterr().err
    assert "tunelab: study 'old': it was made before tunelab recorded a study's identity" in err
    assert [t.state.name for t in study.trials] == ["COMPLETE"]
    identity = study.user_attrs["tunelab.identity"]
    assert identity["data"]["splits"]["train"] > 0 and identity["model"] == ["lenet"]
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # tracking: false stayed


def test_renamed_classes_are_a_data_change_that_accept_change_data_accepts():
    """dataset.class_names names a .npz's class ids, which the data fingerprint hashes: a
    rename is one data change (naming the key), not a data change and a key change."""
    from tunelab.config import config_from_dict
    from tunelab.identity import compare, config_identity

    def config(names):
        return config_from_dict({"study_name": "named",
                                 "dataset": {"source": "scans.npz", "class_names": names}})

    def identity(cfg, fingerprint):
        return {**config_identity(cfg), "data": {
            "fingerprint": fingerprint, "name": "scans", "source": "scans.npz",
            "classes": cfg.dataset.class_names, "splits": {"train": 8, "val": 2, "test": 0}}}

    old, new = config(["a", "b"]), config(["normal", "pneumonia"])
    check = compare(old.to_dict(), identity(old, "f1"), new, identity(new, "f2"))
    assert [c.key for c in check.refused] == ["data"]
    assert "dataset.class_names [a, b] -> [normal, pneumonia]" in check.refused[0].line()
    check = compare(old.to_dict(), identity(old, "f1"), new, identity(new, "f2"),
                    accept=["data"])
    assert not check.refused and [c.key for c in check.accepted] == ["data"]


def test_accept_change_names_a_study_key(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["tune", "--accept-change", "sampler.knd", "--n-trials", "1"]) == 2
    assert "--accept-change: 'sampler.knd' is not a study key" in capsys.readouterr().err
    assert not (tmp_path / "mlruns").exists()


def test_a_study_created_by_another_start_meanwhile_is_compared_not_overwritten(made, tools,
                                                                               monkeypatch):
    """Two starts of one name: the second looked before the first created the study."""
    import tunelab.search.study

    tmp, _ = made
    monkeypatch.setattr(tunelab.search.study, "find_stored_study", lambda *a, **k: None)
    with pytest.raises(ConfigError, match="model: stored lenet vs new alexnet"):
        tunelab.tune(base(tmp, model="alexnet"), in_process=True)
    monkeypatch.undo()
    from tunelab.search import open_study

    study = open_study(storage=base(tmp)["storage"], study_name="tiny")
    assert study.user_attrs["tunelab.identity"]["model"] == ["lenet"]
    assert len(study.trials) == 1


def test_a_resume_does_not_inherit_the_timeout_of_the_run_that_created_the_study():
    """`tune --timeout 0.001` created the study (no trial ran); the plain `tune` after it
    took the stored 0.001 s too and never trained: a timeout is one invocation's budget."""
    from tunelab.identity import merge_stored

    stored = {"study_name": "s", "n_trials": 3, "timeout": 0.001, "max_epochs": 30}
    merged = merge_stored(stored, {"max_epochs": 2}, study_name="s", storage="j")
    assert "timeout" not in merged and merged["n_trials"] == 3 and merged["max_epochs"] == 2
    again = merge_stored(stored, {"timeout": 60}, study_name="s", storage="j")
    assert again["timeout"] == 60
