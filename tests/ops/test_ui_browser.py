"""The MLflow UI served by `tunelab server`, driven in a real headless Chromium."""

import shutil
import subprocess
import sys
import time

import pytest
from conftest import tiny_study

import tunelab

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


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


def page_shows(driver, words, timeout=60):
    deadline = time.time() + timeout
    text = ""
    while time.time() < deadline:
        text = driver.find_element("tag name", "body").text
        if all(w in text for w in words):
            return text
        time.sleep(1)
    driver.save_screenshot("/tmp/ui-fail.png")
    raise AssertionError(f"{words} not all on the page; it shows: {text[:1500]}")


def test_ui_lists_the_study_and_its_trial_runs(tmp_path, browser):
    raw = tiny_study(tmp_path, study_name="ui-study", n_trials=2, max_epochs=1)
    tunelab.tune(raw, in_process=True)
    from mlflow import MlflowClient

    from tunelab.tracking.server import free_port, wait_until_up

    experiment_id = MlflowClient(raw["tracking_uri"]).get_experiment_by_name(
        "ui-study").experiment_id
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tunelab", "server", "--port", str(port),
                               "--backend-store-uri", raw["tracking_uri"]],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, timeout=120, process=server)
        browser.get(f"{url}/#/experiments")
        page_shows(browser, ["ui-study"])
        browser.get(f"{url}/#/experiments/{experiment_id}/runs?searchFilter="
                    "tags.%60tunelab.role%60%20%3D%20%27trial%27")
        page_shows(browser, ["ui-study", "3 matching runs"])
        # trial runs are nested under the study's parent run: expand it
        expanders, deadline = [], time.time() + 60
        while not expanders and time.time() < deadline:  # the table renders rows lazily
            expanders = browser.find_elements(
                "xpath", "//*[normalize-space(text())='ui-study']/ancestor::*[@role='row' or "
                "contains(@class,'row')][1]//button")
            time.sleep(0 if expanders else 1)
        assert expanders, "no expand button on the study's parent run row"
        expanders[0].click()
        page_shows(browser, ["trial-0000", "trial-0001"])
        browser.save_screenshot(str(tmp_path / "ui.png"))
    finally:
        server.terminate()
        server.wait(timeout=60)
    # the MLflow server and the workers it started go with `tunelab server`
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert not [line for line in ps.splitlines() if f"--port {port}" in line], ps
