"""Calibration, the stored operating point, the evaluation run and the model card, on a
real tiny binary study (digits 3 vs 8, 8x8, a hinge head whose outputs are margins) with a
test split, registered once for the module into a SQLite MLflow store in tmp_path."""

import json
import shutil

import mlflow
import numpy as np
import pytest
from conftest import tiny_study
from mlflow import MlflowClient

import tunelab
from tunelab.cli import main
from tunelab.config import ConfigError, config_from_dict
from tunelab.registering import register, to_uint8
from tunelab.tracking.evaluation import Calibration, fit_calibration
from tunelab.tracking.pyfunc_model import calibrated_probabilities, decide

NAME = "binary-clf"


def binary_digits(path):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    keep = np.isin(bunch.target, (3, 8))
    x = np.round(bunch.images[keep] * 255 / 16).astype("uint8")
    y = (bunch.target[keep] == 8).astype("int64")
    np.savez(path, train_images=x, train_labels=y)
    return str(path)


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clinical")
    source = binary_digits(tmp / "three_or_eight.npz")
    # small batches and a fixed, brisk learning rate: two steps an epoch at batch 128 left
    # the one trial at chance level now and then, and chance-level trials are not selected
    raw = tiny_study(tmp, study_name="binary", n_trials=1, max_epochs=3, **{
        "dataset.source": source, "dataset.test_fraction": 0.3,
        "objective.gap_tolerance": 1.0, "space.loss": "hinge", "space.n_base": 4,
        "space.batch_size": 16, "space.learning_rate": 0.005,
        "registry.threshold": {"sensitivity": 0.9}, "registry.bootstrap_resamples": 500})
    tunelab.tune(raw, in_process=True)
    import io

    out = io.StringIO()
    reg = register(NAME, "binary", raw["storage"], out=out)
    return tmp, raw, reg, out.getvalue(), source


