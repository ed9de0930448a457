"""Start-up to the first epoch against the TensorFlow import, side by side (issue #21 point 2:
at most the import plus 1 s).

Each repeat runs, in fresh processes and in rotating order:

* ``import tensorflow``: a bare interpreter importing TensorFlow (which imports Keras and,
  through Keras, scikit-learn and pandas when installed), timed from the process's start
  (the kernel's start time) to the end of the import;
* ``tunelab tune``: the default study (digits, LeNet) cut to 1 trial of 1 epoch, in a
  fresh store folder, from the command's start to the first epoch's begin (timeline marks,
  models/timeline.py);
* the same import with ``sklearn`` and ``pandas`` made unimportable, as tunelab's worker
  imports Keras (without its optional scikit-learn wrappers and DataFrame adapter);
* a hand-written script: import Keras and Optuna, build the same data as arrays, ask one
  trial, build, compile and fit LeNet-like layers: command to its first epoch's begin (the
  floor any tool on top of Keras pays).

The dataset cache (``~/.cache/tunelab/datasets``, where digits are decoded) is warm for
every repeat but the first, as for any user's second study; the MLflow store is new each
time (so its creation is counted, by the ``tune`` process, beside the worker's imports).

    python benchmarks/startup.py            # 5 repeats
    python benchmarks/startup.py --quick    # 1 repeat
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil

BARE = textwrap.dedent("""
    import time, psutil, os
    born = psutil.Process(os.getpid()).create_time()
    import tensorflow
    import sys
    print(time.time() - born, len(sys.modules))
""")

# the same import with Keras' optional scikit-learn and pandas hooks off, as tunelab's worker
# imports it (models/__init__.py): the fair floor for what tunelab adds on top
LEAN = BARE.replace("import tensorflow", "import sys\nsys.modules['sklearn'] = "
                    "sys.modules['pandas'] = None\nimport tensorflow")

HAND = textwrap.dedent("""
    import time, psutil, os
    born = psutil.Process(os.getpid()).create_time()
    import numpy as np, optuna, keras
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.images / 16.0).astype("float32")[..., None]
    y = keras.utils.to_categorical(d.target, 10)
    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    lr = trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.Adam(lr), "categorical_crossentropy", metrics=["accuracy"])
    class First(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 0:
                print(time.time() - born, flush=True)
    model.fit(x[:1400], y[:1400], validation_data=(x[1400:], y[1400:]), epochs=1, verbose=0,
              callbacks=[First()])
""")


def bare_import(env, code: str = BARE) -> tuple[float, int]:
    """Seconds from the process's start to the import's end, and the modules then loaded."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=300, check=True)
    seconds, modules = out.stdout.split()[-2:]
    return float(seconds), int(modules)


def hand_written(env) -> float:
    out = subprocess.run([sys.executable, "-c", HAND], capture_output=True, text=True,
                         env=env, timeout=300, check=True)
    return float(out.stdout.split()[0])


def tunelab_first_epoch(env, folder: Path) -> tuple[float, dict[str, float]]:
    timeline = folder / "timeline.jsonl"
    (folder / "study.yaml").write_text("n_trials: 1\nmax_epochs: 1\n"
                                       "selection: {method: best_validation}\n")
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "tunelab", "tune", "study.yaml"], cwd=folder,
                          env={**env, "TUNELAB_TIMELINE": str(timeline)}, capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(proc.stdout[-2000:] + proc.stderr[-2000:])
    events = [json.loads(line) for line in timeline.read_text().splitlines()]
    t0 = min(e["t"] for e in events if e["event"] == "process_start")
    first: dict[str, float] = {}
    for e in sorted(events, key=lambda e: e["t"]):
        first.setdefault(e["event"], e["t"] - t0)
    assert abs(t0 - start) < 1.0, "the timeline's first process is not the command"
    return first["epoch_begin"], first


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    rows = {"import tensorflow": [], "tunelab tune": [], "hand-written": [],
            "import, lean": []}
    marks: list[dict[str, float]] = []
    modules: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="tunelab-startup-") as tmp:
        for rep in range(repeats):
            order = list(rows)
            order = order[rep % 4:] + order[:rep % 4]
            for name in order:
                if name in ("import tensorflow", "import, lean"):
                    seconds, modules[name] = bare_import(
                        env, BARE if name == "import tensorflow" else LEAN)
                    rows[name].append(seconds)
                elif name == "hand-written":
                    rows[name].append(hand_written(env))
                else:
                    folder = Path(tmp) / f"r{rep}"
                    folder.mkdir()
                    seconds, first = tunelab_first_epoch(env, folder)
                    rows[name].append(seconds)
                    marks.append(first)
            print(f"repeat {rep}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in rows.items()),
                  flush=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}; {repeats} repeat(s)")
    for name, values in rows.items():
        print(f"{name:<18} median {med[name]:.2f} s [{min(values):.2f}, {max(values):.2f}]")
    # the deterministic side of the lean claim: what each import loads, not how long it took
    print(f"modules loaded: import tensorflow {modules['import tensorflow']}, "
          f"import, lean {modules['import, lean']}")
    diffs = [t - i for t, i in zip(rows["tunelab tune"], rows["import tensorflow"],
                                   strict=True)]
    print(f"tunelab first epoch minus the TensorFlow import: median "
          f"{statistics.median(diffs):.2f} s [{min(diffs):.2f}, {max(diffs):.2f}] "
          "(target <= 1.0)")
    lean = [t - i for t, i in zip(rows["tunelab tune"], rows["import, lean"], strict=True)]
    print(f"tunelab first epoch minus the same import without Keras' scikit-learn and pandas "
          f"hooks: median {statistics.median(lean):.2f} s [{min(lean):.2f}, {max(lean):.2f}]")
    hand = [t - h for t, h in zip(rows["tunelab tune"], rows["hand-written"], strict=True)]
    print(f"tunelab first epoch minus the hand-written script's: median "
          f"{statistics.median(hand):.2f} s [{min(hand):.2f}, {max(hand):.2f}]")
    keys = ("standby_spawned", "standby_start", "standby_ready", "standby_launched",
            "data_loaded", "trial_ask", "model_built", "epoch_begin")
    print("tunelab's marks (median seconds from the command): " + ", ".join(
        f"{k} {statistics.median(m[k] for m in marks):.2f}" for k in keys
        if all(k in m for m in marks)))
    if psutil.cpu_count() and psutil.cpu_count() < 2:
        print("note: one CPU: the worker's imports and tune's own start-up cannot overlap")


if __name__ == "__main__":
    main()
