"""The timeline recorder benchmarks/orchestration.py reads: JSON lines when asked, else nothing."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def load_timeline(monkeypatch, path: Path | None):
    """A fresh copy of models/timeline.py, loaded by file (no Keras), reading the env var."""
    if path is None:
        monkeypatch.delenv("TUNELAB_TIMELINE", raising=False)
    else:
        monkeypatch.setenv("TUNELAB_TIMELINE", str(path))
    spec = importlib.util.spec_from_file_location("timeline_under_test",
                                                  REPO / "models" / "timeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_marks_append_json_lines(monkeypatch, tmp_path):
    path = tmp_path / "timeline.jsonl"
    path.write_text(json.dumps({"t": 0.0, "pid": 1, "event": "earlier"}) + "\n")
    timeline = load_timeline(monkeypatch, path)
    before = time.time()
    timeline.mark("trial_start", trial=3)
    timeline.mark("epoch_end", epoch=0)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["event"] == "earlier"  # appended, not overwritten
    marks = [e for e in lines[1:] if e["event"] != "process_start"]
    assert [(e["event"], e.get("trial"), e.get("epoch")) for e in marks] == [
        ("trial_start", 3, None), ("epoch_end", None, 0)]
    assert all(e["pid"] == os.getpid() and before <= e["t"] <= time.time() for e in marks)
    if sys.platform.startswith("linux"):  # the kernel's start time of this process, once
        starts = [e for e in lines if e["event"] == "process_start"]
        assert len(starts) == 1 and starts[0]["t"] <= before
    assert timeline.enabled()


def test_unset_is_a_no_op(monkeypatch, tmp_path):
    timeline = load_timeline(monkeypatch, None)
    timeline.mark("trial_start", trial=0)
    assert not timeline.enabled()
    assert timeline.keras_callbacks() == []
    assert list(tmp_path.iterdir()) == []
