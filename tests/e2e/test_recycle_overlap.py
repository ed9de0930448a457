"""A recycled worker's successor starts while the worker trains its last trial (issue #21):
it imports TensorFlow and loads the data during that trial and starts training the moment its
predecessor exits, so a recycle costs no start-up on the critical path, and never two trainers
in one slot. Real `tunelab tune` subprocesses with real worker processes, timed from inside
by the timeline marks (TUNELAB_TIMELINE)."""

import json
import os
import subprocess
import sys

import optuna
import pytest
import yaml
from conftest import tiny_study


def _tune(tmp_path, overlap: bool):
    raw = tiny_study(tmp_path, study_name="recycle", n_trials=3, max_epochs=4,
                     trials_per_process=1, overlap_recycle=overlap,
                     **{"early_stopping.enabled": False})
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(raw))
    timeline = tmp_path / "timeline.jsonl"
    env = {**os.environ, "TUNELAB_TIMELINE": str(timeline), "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-m", "tunelab", "tune", "study.yaml"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    marks = [json.loads(line) for line in timeline.read_text().splitlines()]
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(raw["storage"]))
    trials = optuna.load_study(study_name="recycle", storage=storage).trials
    return marks, trials


def _by_pid(marks, event):
    return {m["pid"]: m["t"] for m in marks if m["event"] == event}


@pytest.mark.slow  # two studies of three worker processes: about 2 min on 2 cores
def test_the_successor_loads_while_its_predecessor_trains_and_never_trains_beside_it(tmp_path):
    marks, trials = _tune(tmp_path / "on", overlap=True)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    exited = _by_pid(marks, "worker_exit")
    waited = _by_pid(marks, "predecessor_exited")
    assert len(exited) == 3, marks  # three workers, one trial each (tune loads data too)
    # the second and third workers were started during their predecessors' trials (their
    # start-up, TensorFlow's import above all, overlapped that training) and waited for the
    # predecessor's exit before their own trial; no fourth: the last trial in flight
    # finishes the budget
    begun = _by_pid(marks, "process_start")
    asked = _by_pid(marks, "trial_ask")
    order = sorted(exited, key=exited.get)
    assert set(waited) == set(order[1:]), marks
    for before, after in zip(order, order[1:], strict=False):
        assert asked[before] < begun[after] < exited[before] <= waited[after] + 0.5, marks
    spans = sorted((t.datetime_start, t.datetime_complete) for t in trials)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end, spans  # one trainer at a time in the one slot

    off, _ = _tune(tmp_path / "off", overlap=False)
    assert not _by_pid(off, "predecessor_exited")

    def gaps(ms):  # from one trial's end to the next trial's start, across the recycle
        ends = sorted(m["t"] for m in ms if m["event"] == "trial_end")
        starts = sorted(m["t"] for m in ms if m["event"] == "trial_ask")
        return [round(s - e, 1) for e, s in zip(ends, starts[1:], strict=False)]
    print(f"recycle gaps with the overlap {gaps(marks)} s, without {gaps(off)} s")
