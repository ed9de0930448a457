"""Tracking overhead: the same study with MLflow tracking on and off, side by side.

Each repeat runs the study twice through ``tunelab.tune`` (in process), once with
``tracking: true`` and once with ``tracking: false``, in alternating order, with the same seed;
no pruner, so both train the same number of epochs. It reports

* the wall-time ratio on / off per repeat (median and range; target <= 1.05),
* the cost per trial of each kind of logging call (calls and milliseconds per trial, measured
  by wrapping tunelab's MLflow run methods during the tracked runs),
* the consistency check: MLflow trial runs in a terminal state / Optuna finished trials
  (must be 1.0), over every tracked study, plus one study with the median pruner so pruned
  trials are covered.

    python benchmarks/tracking_overhead.py          # breastmnist, 3 repeats x 10 trials x 5 ep.
    python benchmarks/tracking_overhead.py --quick    # digits 8x8, 1 repeat, 2 trials, 1 epoch
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

REPO = Path(__file__).resolve().parents[1]
BREAST = str(REPO.parent / "shared" / "data" / "breastmnist.npz")
TERMINAL = ("FINISHED", "FAILED", "KILLED")


class CallTimer:
    """Wraps methods of tunelab's MLflow run classes; counts calls and seconds per name."""

    def __init__(self):
        self.calls: dict[str, int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)
        self.active = False
        self._undo: list = []

    def wrap(self, cls, name: str, label: str) -> None:
        original = cls.__dict__[name]

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if not self.active:
                return original(*args, **kwargs)
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.calls[label] += 1
                self.seconds[label] += time.perf_counter() - start

        setattr(cls, name, timed)
        self._undo.append((cls, name, original))

    def install(self) -> None:
        from tunelab.tracking import runs

        for name in ("log_params", "log_metrics", "log_batch", "set_tags", "log_figure",
                     "log_text", "log_dict", "log_dir", "end"):
            self.wrap(runs._Run, name, name)
        self.wrap(runs.TrialRun, "finish", "finish (all of it: plots, summary, end)")
        self.wrap(runs.StudyTracker, "trial_run", "trial_run (find/create run, params, "
                  "config)")
        self.wrap(runs.StudyTracker, "start_study", "start_study (once per study)")
        self.wrap(runs.StudyTracker, "finish_study", "finish_study (once per study)")

    def uninstall(self) -> None:
        for cls, name, original in reversed(self._undo):
            setattr(cls, name, original)


def study(tmp: Path, name: str, *, tracking: bool, seed: int, n_trials: int, epochs: int,
          source: str, image_size: int | None, pruner: str = "none") -> dict:
    return {
        "study_name": name, "model": "lenet",
        "dataset": {"source": source, "image_size": image_size},
        "space": {"learning_rate": {"low": 1e-3, "high": 1e-2, "log": True},
                  "n_base": [4, 8], "dense_units": [16, 32], "batch_size": 64},
        "n_trials": n_trials, "max_epochs": epochs, "early_stopping": {"enabled": False},
        "pruner": {"kind": pruner, "n_startup_trials": 1, "n_warmup_steps": 0},
        "seed": seed, "tracking": tracking, "checkpoints": {"keep_top": 0},
        "storage": str(tmp / name / "optuna.journal"),
        "tracking_uri": f"sqlite:///{tmp / name / 'mlflow.db'}",
    }


