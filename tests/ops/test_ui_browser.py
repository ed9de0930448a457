"""`tunelab server` and the MLflow UI, driven in a real headless Chromium: the link it prints
(only once the server answers) opens the study's runs table in model-training mode with
tunelab's columns, optuna-dashboard shows the study, and no request is logged."""

import os
import re
import shutil
import subprocess
import sys
import threading
import time

import pytest
from conftest import tiny_study

import tunelab

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
START_TIMEOUT = 300  # the MLflow server takes 40-110 s to answer on 2 busy cores


@pytest.fixture
def browser():
    if not (CHROMIUM and DRIVER):
        pytest.skip("headless Chromium not installed (Debian: apt-get install chromium "
                    "chromium-driver; .ci/run installs them)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1600,1000"):
        options.add_argument(flag)
    from selenium.webdriver.chrome.service import Service

    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def page_shows(driver, words, timeout=90, absent=()):
    deadline = time.time() + timeout
    text = ""
    while time.time() < deadline:
        text = driver.find_element("tag name", "body").text
        if all(w in text for w in words) and not any(w in text for w in absent):
            return text
        time.sleep(1)
    driver.save_screenshot("/tmp/ui-fail.png")
    raise AssertionError(f"{words} not all on the page (or {absent} on it); it shows: "
                         f"{text[:1500]}")


class Output:
    """The server's output, line by line, each with whether its URL answered by then."""

    def __init__(self, process, probes):
        self.lines: list[tuple[str, dict[str, bool]]] = []
        self.probes = probes  # url -> path answered when up
        self.thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.thread.start()

    def _read(self, process):
        from tunelab.tracking.server import answers

        for line in process.stdout:
            urls = [u for u in self.probes if u in line]
            self.lines.append((line.rstrip("\n"), {u: answers(u, self.probes[u])
                                                   for u in urls}))

    def wait_for(self, pattern, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for line, answered in self.lines:
                match = re.search(pattern, line)
                if match:
                    return match, answered
            time.sleep(0.5)
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n"
                             + "\n".join(line for line, _ in self.lines))

    @property
    def text(self):
        return "\n".join(line for line, _ in self.lines)


def test_server_opens_the_study_on_its_runs_and_serves_the_dashboard(tmp_path, browser):
    pytest.importorskip("optuna_dashboard", reason="pip install optuna-dashboard")
    raw = tiny_study(tmp_path, study_name="ui-study", n_trials=2, max_epochs=1)
    tunelab.tune(raw, in_process=True)
    from mlflow import MlflowClient

    from tunelab.tracking.server import free_port

    experiment = MlflowClient(raw["tracking_uri"]).get_experiment_by_name("ui-study")
    # the experiment is marked as model training, with a value MLflow's UI defines
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    port, dashboard_port = free_port(), free_port()
    url, dashboard = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{dashboard_port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "tunelab", "server", "--port", str(port),
         "--backend-store-uri", raw["tracking_uri"], "--storage", raw["storage"],
         "--dashboard-port", str(dashboard_port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    output = Output(server, {url: "/health", dashboard: "/api/meta"})
    try:
        # each URL is printed once it answers, never before
        link, answered = output.wait_for(r"study ui-study: (\S+)", START_TIMEOUT)
        _, mlflow_up = output.wait_for(r"MLflow UI at http://127\.0\.0\.1:\d+ ", 5)
        assert mlflow_up == {url: True}, output.text
        ours = [line for line in output.text.split("MLflow UI at")[0].splitlines()
                if line.startswith("tunelab:")]  # (uvicorn's own lines are not tunelab's)
        assert not [line for line in ours if url in line], output.text
        _, dashboard_up = output.wait_for(r"optuna-dashboard at http", START_TIMEOUT)
        assert dashboard_up == {dashboard: True}, output.text
        assert link.group(1) == (f"{url}/#/experiments/{experiment.experiment_id}/runs?"
                                 "workflowType=machine_learning&viewStateShareKey=tunelab")

        # a fresh browser (never switched to "Model training") lands on the runs table with
        # tunelab's columns, not on the GenAI traces dashboard
        browser.get(link.group(1))
        # sorted by the objective, the trial runs are rows of their own (best first), not
        # hidden under the collapsed parent run; the view's metric columns are there
        page_shows(browser, ["ui-study", "tunelab: trials", "matching runs", "Run Name",
                             "trial-0000", "trial-0001", "best_epoch", "gap_accuracy"],
                   absent=["Detect issues", "Token usage"])
        assert "/runs" in browser.current_url and "/traces" not in browser.current_url
        browser.save_screenshot(str(tmp_path / "ui.png"))
        if os.environ.get("TUNELAB_SCREENSHOTS"):  # to look at it: a folder to copy it to
            shutil.copy(tmp_path / "ui.png", os.environ["TUNELAB_SCREENSHOTS"])

        browser.get(f"{dashboard}/dashboard")
        page_shows(browser, ["ui-study"])
        time.sleep(2)
        # request logs are off: hundreds of requests above, not one line about them
        assert not re.search(r'"(GET|POST) /', output.text), output.text
    finally:
        server.terminate()  # tunelab server stops both services and their workers
        server.wait(timeout=90)
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert not [line for line in ps.splitlines()
                if f"--port {port}" in line or f"--port {dashboard_port}" in line], ps
