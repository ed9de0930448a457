"""`tracking: false` runs a study without MLflow; the Optuna storage keeps everything."""

import optuna
from conftest import tiny_study

import tunelab
from tunelab.config import StudyConfig, config_from_dict


def test_tracking_defaults_on_and_false_is_accepted(tmp_path):
    assert StudyConfig().tracking is True
    raw = tiny_study(tmp_path, fresh_store=True, tracking=False)
    assert config_from_dict(raw).tracking is False


def test_tracking_off_writes_no_mlflow_store(tmp_path):
    raw = tiny_study(tmp_path, fresh_store=True, tracking=False, n_trials=2, max_epochs=1)
    study = tunelab.tune(raw, in_process=True)
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) == 2
    assert all("history" in t.user_attrs and "mlflow_run_id" not in t.user_attrs for t in done)
    assert "mlflow_parent_run_id" not in study.user_attrs
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()
