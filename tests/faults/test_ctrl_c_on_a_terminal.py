"""Ctrl-C typed on a real terminal (issue #14): `tunelab tune` runs on a pseudo-terminal that
is its controlling terminal, with its live display drawing and a CPU hog beside it; ``^C``
typed on the terminal (the line discipline sends SIGINT to the foreground process group, as
at a shell prompt) must end it with exit 130 within 15 s, no traceback on the screen, the
interrupted trial FAIL and no MLflow run left RUNNING."""

import importlib.util
import sys
import time
from pathlib import Path

import optuna
import yaml
from conftest import tiny_study
from mlflow import MlflowClient
from terminal_io import PtyRun, screen_lines

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("process_faults",
                                               REPO / "benchmarks" / "process_faults.py")
pf = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("process_faults", pf)
_spec.loader.exec_module(pf)


def test_ctrl_c_typed_on_the_terminal_during_a_trial(tmp_path):
    raw = tiny_study(tmp_path, study_name="pty", n_trials=3, max_epochs=40,
                     **{"early_stopping.enabled": False, "heartbeat_interval": 2})
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(raw))
    with pf.cpu_hog(1):
        run = PtyRun(["tune", "study.yaml"], tmp_path, columns=80, controlling=True)
        # the live display's epoch bar: trial 0 is in its epochs
        assert run.wait_for(lambda: "acc " in run.text and "left" in run.text, 300), \
            run.text[-3000:]
        typed = time.time()
        run.type_ctrl_c()
        while run.proc.poll() is None and time.time() - typed < 60:
            run.read(0.1)
        seconds = time.time() - typed
        rc = run.finish(timeout=60)
    shown = "\n".join(screen_lines(run.text))
    assert rc == 130, shown[-3000:]
    assert seconds <= 15, (seconds, shown[-3000:])
    assert "Traceback" not in run.text and "Exception ignored" not in run.text, shown[-3000:]
    assert "tunelab: interrupted; finished trials are saved" in shown, shown[-3000:]
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(raw["storage"]))
    trials = optuna.load_study(study_name="pty", storage=storage).trials
    assert trials and not [t for t in trials if t.state.name == "RUNNING"], trials
    assert trials[-1].state.name == "FAIL"
    client = MlflowClient(raw["tracking_uri"])
    experiment = client.get_experiment_by_name("pty")
    deadline = time.time() + 60  # the tracking writer (own session) may still be finishing
    while time.time() < deadline:
        runs = client.search_runs([experiment.experiment_id])
        if not [r for r in runs if r.info.status == "RUNNING"]:
            break
        time.sleep(1)
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    assert any(r.info.status == "KILLED" for r in runs)
