"""Trial runs log through a writer process: the trainer never waits, nothing is lost."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tunelab.tracking import StudyTracker
from tunelab.tracking.writer import BackgroundWriter

HISTORY = {"loss": [0.9, 0.5, 0.4], "val_loss": [0.8, 0.6, 0.7],
           "accuracy": [0.5, 0.8, 0.9], "val_accuracy": [0.55, 0.75, 0.7]}
SUMMARY = {"best_epoch": 2, "best_val_accuracy": 0.75}


def wait_for(path):
    """A call the writer runs that holds it until ``path`` exists (picklable: a subprocess)."""
    return (subprocess.run, ["sh", "-c", f"while [ ! -e {path} ]; do sleep 0.05; done"])


def artifacts(tracker, run_id):
    return {f.path for f in tracker.client.list_artifacts(run_id)}


def test_finish_returns_before_the_run_is_written_and_flush_lands_it(tmp_path):
    tracker = StudyTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "bg")
    run = tracker.trial_run(0, {"learning_rate": 0.01}, seed=0, config={}, data_info={})
    gate = tmp_path / "go"
    tracker.writer.submit(*wait_for(gate))  # hold the writer, as a slow store would
    for epoch in range(3):
        run.epoch_ended(epoch, {k: v[epoch] for k, v in HISTORY.items()})
    run.finish(state="COMPLETE", summary=SUMMARY, history=HISTORY, y_true=[0, 1, 1],
               y_pred=[0, 1, 0], class_names=["benign", "malignant"], model_summary="lenet")
    # the trainer is free while the writer is held: nothing of the trial is written yet
    assert tracker.writer.pending >= 6
    logged = tracker.client.get_run(run.run_id)
    assert logged.info.status == "RUNNING"
    assert "learning_rate" not in logged.data.params and not logged.data.metrics
    gate.touch()
    tracker.flush()
    assert tracker.writer.pending == 0
    logged = tracker.client.get_run(run.run_id)
    assert logged.info.status == "FINISHED"
    assert logged.data.params["learning_rate"] == "0.01"
    assert logged.data.tags["tunelab.state"] == "COMPLETE"
    # submitted order is kept: every epoch, in order, before the run ended
    assert [(m.step, m.value) for m in tracker.client.get_metric_history(
        run.run_id, "val_accuracy")] == list(enumerate(HISTORY["val_accuracy"], start=1))
    assert {"learning_curves.png", "confusion_matrix.png", "model_summary.txt",
            "config.yaml"} <= artifacts(tracker, run.run_id)


def test_a_failing_store_is_reported_once_and_the_trainer_never_sees_it(tmp_path, capfd):
    tracker = StudyTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "bg")
    tracker.writer = BackgroundWriter()  # a child started now writes to this test's stderr
    run = tracker.trial_run(3, {"dropout": 0.2}, seed=0, config={}, data_info={})
    tracker.flush()
    tracker.client.delete_run(run.run_id)  # every later call on this run is refused
    for epoch in range(3):
        run.epoch_ended(epoch, {"loss": 1.0})
    run.finish(state="COMPLETE", summary=SUMMARY, history=HISTORY)
    tracker.writer.close()
    err = capfd.readouterr().err
    assert err.count("tracking error for trial 3") == 1


def test_a_process_that_exits_without_flushing_still_lands_its_runs(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    script = textwrap.dedent(f"""
        import time
        from tunelab.tracking import StudyTracker
        tracker = StudyTracker({uri!r}, "exit")
        run = tracker.trial_run(0, {{"n_base": 8}}, seed=0, config={{}}, data_info={{}})
        tracker.writer.submit(time.sleep, 1.0)  # still busy when the script ends
        run.finish(state="COMPLETE", summary={SUMMARY!r}, history={HISTORY!r})
        print(run.run_id)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    run_id = out.split()[-1]
    tracker = StudyTracker(uri, "exit")
    logged = tracker.client.get_run(run_id)
    assert logged.info.status == "FINISHED"
    assert "learning_curves.png" in artifacts(tracker, run_id)