def test_register_writes_the_evaluation_run_and_the_model_card(registered):
    tmp, raw, reg, printed, _ = registered
    client = MlflowClient(raw["tracking_uri"])
    version = client.get_model_version(NAME, reg.version)
    tags = version.tags
    assert reg.evaluation_run_id and tags["tunelab.evaluation_run"] == reg.evaluation_run_id
    run = client.get_run(reg.evaluation_run_id)
    assert run.data.tags["tunelab.role"] == "evaluation"
    assert run.data.tags["tunelab.model_name"] == NAME
    assert run.data.tags["tunelab.model_version"] == reg.version
    # the evaluation run sits beside the registration run, whatever experiment that is
    assert run.info.experiment_id == client.get_run(reg.run_id).info.experiment_id
    files = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {f"evaluation/{n}.png" for n in ("roc_curve", "precision_recall_curve",
                                            "reliability_diagram", "confusion_matrix")} <= files
    report = json.load(open(client.download_artifacts(run.info.run_id,
                                                      "evaluation/report.json", str(tmp))))
    # the headline tags are the report's numbers with their intervals
    primary = report["operating_points"]["stored"]
    auc = primary["metrics"]["roc_auc"]
    assert tags["eval.test.roc_auc"] == (f"{auc['estimate']:.3f} (95% CI {auc['low']:.3f}-"
                                         f"{auc['high']:.3f})")
    assert auc["low"] <= auc["estimate"] <= auc["high"]
    assert run.data.metrics["test_stored_roc_auc"] == pytest.approx(auc["estimate"])
    for key in ("accuracy", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv"):
        assert key in primary["metrics"] and f"eval.test.{key}" in tags
    assert set(report["operating_points"]) == {"stored", "0.5"}
    assert primary["rule"] == "sensitivity" and primary["target"] == 0.9
    assert "achieved_sensitivity_on_test" in primary
    assert report["bootstrap"]["n_resamples"] == 500
    assert "stratified" in report["bootstrap"]["method"]
    assert report["calibration"]["fitted_on"] == "validation"
    assert "ece_before_on_test" in report["calibration"]
    # ~108 test images: the small-sample warning is printed, tagged and logged
    assert report["split"]["n"] < 200 and "small evaluation set" in printed
    assert "small evaluation set" in tags["eval.test.warning"]
    assert "roc_auc" in printed and "stored threshold" in printed
    # the model card: on the version and in the evaluation run, the same text
    card = open(client.download_artifacts(run.info.run_id, "model_card.md", str(tmp))).read()
    assert version.description == card
    for section in ("## Data", "## Selection procedure", "## Metrics on the test split",
                    "## Calibration", "## Operating point", "## Grad-CAM examples",
                    "## Known limits", "fingerprint", "Single source", "No group",
                    f"runs:/{reg.run_id}/gradcam.png", "target sensitivity 0.9",
                    # one trial: nothing left to confirm, and the card says so
                    "- **confirmation**: confirm_mean, top 3 by 2 fresh seed(s): not "
                    "confirmed"):
        assert section in card, section
    assert tags["data_fingerprint"] in card
    assert "temperature scaling" in tags["calibration"]


def test_the_loaded_model_applies_its_stored_threshold(registered):
    tmp, raw, reg, _, _ = registered
    client = MlflowClient(raw["tracking_uri"])
    mlflow.set_tracking_uri(raw["tracking_uri"])
    model = mlflow.pyfunc.load_model(f"models:/{NAME}/{reg.version}")
    wrapper = model.unwrap_python_model()
    stored = wrapper.meta["calibration"]
    threshold = stored["threshold"]["threshold"]
    tag = client.get_model_version(NAME, reg.version).tags["threshold_value"]
    assert float(tag) == threshold
    from tunelab.registering import open_finished_study
    from tunelab.wiring import load_data

    data = load_data(open_finished_study("binary", raw["storage"]).config)
    images = to_uint8(data.test.x)
    frame = model.predict(images)
    assert list(frame.columns) == ["label", "prob_0", "prob_1"]  # calibrated: prob_*
    # the calibrated probabilities are the evaluation's, re-applied with numpy in the model
    expected = Calibration.from_dict(stored).probabilities(wrapper.outputs(images))
    np.testing.assert_allclose(frame[["prob_0", "prob_1"]].to_numpy(), expected, atol=1e-9)
    p1 = frame["prob_1"].to_numpy()
    assert (frame["label"] == np.where(p1 >= threshold, "1", "0")).all()
    # predict reads the threshold from the stored meta: another one changes the labels
    other = float(np.quantile(p1, 0.9))
    wrapper.meta = {**wrapper.meta, "calibration": {
        **stored, "threshold": {**stored["threshold"], "threshold": other}}}
    relabelled = model.predict(images)
    assert (relabelled["label"] == np.where(p1 >= other, "1", "0")).all()
    assert (relabelled["label"] == "1").sum() != (frame["label"] == "1").sum()


def test_evaluate_command_logs_another_run_linked_to_the_version(registered, capsys):
    tmp, raw, reg, _, source = registered
    code = main(["evaluate", f"models:/{NAME}@champion", "--dataset", source,
                 "--tracking-uri", raw["tracking_uri"], "--storage", raw["storage"]])
    assert code == 0
    out = capsys.readouterr().out
    assert "on the test split" in out and "small evaluation" in out
    assert "95% intervals from a stratified bootstrap, 500 resamples" in out
    client = MlflowClient(raw["tracking_uri"])
    runs = client.search_runs(
        [client.get_run(reg.run_id).info.experiment_id],
        filter_string="tags.`tunelab.role` = 'evaluation'")
    assert len(runs) == 2
    newest = client.get_model_version(NAME, reg.version).tags["tunelab.evaluation_run"]
    assert newest != reg.evaluation_run_id and newest in {r.info.run_id for r in runs}
    # same data, same seed: the same numbers as at registration
    first, second = (client.get_run(i).data.tags for i in (reg.evaluation_run_id, newest))
    assert first["eval.test.roc_auc"] == second["eval.test.roc_auc"]
    assert main(["evaluate", f"models:/{NAME}@champion", "--split", "val",
                 "--tracking-uri", raw["tracking_uri"], "--storage", raw["storage"]]) == 0
    printed = capsys.readouterr().out
    # the calibration was fitted on the validation split: its ECE after is in sample there
    assert "validation split" in printed and "in sample: the calibration was fitted on" in printed


@pytest.mark.parametrize("loss", ["binary_crossentropy", "hinge", "categorical_crossentropy",
                                  "categorical_hinge"])
@pytest.mark.parametrize("method", ["temperature", "platt"])
def test_the_wrapper_re_applies_the_calibration_with_numpy(loss, method):
    rng = np.random.default_rng(3)
    binary = loss in ("binary_crossentropy", "hinge")
    k = 2 if method == "platt" or binary else 3
    y = rng.integers(0, k, 300)
    if binary:
        outputs = np.tanh(rng.normal(y * 0.8 - 0.4, 1.0))[:, None]
        if loss == "binary_crossentropy":
            outputs = (outputs + 1) / 2
    else:
        outputs = rng.normal(size=(300, k)) + 2.0 * np.eye(k)[y]
        if loss == "categorical_crossentropy":
            outputs = np.exp(outputs) / np.exp(outputs).sum(axis=1, keepdims=True)
    rule = {"sensitivity": 0.8} if k == 2 else None
    cal = fit_calibration(y, outputs, loss=loss, method=method, threshold=rule)
    stored = json.loads(json.dumps(cal.to_dict()))  # what travels in the model's meta
    probs = calibrated_probabilities(outputs, stored)
    np.testing.assert_allclose(probs, cal.probabilities(outputs), atol=1e-12)
    np.testing.assert_array_equal(decide(probs, stored), cal.predict(outputs))


def test_registry_threshold_and_calibration_keys():
    base = {"dataset": {"source": "digits"}}
    for rule in ("accuracy", "youden", {"sensitivity": 0.9}, None):
        config = config_from_dict({**base, "registry": {"threshold": rule,
                                                        "calibration": "platt"}})
        assert config.registry.threshold == rule and config.registry.calibration == "platt"
    for bad in ("f1", {"sensitivity": 1.5}, {"specificity": 0.9}, 0.5):
        with pytest.raises(ConfigError, match="registry.threshold"):
            config_from_dict({**base, "registry": {"threshold": bad}})
    with pytest.raises(ConfigError, match="registry.calibration"):
        config_from_dict({**base, "registry": {"calibration": "isotonic"}})


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser():
    if not (CHROMIUM and DRIVER):
        pytest.skip("headless Chromium not installed (Debian: apt-get install chromium "
                    "chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1600,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_report_renders_offline_with_every_trial_and_the_champions_intervals(registered,
                                                                             browser):
    tmp, raw, reg, _, source = registered
    # a second, grid study beside the first: two variants, no registered model
    grid = tiny_study(tmp, study_name="binary-grid", n_trials=2, max_epochs=1, **{
        "dataset.source": source, "dataset.test_fraction": 0.3, "sampler.kind": "grid",
        "space.loss": "hinge", "space.learning_rate": 5e-3, "space.n_base": [4, 8]})
    tunelab.tune(grid, in_process=True)
    path = tmp / "report.html"
    assert main(["report", "binary", "binary-grid", "-o", str(path),
                 "--storage", raw["storage"], "--tracking-uri", raw["tracking_uri"]]) == 0
    text = path.read_text()
    assert "http://" not in text and "https://" not in text and "<script" not in text
    browser.get(path.as_uri())
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors
    images = browser.find_elements("tag name", "img")
    assert len(images) >= 2 + 4 + 1  # two studies' curves, four evaluation figures, Grad-CAM
    for img in images:
        assert browser.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", img)
    from tunelab.registering import best, open_finished_study

    for name in ("binary", "binary-grid"):
        study = open_finished_study(name, raw["storage"]).study
        rows = browser.find_elements("css selector", f'section[data-study="{name}"] tr.trial-row')
        assert len(rows) == len(study.trials) > 0
        # each row's numbers, computed here from the trial's stored history
        chosen = best(name, raw["storage"]).chosen.number
        # the report's pick is `best`'s (the rule re-ranked by selection.method)
        from tunelab.reporting import study_data

        assert study_data(name, raw["storage"], raw["tracking_uri"])["reference"] == chosen
        target = study.trials[chosen].user_attrs["history"]["accuracy"][-1]
        for row in rows:
            cells = [td.text for td in row.find_elements("tag name", "td")]
            trial = study.trials[int(cells[0])]
            h = trial.user_attrs["history"]
            b = int(trial.user_attrs["summary"]["best_epoch"]) - 1
            reached = next((i + 1 for i, a in enumerate(h["accuracy"]) if a >= target),
                           "never")
            assert cells[3:5] == [str(len(h["loss"])), str(b + 1)]
            assert cells[5:15] == [f"{v:.4f}" for v in (
                h["accuracy"][b], h["val_accuracy"][b], h["loss"][b], h["val_loss"][b],
                h["accuracy"][-1], h["val_accuracy"][-1], h["loss"][-1], h["val_loss"][-1],
                h["accuracy"][b] - h["val_accuracy"][b])] + [str(reached)], (name, cells)
    assert browser.find_elements("css selector", 'section[data-study="binary-grid"] '
                                 "table.variants tbody tr")
    # the champion's intervals as shown are the evaluation run's tags
    section = browser.find_element("css selector", 'section[data-study="binary"]')
    run_id = section.find_element("css selector", "[data-run]").get_attribute("data-run")
    client = MlflowClient(raw["tracking_uri"])
    run_tags = client.get_run(run_id).data.tags
    assert run_tags["tunelab.split"] == "test" and run_tags["tunelab.model_name"] == NAME
    cells = section.find_elements("css selector", "td[data-tag]")
    shown = {c.get_attribute("data-tag"): c.text for c in cells}
    assert "eval.test.roc_auc" in shown and "95% CI" in shown["eval.test.roc_auc"]
    assert shown == {k: v for k, v in run_tags.items() if k in shown}
    assert {k for k in run_tags if k.startswith("eval.test.")} - set(shown) <= {
        "eval.test.interval_method", "eval.test.warning"}
    # logged to both studies' parent runs
    for name in ("binary", "binary-grid"):
        experiment = client.get_experiment_by_name(name).experiment_id
        parent = client.search_runs([experiment], "tags.`tunelab.role` = 'study'")[0]
        assert "report/report.html" in {a.path for a in client.list_artifacts(
            parent.info.run_id, "report")}