def consistency(study_obj, raw: dict) -> tuple[int, int]:
    """(MLflow trial runs in a terminal state, Optuna finished trials)."""
    import optuna
    from mlflow import MlflowClient

    finished = len(study_obj.get_trials(deepcopy=False, states=(
        optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
        optuna.trial.TrialState.FAIL)))
    client = MlflowClient(tracking_uri=raw["tracking_uri"])
    exp = client.get_experiment_by_name(raw["study_name"])
    runs = client.search_runs([exp.experiment_id], "tags.`tunelab.role` = 'trial'",
                              max_results=5000)
    return sum(r.info.status in TERMINAL for r in runs), finished


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits 8x8, 1 repeat, 2 trials")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--dataset", default=BREAST, help="'digits' or a .npz")
    parser.add_argument("--image-size", type=int, default=None,
                        help="resize images (longer trials); default: native size")
    args = parser.parse_args(argv)
    source, image_size = args.dataset, args.image_size
    if args.quick:
        args.repeats, args.trials, args.epochs, source, image_size = 1, 2, 1, "digits", 8
    import logging

    import tunelab

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    timer = CallTimer()
    timer.install()
    walls: dict[bool, list[float]] = {True: [], False: []}
    ratios, checks, tracked_trials = [], [], 0
    try:
        with tempfile.TemporaryDirectory(prefix="tunelab-tracking-") as tmp:
            if not args.quick:  # untimed warm-up: imports and first tracing count for neither
                tunelab.tune(study(Path(tmp), "warmup", tracking=False, seed=99, n_trials=1,
                                   epochs=1, source=source, image_size=image_size),
                             in_process=True)
            for rep in range(args.repeats):
                order = (True, False) if rep % 2 == 0 else (False, True)
                pair = {}
                for tracking in order:
                    raw = study(Path(tmp), f"r{rep}-{'on' if tracking else 'off'}",
                                tracking=tracking, seed=rep, n_trials=args.trials,
                                epochs=args.epochs, source=source, image_size=image_size)
                    timer.active = tracking
                    start = time.perf_counter()
                    s = tunelab.tune(raw, in_process=True)
                    pair[tracking] = time.perf_counter() - start
                    timer.active = False
                    walls[tracking].append(pair[tracking])
                    if tracking:
                        checks.append(consistency(s, raw))
                        tracked_trials += len(s.trials)
                ratios.append(pair[True] / pair[False])
            if not args.quick:  # a tracked study with pruned trials, for the consistency check
                raw = study(Path(tmp), "pruned", tracking=True, seed=7,
                            n_trials=max(3, args.trials), epochs=max(2, args.epochs),
                            source=source, image_size=image_size, pruner="median")
                s = tunelab.tune(raw, in_process=True)
                checks.append(consistency(s, raw))
    finally:
        timer.uninstall()
    print(f"\ntracking on vs off: {args.repeats} repeat(s) x {args.trials} trials x "
          f"{args.epochs} epochs on {Path(source).stem} at {image_size or 'native'} px")
    for i, r in enumerate(ratios):
        print(f"  repeat {i}: on {walls[True][i]:.1f} s, off {walls[False][i]:.1f} s, "
              f"ratio {r:.3f}")
    print(f"wall-time ratio on / off: median {statistics.median(ratios):.3f} "
          f"[{min(ratios):.3f}, {max(ratios):.3f}] (target <= 1.05)")
    per_trial = [(on - off) / args.trials for on, off in zip(walls[True], walls[False],
                                                             strict=True)]
    untracked = statistics.median(walls[False]) / args.trials
    print(f"tracking cost per trial: median {statistics.median(per_trial):.2f} s on trials of "
          f"{untracked:.1f} s untracked; the ratio is <= 1.05 for trials longer than "
          f"{statistics.median(per_trial) / 0.05:.0f} s")
    print(f"\ncost per trial of each logging call ({tracked_trials} tracked trials)")
    print(f"{'call':<52} {'calls/trial':>11} {'ms/trial':>9} {'ms/call':>8}")
    for label in sorted(timer.seconds, key=lambda k: -timer.seconds[k]):
        n, sec = timer.calls[label], timer.seconds[label]
        print(f"{label:<52} {n / tracked_trials:>11.1f} {1000 * sec / tracked_trials:>9.1f} "
              f"{1000 * sec / n:>8.1f}")
    terminal = sum(a for a, _ in checks)
    finished = sum(b for _, b in checks)
    print(f"\nconsistency: MLflow trial runs in a terminal state / Optuna finished trials = "
          f"{terminal}/{finished} = {terminal / finished:.3f} (must be 1.0)")
    if terminal != finished:
        raise SystemExit("consistency check failed")


if __name__ == "__main__":
    main()
