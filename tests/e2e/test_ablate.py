"""`tunelab ablate` on a real tiny study: it trains exactly the variants asked, with the stated
seeds, logs each as an ablation run under the study's parent run, and its table's numbers are
the runs' metrics."""

from __future__ import annotations

import base64
import io
import json
import statistics
from html.parser import HTMLParser

import pytest
from conftest import tiny_study
from mlflow import MlflowClient

import tunelab
from tunelab.ablating import ablate
from tunelab.cli import main


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """Two trials of LeNet on 8x8 digits, 3 epochs, a grid over dense widths searched as a
    choice of lists (so the champion and another trial can be told apart)."""
    tmp = tmp_path_factory.mktemp("ablate")
    raw = tiny_study(tmp, n_trials=2, max_epochs=3, **{
        "dataset.cache_dir": str(tmp / "cache"), "space.dense_units": [[16, 8], [8]],
        "space.n_base": 4, "space.learning_rate": 0.01, "sampler.kind": "grid"})
    study = tunelab.tune(raw, in_process=True)
    return raw, study, tmp


def _champion(raw) -> int:
    """The trial `tunelab best` selects (else the best objective, as ablate falls back)."""
    from tunelab.registering import best

    selection = best(raw["study_name"], raw["storage"])
    return (selection.chosen or selection.best_by_objective).number


def _ablation_runs(raw, ablation_id=None):
    client = MlflowClient(raw["tracking_uri"])
    experiment = client.get_experiment_by_name(raw["study_name"])
    query = "tags.`tunelab.role` = 'ablation'"
    if ablation_id:
        query += f" and tags.`tunelab.ablation.id` = '{ablation_id}'"
    return client, experiment, client.search_runs([experiment.experiment_id], query)


