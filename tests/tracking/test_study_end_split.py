"""A study's end with trials in the `tune` process: its tracking writer (another process)
draws the Plotly page and ``WRITER_FIGURES`` while `tune` draws the other figures; the parent
run gets every figure either way."""

from pathlib import Path

import optuna
from conftest import tiny_study
from mlflow import MlflowClient

import tunelab
from tunelab import tuning
from tunelab.search import study_plots
from tunelab.search.study_plots import WRITER_FIGURES, figure_order


def study_files(raw: dict, tmp_path: Path) -> tuple[dict[str, bytes], str]:
    client = MlflowClient(tracking_uri=raw["tracking_uri"])
    experiment = client.get_experiment_by_name(raw["study_name"])
    parent = [r for r in client.search_runs([experiment.experiment_id])
              if r.data.tags.get("tunelab.role") == "study"][0]
    assert parent.info.status == "FINISHED"
    out = tmp_path / "dl"
    local = Path(client.download_artifacts(parent.info.run_id, "study", str(out)))
    return ({p.name: p.read_bytes() for p in local.iterdir()},
            parent.data.tags["mlflow.note.content"])


def test_the_writer_draws_its_share_and_the_parent_run_gets_every_figure(tmp_path,
                                                                          monkeypatch):
    drawn_here = []
    original = study_plots.study_figures

    def recording(study, **kwargs):
        figures, notes = original(study, **kwargs)
        drawn_here.extend(figures)
        return figures, notes

    monkeypatch.setattr(study_plots, "study_figures", recording)
    monkeypatch.setattr(tuning, "study_figures", recording, raising=False)
    import tunelab.search as search_room

    monkeypatch.setattr(search_room, "study_figures", recording)
    raw = tiny_study(tmp_path, n_trials=3, max_epochs=2)
    study = tunelab.tune(raw, in_process=True)
    files, note = study_files(raw, tmp_path)
    expected = figure_order(study)
    assert set(WRITER_FIGURES) <= set(expected)
    assert {f"{name}.png" for name in expected} <= set(files)
    assert "interactive.html" in files and b"Plotly.newPlot" in files["interactive.html"]
    for name in expected:
        assert files[f"{name}.png"][:8] == b"\x89PNG\r\n\x1a\n", name
    # the writer's figures were not drawn in this process, the others were
    assert not set(WRITER_FIGURES) & set(drawn_here)
    assert set(expected) - set(WRITER_FIGURES) <= set(drawn_here)
    assert "not drawn" not in note


def test_without_a_running_writer_tune_draws_everything(tmp_path, monkeypatch):
    """A writer that fails at the study end: `tune` draws its figures and the page itself."""
    from tunelab.tracking import writer as writer_module

    def broken(self, call, *args, **kwargs):
        if call is study_plots.study_outputs_of:
            raise RuntimeError("writer gone")
        return original_call(self, call, *args, **kwargs)

    original_call = writer_module.BackgroundWriter.call
    monkeypatch.setattr(writer_module.BackgroundWriter, "call", broken)
    raw = tiny_study(tmp_path, n_trials=2, max_epochs=1)
    study = tunelab.tune(raw, in_process=True)
    files, _ = study_files(raw, tmp_path)
    assert {f"{name}.png" for name in figure_order(study)} <= set(files)
    assert "interactive.html" in files
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 2
