"""The first workers start before their study is ready (issue #21): ``tune`` starts them
before it loads the data, so their TensorFlow and Optuna imports overlap its own start-up
(data, checks, stores, parent run); it hands them their command line once the study exists.
A worker never imports MLflow: its writer process creates and writes its trial runs. One
never launched (a config error, a stop) is killed and leaves nothing.
Real ``tunelab tune`` subprocesses and worker processes, timed by the timeline marks."""

import json
import os
import subprocess
import sys
import time

import psutil
import pytest
import yaml
from conftest import tiny_study


def _run(tmp_path, raw, timeout=900):
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(raw))
    timeline = tmp_path / "timeline.jsonl"
    env = {**os.environ, "TUNELAB_TIMELINE": str(timeline)}
    proc = subprocess.run([sys.executable, "-m", "tunelab", "tune", "study.yaml"],
                          cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=timeout)
    marks = [json.loads(line) for line in timeline.read_text().splitlines()] \
        if timeline.exists() else []
    return proc, marks


def _first(marks, event, pid=None):
    return next(m["t"] for m in marks if m["event"] == event
                and (pid is None or m["pid"] == pid))


def test_the_first_worker_imports_while_tune_loads_the_data_then_trains(tmp_path):
    raw = tiny_study(tmp_path, study_name="standby", n_trials=2, max_epochs=1)
    proc, marks = _run(tmp_path, raw)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    parent = next(m["pid"] for m in marks if m["event"] == "process_start"
                  and m.get("argv", [None])[0] == "tune")
    worker = next(m["pid"] for m in marks if m["event"] == "standby_launched")
    assert worker != parent
    # started before the parent had its data, ready (TensorFlow and the families imported)
    # before it was handed its command line, which came once the study and parent run
    # existed; then it ran the study's trials
    assert _first(marks, "standby_spawned", parent) < _first(marks, "data_loaded", parent)
    assert _first(marks, "standby_ready", worker) <= _first(marks, "standby_launched", worker)
    assert sum(m["event"] == "trial_end" and m["pid"] == worker for m in marks) == 2, marks
    assert "2 complete" in proc.stdout, proc.stdout[-2000:]
    # it trained without MLflow: its writer process made the runs, whose ids reached the
    # trials (what `best`, `register` and the confirmations link to)
    loaded = next(m["frameworks"] for m in marks
                  if m["event"] == "worker_exit" and m["pid"] == worker)
    assert "tensorflow" in loaded and "optuna" in loaded and "mlflow" not in loaded, loaded
    import optuna
    from mlflow import MlflowClient

    trials = optuna.load_study(study_name="standby", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(raw["storage"]))).trials
    client = MlflowClient(raw["tracking_uri"])
    for trial in trials:
        run = client.get_run(trial.user_attrs["mlflow_run_id"])
        assert run.info.status == "FINISHED"
        assert run.data.tags["tunelab.trial"] == str(trial.number)
        assert run.data.metrics["val_accuracy"] == pytest.approx(
            trial.user_attrs["history"]["val_accuracy"][-1], abs=1e-5)
    # during the last trial tune started its own tracking writer, which drew its share of
    # the study end once on the trials so far (its Plotly classes warm); so at the end the
    # writer was running and the parent run got every study figure and the page
    assert _first(marks, "study_end_warm_start", parent) < _first(marks, "study_end_start",
                                                                  parent)
    assert any(m["event"] == "study_end_warm_done" and m["pid"] == parent for m in marks)
    experiment = client.get_experiment_by_name("standby")
    study_run = [r for r in client.search_runs([experiment.experiment_id])
                 if r.data.tags.get("tunelab.role") == "study"][0]
    logged = {a.path for a in client.list_artifacts(study_run.info.run_id, "study")}
    assert {"study/interactive.html", "study/slice.png", "study/intermediate_values.png",
            "study/overfitting.png"} <= logged, logged
    # and the writer's in-memory copies of the study stay off the terminal
    assert "created in memory" not in proc.stdout + proc.stderr, proc.stderr[-2000:]
    # the same command again: the budget is met, so no worker is started at all
    (tmp_path / "timeline.jsonl").unlink()
    again, marks = _run(tmp_path, raw)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert not [m for m in marks if m["event"] == "standby_start"], marks