def test_ablate_trains_the_variants_asked_with_the_seeds_and_the_table_is_the_runs(tuned,
                                                                                   capsys):
    raw, study, tmp = tuned
    champion = _champion(raw)
    trial = study.trials[champion]
    assert {t.params["dense_units"] for t in study.trials} == {"16-8", "8"}  # lists, readable
    seed = trial.user_attrs["seed"]
    out_dir = tmp / "ablation-out"
    code = main(["ablate", "--study-name", raw["study_name"], "--storage", raw["storage"],
                 "--n-seeds", "2", "--output-dir", str(out_dir), "batch_norm"])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"ablating trial {champion} of study" in printed and "(the " in printed
    assert "1 knob(s), 2 distinct variant(s) x 2 seed(s)" in printed
    table = json.loads((out_dir / "batch_norm.json").read_text())
    assert table["statement"] in printed and table["statement"].startswith(
        "batch_norm: batch_norm=True: ")
    assert {p.name for p in out_dir.iterdir()} == {"batch_norm.png", "batch_norm.json",
                                                  "batch_norm.txt", "report.md"}

    client, experiment, runs = _ablation_runs(raw, table["ablation_id"])
    trained = sorted((r.data.tags["tunelab.ablation.variant"],
                      int(r.data.tags["tunelab.ablation.seed"])) for r in runs)
    assert trained == [("base", seed), ("base", seed + 1),
                       ("batch_norm=True", seed), ("batch_norm=True", seed + 1)]
    parent = client.search_runs([experiment.experiment_id], "tags.`tunelab.role` = 'study'")[0]
    for r in runs:
        assert r.info.status == "FINISHED"
        assert r.data.tags["tunelab.ablation.trial"] == str(champion)
        assert r.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert r.data.params["seed"] == r.data.tags["tunelab.ablation.seed"]
        is_base = r.data.tags["tunelab.ablation.variant"] == "base"
        assert r.data.params["batch_norm"] == str(not is_base)  # the only change
        assert r.data.params["dense_units"] == trial.params["dense_units"]
        assert len(client.get_metric_history(r.info.run_id, "val_accuracy")) == 3  # no early stop

    base_first = next(r for r in runs if r.data.tags["tunelab.ablation.variant"] == "base"
                      and int(r.data.tags["tunelab.ablation.seed"]) == seed)
    retrained = [m.value for m in sorted(client.get_metric_history(base_first.info.run_id,
                                                                   "val_loss"),
                                         key=lambda m: m.step)]
    # the base's first seed is the trial's own: the retraining reproduces the trial
    assert retrained == pytest.approx(trial.user_attrs["history"]["val_loss"], abs=1e-5)

    rows = {row["variant"]: row for row in table["rows"]}
    assert list(rows) == ["base", "batch_norm=True"] and rows["base"]["base"]
    def curve(run, key="accuracy"):
        return [m.value for m in sorted(client.get_metric_history(run.info.run_id, key),
                                        key=lambda m: m.step)]

    finals = {r.data.tags["tunelab.ablation.seed"]: curve(r)[-1]
              for r in runs if r.data.tags["tunelab.ablation.variant"] == "base"}
    assert table["base_final_train_accuracy"] == pytest.approx(statistics.mean(finals.values()))
    for label, row in rows.items():
        mine = [r for r in runs if r.data.tags["tunelab.ablation.variant"] == label]
        assert sorted(row["seeds"]) == sorted(int(r.data.tags["tunelab.ablation.seed"])
                                              for r in mine)
        for key in ("best_val_accuracy", "final_val_accuracy", "gap_accuracy"):
            assert row[key] == pytest.approx(statistics.mean(r.data.metrics[key] for r in mine))
        assert row["best_val_accuracy_sd"] == pytest.approx(
            statistics.stdev(r.data.metrics["best_val_accuracy"] for r in mine))
        reached = [r.data.metrics["ablation/batch_norm/epoch_reaching_base_accuracy"]
                   for r in mine
                   if "ablation/batch_norm/epoch_reaching_base_accuracy" in r.data.metrics]
        assert row["seeds_reaching_base_accuracy"] == len(reached)
        assert row["epoch_reaching_base_accuracy"] == (
            pytest.approx(statistics.mean(reached)) if reached else None)
        for r in mine:  # from the run's logged curve and the same seed's base run
            s = r.data.tags["tunelab.ablation.seed"]
            first = next((i for i, v in enumerate(curve(r), 1) if v >= finals[s] - 1e-12), None)
            assert row["per_seed"][s]["epoch_reaching_base_accuracy"] == first
        if label == "base":
            assert row["seeds_reaching_base_accuracy"] == 2  # its own final, at the latest
    effects = [rows["batch_norm=True"]["per_seed"][str(s)]["best_val_accuracy"]
               - rows["base"]["per_seed"][str(s)]["best_val_accuracy"] for s in (seed, seed + 1)]
    assert rows["batch_norm=True"]["effect"] == pytest.approx(statistics.mean(effects))
    assert rows["batch_norm=True"]["effect_sd"] == pytest.approx(statistics.stdev(effects))

    where = f"ablation/trial-{champion}"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, where)}
    assert {f"{where}/batch_norm.png", f"{where}/batch_norm.json",
            f"{where}/report.md"} <= artifacts
    from tunelab.search import open_study

    stored = open_study(storage=raw["storage"], study_name=raw["study_name"])
    assert stored.user_attrs[f"ablation:trial-{champion}:batch_norm"]["statement"] == table[
        "statement"]