@pytest.mark.slow
def test_the_writer_finishes_what_it_received_when_its_trainer_is_killed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    gate = tmp_path / "go"
    script = textwrap.dedent(f"""
        import subprocess, time
        from tunelab.tracking import StudyTracker
        tracker = StudyTracker({uri!r}, "killed")
        run = tracker.trial_run(0, {{"n_base": 8}}, seed=0, config={{}}, data_info={{}})
        tracker.writer.submit(subprocess.run, {wait_for(gate)[1]!r})
        run.finish(state="COMPLETE", summary={SUMMARY!r}, history={HISTORY!r})
        print(run.run_id, tracker.writer._proc.pid, flush=True)
        time.sleep(600)
    """)
    trainer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                               text=True, start_new_session=True)
    run_id, writer_pid = trainer.stdout.readline().split()
    # Ctrl-C, then a hard kill of the trainer's whole process group: no atexit, no flush
    os.killpg(trainer.pid, signal.SIGINT)
    os.killpg(trainer.pid, signal.SIGKILL)
    trainer.wait()
    os.kill(int(writer_pid), 0)  # the writer, in a session of its own, is still there
    gate.touch()
    tracker = StudyTracker(uri, "killed", background=False)
    deadline = time.time() + 60
    while tracker.client.get_run(run_id).info.status == "RUNNING" and time.time() < deadline:
        time.sleep(0.2)
    assert tracker.client.get_run(run_id).info.status == "FINISHED"
    assert "learning_curves.png" in artifacts(tracker, run_id)


def test_close_waits_for_every_call_but_not_for_the_childs_exit(tmp_path):
    """A worker's exit (a recycle's critical path) waited 1-2 s for the writer's teardown."""
    import atexit

    writer = BackgroundWriter()
    writer.start()
    writer.submit(atexit.register, time.sleep, 8.0)  # the child's exit takes 8 s
    writer.flush()  # the child has imported MLflow (seconds on a loaded machine), not timed
    done = tmp_path / "written"
    writer.submit(subprocess.run, ["sh", "-c", f"sleep 0.5; touch {done}"])
    proc = writer._proc
    start = time.monotonic()
    writer.close()
    took = time.monotonic() - start
    assert done.exists()  # every call ran before close returned
    assert took < 6.0, f"close waited {took:.1f} s: for the child's exit"
    assert proc.poll() is None  # still in its teardown
    proc.wait(timeout=30)  # and it does exit


def test_close_returns_when_the_child_dies_with_calls_unacknowledged(tmp_path):
    writer = BackgroundWriter()
    writer.start()
    writer.submit(os._exit, 3)  # dies without acknowledging
    writer.submit(time.sleep, 0)
    start = time.monotonic()
    writer.close(timeout=60)
    assert time.monotonic() - start < 30


def test_call_returns_the_childs_result_as_a_future_in_submission_order(tmp_path):
    """A worker's trial run is created in the writer; its id comes back as the result."""
    from tunelab.tracking.writer import CallFailed, WriterGone

    writer = BackgroundWriter()
    gate = tmp_path / "gate"
    writer.submit(*wait_for(gate))  # hold the child: the futures wait, the caller does not
    pid = writer.call(os.getpid)
    failed = writer.call(int, "not a number")
    joined = writer.call(os.path.join, "a", "b")
    assert not pid.done()
    gate.touch()
    assert pid.result(timeout=60) == writer._proc.pid != os.getpid()  # ran in the child
    with pytest.raises(CallFailed, match="ValueError: invalid literal"):
        failed.result(timeout=60)
    assert joined.result(timeout=60) == "a/b"
    # the child dies: what it never answered fails instead of hanging its waiter
    writer.submit(os._exit, 3)
    lost = writer.call(os.getpid)
    with pytest.raises(WriterGone):
        lost.result(timeout=60)
    writer.close(timeout=60)