def test_a_standby_that_died_while_waiting_is_replaced_by_a_fresh_worker(tmp_path):
    from tunelab.tuning import StandbyWorkers

    standby = StandbyWorkers.start(1)
    try:
        proc = standby.procs[0]
        proc.kill()  # the OOM killer, a user: it held nothing
        proc.wait()
        assert standby.launch(0, ["worker", "--help"]) is None
        assert not standby.procs
    finally:
        standby.close()
    read_fd, write_fd = standby.take_pipe() if standby.pipe else (None, None)
    assert read_fd is None  # close() closed the pipe nobody took


def _standby_children_of(pid_marks_dir) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline", "cwd"]):
        try:
            if "--standby" in (p.info["cmdline"] or []) and p.info["cwd"] == str(pid_marks_dir):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_a_config_error_after_the_start_leaves_no_standby_worker(tmp_path):
    # VGG16 needs 32x32 images: refused by the checks against the data, after the standby
    # worker has started (it was importing TensorFlow meanwhile)
    raw = tiny_study(tmp_path, study_name="refused", model="vgg16")
    raw["space"] = {"learning_rate": 1e-3, "batch_size": 128}
    proc, marks = _run(tmp_path, raw)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "needs images of at least 32x32" in proc.stderr
    assert "Traceback" not in proc.stderr
    # the standby worker did start (the data check now fails within about 0.3 s, often
    # before the standby's own first mark) and was then killed
    started = [m["child"] for m in marks if m["event"] == "standby_spawned"]
    assert started, marks
    deadline = time.time() + 10
    while _standby_children_of(tmp_path) and time.time() < deadline:
        time.sleep(0.2)
    assert not _standby_children_of(tmp_path)
    for pid in started:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    assert not (tmp_path / "mlruns" / "optuna.journal").exists()  # no store was written


@pytest.mark.parametrize("ready", [False, True], ids=["importing", "waiting"])
def test_a_standby_worker_exits_quietly_when_its_stdin_closes(tmp_path, ready):
    """The ``tune`` process died (SIGKILL): its standby worker reads end-of-file and exits 0,
    with nothing on its stderr, whether it was still importing or already waiting."""
    proc = subprocess.Popen([sys.executable, "-m", "tunelab", "worker", "--standby"],
                            cwd=tmp_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if ready:
        time.sleep(15)
    proc.stdin.close()
    proc.stdin = None
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err, err[-2000:]


def test_tune_imports_tensorflow_for_the_confirmation_while_the_last_trials_train(tmp_path):
    """The confirmation runs train in the tune process, which no longer loads TensorFlow for
    its checks: it imports it in the background once the search's last trial is under way,
    so the import overlaps that trial instead of following it."""
    raw = tiny_study(tmp_path, study_name="preload", n_trials=10, max_epochs=3,
                     **{"early_stopping.enabled": False,
                        "selection": {"method": "confirm_mean", "confirm_top": 1,
                                      "confirm_seeds": 1}})
    proc, marks = _run(tmp_path, raw)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    parent = next(m["pid"] for m in marks if m["event"] == "process_start"
                  and m.get("argv", [None])[0] == "tune")
    ends = sorted(m["t"] for m in marks if m["event"] == "trial_end" and m["pid"] != parent)
    assert len(ends) == 9, ends  # 9 searched, 1 confirmation run
    preload = _first(marks, "preload_start", parent)
    assert ends[-3] < preload < ends[-1], (ends, preload)  # during the last trial, not before
    confirmation = _first(marks, "train_start", parent)
    assert _first(marks, "preload_done", parent) <= confirmation