class _AblationHTML(HTMLParser):
    """The report's ablation parts: statements, table rows (cells as text) and image alts."""

    def __init__(self):
        super().__init__()
        self.statements, self.rows, self.images = [], {}, []
        self._in, self._row, self._cell = None, None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "p" and attrs.get("class") == "ablation-statement":
            self._in = "statement"
            self.statements.append("")
        elif tag == "table" and attrs.get("class") == "ablation":
            self._in = attrs["data-knob"]
        elif tag == "tr" and attrs.get("class") == "ablation-row":
            self._row = self.rows.setdefault((self._in, attrs["data-variant"]), [])
        elif tag == "td" and self._row is not None:
            self._cell = ""
        elif tag == "img":
            self.images.append((attrs["alt"], attrs["src"]))

    def handle_endtag(self, tag):
        if tag == "p" and self._in == "statement":
            self._in = None
        elif tag == "td" and self._cell is not None:
            self._row.append(self._cell)
            self._cell = None
        elif tag == "tr":
            self._row = None

    def handle_data(self, data):
        if self._in == "statement":
            self.statements[-1] += data
        elif self._cell is not None:
            self._cell += data


def test_the_study_report_includes_each_knob_with_its_statement_table_and_figure(tuned,
                                                                                 capsys):
    """`tunelab ablate --trial N` with a knob given by values, then `tunelab report`: the
    knob's statement, its table's numbers as the ablation computed them from the runs, and
    its figure (from the study's parent run), read from the written HTML file."""
    raw, study, tmp = tuned
    other = 1 - _champion(raw)  # --trial N: not the champion
    result = ablate(["dropout=0.4"], raw["study_name"], raw["storage"], trial=other,
                    seeds=[3, 4], epochs=2, output_dir=tmp / "for-report", out=io.StringIO())
    assert result.trial == other and result.why == f"trial {other}, as asked"
    assert "tracking error" not in capsys.readouterr().err  # '=' is no MLflow metric name
    client, _, runs = _ablation_runs(raw, result.ablation_id)
    assert {r.data.tags["tunelab.ablation.trial"] for r in runs} == {str(other)}
    base3 = next(r for r in runs if r.data.tags["tunelab.ablation.variant"] == "base"
                 and r.data.tags["tunelab.ablation.seed"] == "3")
    assert base3.data.params["dense_units"] == study.trials[other].params["dense_units"]
    key = "ablation/dropout_0.4/epoch_reaching_base_accuracy"
    assert base3.data.metrics[key] == result.tables[0].base.per_seed[3][
        "epoch_reaching_base_accuracy"]
    (knob_table,) = result.tables
    local = tmp / "for-report" / "dropout=0.4.png"
    figure = local.read_bytes()
    local.unlink()  # so the report's figure can only come from the study's parent run
    page = tmp / "report.html"
    assert main(["report", raw["study_name"], "--storage", raw["storage"], "-o",
                 str(page)]) == 0
    text = page.read_text()
    assert "http://" not in text and "<script" not in text
    parsed = _AblationHTML()
    parsed.feed(text)
    assert knob_table.statement() in parsed.statements
    assert "across 2 seeds" in knob_table.statement()
    assert "reaches the base's final training accuracy" in knob_table.statement()
    stored = json.loads((tmp / "for-report" / "dropout=0.4.json").read_text())
    for row in stored["rows"]:
        cells = parsed.rows[("dropout=0.4", row["variant"])]
        assert cells[:7] == [row["variant"], "2"] + [
            f"{row[k]:.4f}" for k in ("best_val_accuracy", "best_val_accuracy_sd",
                                      "final_val_accuracy", "final_val_accuracy_sd",
                                      "gap_accuracy")]
        reach = row["epoch_reaching_base_accuracy"]
        assert cells[7].startswith("never" if reach is None else f"{reach:.3g}")
        assert cells[8:] == (["", ""] if row["base"] else
                             [f"{row['effect']:.4f}", f"{row['effect_sd']:.4f}"])
    images = dict(parsed.images)
    assert images[f"ablation of dropout=0.4 around trial {other}"] == (
        "data:image/png;base64," + base64.b64encode(figure).decode())  # the one ablate drew