def test_a_worker_tracker_logs_a_trial_without_mlflow_in_its_process(tmp_path):
    """``tracking.remote``: the run is created and written by the writer process; the worker's
    own process never imports MLflow, and the run id comes back."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    script = textwrap.dedent(f"""
        import sys
        from tunelab.tracking.remote import RemoteTracker
        tracker = RemoteTracker({uri!r}, "remote")
        run = tracker.trial_run(0, {{"learning_rate": 0.01}}, seed=3, config={{}},
                                data_info={{"fingerprint": "f"}})
        for epoch in range(3):
            run.epoch_ended(epoch, {{k: v[epoch] for k, v in {HISTORY!r}.items()}})
        run.finish(state="COMPLETE", summary={SUMMARY!r}, history={HISTORY!r})
        run_id = run.wait_run_id(60)
        tracker.flush()
        print(run_id, "mlflow" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    run_id, loaded = out.stdout.split()
    assert loaded == "False"
    tracker = StudyTracker(uri, "remote", background=False)
    run = tracker.client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["learning_rate"] == "0.01" and run.data.params["seed"] == "3"
    steps = tracker.client.get_metric_history(run_id, "val_accuracy")
    assert [(m.step, m.value) for m in steps] == [(1, 0.55), (2, 0.75), (3, 0.7)]
    assert "learning_curves.png" in artifacts(tracker, run_id)


def test_a_worker_tracker_reports_a_store_that_is_down_once_and_the_trial_goes_on(tmp_path,
                                                                                capfd):
    from tunelab.tracking.remote import RemoteTracker

    down = tmp_path / "not-a-dir" / "file"
    down.parent.write_text("a file where the store's folder should be")
    writer = BackgroundWriter()
    tracker = RemoteTracker(f"sqlite:///{down / 'mlflow.db'}", "down", writer=writer)
    for number in range(2):
        run = tracker.trial_run(number, {}, seed=0, config={}, data_info={})
        run.epoch_ended(0, {"loss": 1.0})
        run.finish(state="COMPLETE", summary={}, history={"loss": [1.0]})
        assert run.wait_run_id(60) is None  # untracked, not an error in the trainer
    tracker.flush()
    writer.close(timeout=60)
    err = capfd.readouterr().err
    assert err.count("tunelab: tracking unavailable") == 1, err[-2000:]
    assert "Traceback" not in err


def test_epochs_closer_than_the_live_interval_are_written_together_and_all_land(tmp_path,
                                                                               monkeypatch):
    """Short epochs cost one store round trip a couple of seconds, not one each; the run's
    final batch carries the rest, every epoch at its step and in order."""
    from tunelab.tracking import runs

    tracker = StudyTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "live", background=False)
    run = tracker.trial_run(0, {"n_base": 8}, seed=0, config={}, data_info={})
    for epoch in range(3):
        run.epoch_ended(epoch, {k: v[epoch] for k, v in HISTORY.items()})
    # the first epoch is live at once; the next two came within the interval
    assert [m.step for m in tracker.client.get_metric_history(run.run_id, "loss")] == [1]
    run.finish(state="COMPLETE", summary=SUMMARY, history=HISTORY)
    history = tracker.client.get_metric_history(run.run_id, "val_accuracy")
    assert [(m.step, m.value) for m in history] == list(enumerate(HISTORY["val_accuracy"], 1))
    assert [m.timestamp for m in history] == sorted(m.timestamp for m in history)
    assert tracker.client.get_run(run.run_id).data.metrics["best_epoch"] == 2

    monkeypatch.setattr(runs, "LIVE_INTERVAL", 0.0)  # epochs slower than the interval
    run = tracker.trial_run(1, {"n_base": 8}, seed=0, config={}, data_info={})
    for epoch in range(3):
        run.epoch_ended(epoch, {k: v[epoch] for k, v in HISTORY.items()})
        assert len(tracker.client.get_metric_history(run.run_id, "loss")) == epoch + 1


def test_epochs_a_killed_trainer_left_unwritten_land_when_its_writer_exits(tmp_path):
    """The writer holds a short epoch back for the next write; if the trainer dies before
    the trial ends, the writer writes what it holds as it exits."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    script = textwrap.dedent(f"""
        import os, signal
        from tunelab.tracking.remote import RemoteTracker
        tracker = RemoteTracker({uri!r}, "dead")
        run = tracker.trial_run(0, {{"n_base": 8}}, seed=0, config={{}}, data_info={{}})
        for epoch in range(3):
            run.epoch_ended(epoch, {{k: v[epoch] for k, v in {HISTORY!r}.items()}})
        run_id = run.wait_run_id(60)
        tracker.flush()  # the writer has every epoch; the trainer dies mid-trial
        print(run_id, tracker.writer._proc.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == -signal.SIGKILL, out.stderr[-3000:]
    run_id, writer_pid = out.stdout.split()
    deadline = time.time() + 60
    while os.path.exists(f"/proc/{writer_pid}") and time.time() < deadline:
        time.sleep(0.1)
    tracker = StudyTracker(uri, "dead", background=False)
    steps = tracker.client.get_metric_history(run_id, "val_accuracy")
    assert [(m.step, m.value) for m in steps] == [(1, 0.55), (2, 0.75), (3, 0.7)]