@pytest.mark.slow
def test_given_values_explicit_seeds_and_epochs_train_exactly_those(tuned, capsys):
    raw, _, tmp = tuned
    result = ablate(["dropout=0.3", "dense_units=12-6"], raw["study_name"], raw["storage"],
                    trial=0, seeds=[7], epochs=1, output_dir=tmp / "given", out=io.StringIO())
    assert sorted((t.label, t.seed) for t in result.trained) == [
        ("base", 7), ("dense_units=12-6", 7), ("dropout=0.3", 7)]  # the base trains once
    # a knob's '=' is no MLflow metric name: its metrics are logged as dropout_0.3, and the
    # tracking goes on to put every knob's figure on the parent run
    assert "tracking error" not in capsys.readouterr().err
    assert result.artifacts == ["ablation/trial-0/dropout=0.3", "ablation/trial-0/dense_units=12-6"]
    _, _, runs = _ablation_runs(raw, result.ablation_id)
    base = next(r for r in runs if r.data.tags["tunelab.ablation.variant"] == "base")
    assert base.data.metrics["ablation/dropout_0.3/epoch_reaching_base_accuracy"] == 1
    assert "ablation/dense_units_12-6/epoch_reaching_base_accuracy" in base.data.metrics
    assert sorted(r.data.tags["tunelab.ablation.knobs"] for r in runs) == [
        "dense_units=12-6", "dropout=0.3", "dropout=0.3;dense_units=12-6"]
    assert [t.knob for t in result.tables] == ["dropout=0.3", "dense_units=12-6"]
    assert all(row.seeds == (7,) for t in result.tables for row in t.rows)


def test_a_bad_knob_stops_before_anything_trains(tuned, capsys):
    raw, _, _ = tuned
    _, _, before = _ablation_runs(raw)
    args = ["ablate", "--study-name", raw["study_name"], "--storage", raw["storage"]]
    assert main([*args, "kernel_size"]) == 2
    assert "give them, e.g. kernel_size=A,B" in capsys.readouterr().err
    assert main([*args, "dropout=1.5"]) == 2
    assert "dropout=1.5" in capsys.readouterr().err
    assert main([*args, "--trial", "9", "batch_norm"]) == 2
    assert len(_ablation_runs(raw)[2]) == len(before)


def test_a_study_without_tracking_reports_the_figure_ablate_wrote(tmp_path):
    """No parent run to read from: the report takes the PNG from the path the table keeps,
    and a table whose file is gone is still shown, without a figure."""
    import matplotlib.pyplot as plt
    import optuna

    from tunelab.reporting import ablations
    from tunelab.tracking.html_report import ablation_section

    fig, ax = plt.subplots()
    ax.plot([1, 2], [0.5, 0.7])
    fig.savefig(tmp_path / "dropout.png")
    plt.close(fig)
    row = {"variant": "base", "base": True, "seeds": [1], "best_val_accuracy": 0.7,
           "best_val_accuracy_sd": None, "final_val_accuracy": 0.7,
           "final_val_accuracy_sd": None, "gap_accuracy": 0.0,
           "epoch_reaching_base_accuracy": 2, "seeds_reaching_base_accuracy": 1,
           "effect": None, "effect_sd": None}
    kept = {"knob": "dropout", "metric": "val_accuracy", "statement": "dropout: ...",
            "rows": [row], "trial": 2, "seeds": [1], "epochs": 2,
            "figure": str(tmp_path / "dropout.png")}
    study = optuna.create_study()
    study.set_user_attr("ablation:trial-2:dropout", kept)
    study.set_user_attr("ablation:trial-0:n_base", {**kept, "knob": "n_base", "trial": 0,
                                                     "figure": str(tmp_path / "gone.png")})
    study.set_user_attr("seed", 3)  # not an ablation
    found = ablations(study, "no-tracking", None)
    assert [(a["trial"], a["knob"]) for a in found] == [(0, "n_base"), (2, "dropout")]
    assert found[0]["png"] is None
    assert found[1]["png"] == (tmp_path / "dropout.png").read_bytes()
    page = ablation_section(found)
    assert page.index("Ablations around trial 0") < page.index("Ablations around trial 2")
    assert page.count("<img") == 1 and page.count('class="ablation-row"') == 2
