"""Tracking overhead: the same study with MLflow tracking on and off, side by side.

Each repeat runs the study twice through ``tunelab.tune``, once with ``tracking: true`` and
once with ``tracking: false``, in alternating order, with the same seed; no pruner, so both
train the same number of epochs. Each timed study is the second study of a fresh process,
after a 1-trial warm-up with the same tracking setting (``--in-process``: all in this one,
the earlier method, where every study is slower than the one before it as TensorFlow's state
grows, so the second of a pair is penalized by about 1 s); the warm-up's extra cost when
tracked (the MLflow import and the writer's start in a new process) is reported apart. All
studies share one MLflow store, as a lab's studies share ``mlruns/mlflow.db``; creating it
is timed once, apart. It reports

* the wall-time ratio on / off per repeat (median and range; target <= 1.03, issue #21), and what
  tracking adds split into the study end (study plots, parent run) and each trial,
* the time the training process itself spends on tracking (trial runs' MLflow calls are
  handed to a writer process, tracking/writer.py), and the cost of each kind of MLflow call
  as the writer runs it, timed in one more study that logs in process,
* the consistency check: MLflow trial runs in a terminal state / Optuna finished trials
  (must be 1.0), over every tracked study, plus one study with the median pruner so pruned
  trials are covered.

    python benchmarks/tracking_overhead.py          # breastmnist, 5 repeats x 10 trials x 5 ep.
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
STUDY_END = "study end (study plots, parent run, waiting for the writer; once per study)"


class CallTimer:
    """Wraps methods of tunelab's MLflow run classes; counts calls and seconds per name."""

    def __init__(self):
        self.calls: dict[str, int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)
        self.active = False
        self._undo: list = []

    def wrap(self, cls, name: str, label: str) -> None:
        original = vars(cls)[name]

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

    def install_handoffs(self) -> None:
        """What the training process itself spends on tracking (the timed studies); its trial
        runs are created and written by the writer process (tracking/remote.py)."""
        from tunelab import tuning
        from tunelab.tracking import remote, runs

        self.wrap(runs.StudyTracker, "start_study", "start_study (once per study)")
        self.wrap(remote.RemoteTracker, "trial_run", "trial_run (hand-off to the writer)")
        self.wrap(remote.RemoteTrialRun, "epoch_ended", "epoch_ended (hand-off to the writer)")
        self.wrap(remote.RemoteTrialRun, "finish", "finish (hand-off to the writer)")
        self.wrap(tuning, "finish_tracking", STUDY_END)

    def install_calls(self) -> None:
        """Each MLflow call, as the writer process runs it (the profiling study)."""
        from tunelab.tracking import runs

        for name in ("log_params", "log_metrics", "log_batch", "set_tags", "log_figure",
                     "log_text", "log_dict", "log_dir", "end"):
            self.wrap(runs._Run, name, name)
        self.wrap(runs.TrialRun, "_finish", "finish (final batch, figures, summary, run end)")
        self.wrap(runs.StudyTracker, "trial_run", "trial_run (find or create the run)")


    def table(self, trials: int) -> list[str]:
        lines = [f"{'call':<72} {'calls/trial':>11} {'ms/trial':>9} {'ms/call':>8}"]
        for label in sorted(self.seconds, key=lambda k: -self.seconds[k]):
            n, sec = self.calls[label], self.seconds[label]
            lines.append(f"{label:<72} {n / trials:>11.1f} {1000 * sec / trials:>9.1f} "
                         f"{1000 * sec / n:>8.1f}")
        return lines

    def uninstall(self) -> None:
        for cls, name, original in reversed(self._undo):
            setattr(cls, name, original)


class InlineWriter:
    """A writer that runs each call at once, in this process (the profiling study)."""

    def submit(self, call, *args, **kwargs) -> None:
        call(*args, **kwargs)

    def call(self, call, *args, **kwargs):
        from concurrent.futures import Future

        future = Future()
        future.set_result(call(*args, **kwargs))
        return future

    def start(self) -> None:
        pass

    flush = detach = close = start


def study(tmp: Path, name: str, *, tracking: bool, seed: int, n_trials: int, epochs: int,
          source: str, image_size: int | None, pruner: str = "none") -> dict:
    """Every study logs to one store, as a lab's studies share mlruns/mlflow.db."""
    return {
        "study_name": name, "model": "lenet",
        "dataset": {"source": source, "image_size": image_size, "cv_folds": 1},
        "space": {"learning_rate": {"low": 1e-3, "high": 1e-2, "log": True},
                  "n_base": [4, 8], "dense_units": [16, 32], "batch_size": 64},
        "n_trials": n_trials, "max_epochs": epochs, "early_stopping": {"enabled": False},
        "pruner": {"kind": pruner, "n_startup_trials": 1, "n_warmup_steps": 0},
        # pinned: on an .npz the keys left out would take the lab defaults (config.py)
        "objective": {"metric": "val_accuracy"},
        # the measured study: plain trials, no confirmation runs after the search
        "selection": {"method": "best_validation"},
        "seed": seed, "tracking": tracking, "checkpoints": {"keep_top": 0},
        "storage": str(tmp / name / "optuna.journal"),
        "tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}",
    }


def load_study(raw: dict):
    import optuna

    from tunelab.search.study import open_storage

    return optuna.load_study(study_name=raw["study_name"], storage=open_storage(raw["storage"]))


def run_study(spec_path: Path) -> None:
    """``--run-study``: one study in this fresh process; its timings as JSON to ``out``."""
    import json
    import logging

    import tunelab
    from tunelab import tuning  # noqa: F401  imported before the clock starts

    spec = json.loads(spec_path.read_text())
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    # first an untimed-for-the-ratio warm-up study with the same tracking setting: the first
    # study of a process also pays for tracing and, tracked, the MLflow import and the
    # writer's start; its wall is reported apart
    start = time.perf_counter()
    tunelab.tune(spec["warmup"], in_process=True)
    warmup = time.perf_counter() - start
    handoffs = CallTimer()
    handoffs.install_handoffs()
    handoffs.active = spec["raw"]["tracking"]
    start = time.perf_counter()
    tunelab.tune(spec["raw"], in_process=True)
    wall = time.perf_counter() - start
    handoffs.active = False
    Path(spec["out"]).write_text(json.dumps({
        "wall": wall, "warmup": warmup, "study_end": handoffs.seconds.get(STUDY_END, 0.0),
        "calls": dict(handoffs.calls), "seconds": dict(handoffs.seconds)}))


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


def fresh_study(tmp: Path, name: str, tracking: bool, handoffs: CallTimer, **kw
                ) -> tuple[float, float, dict]:
    """One timed study in a fresh process (``--run-study``): (its ``tune`` wall, its study
    end, its config); the training process's hand-offs are added to ``handoffs``."""
    import json
    import subprocess
    import sys

    raw = study(tmp, name, tracking=tracking, **kw)
    warmup = study(tmp, f"{name}-warmup", tracking=tracking,
                   **{**kw, "seed": 99, "n_trials": 1, "epochs": 1})
    spec = tmp / f"{name}.json"
    out = tmp / f"{name}.out.json"
    spec.write_text(json.dumps({"raw": raw, "warmup": warmup, "out": str(out)}))
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--run-study",
                           str(spec)], capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    result = json.loads(out.read_text())
    for label, n in result["calls"].items():
        handoffs.calls[label] += n
        handoffs.seconds[label] += result["seconds"][label]
    WARMUPS[tracking].append(result["warmup"])
    return result["wall"], result["study_end"], raw


WARMUPS: dict[bool, list[float]] = {True: [], False: []}  # the fresh processes' first studies


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits 8x8, 1 repeat, 2 trials")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--dataset", default=BREAST, help="'digits' or a .npz")
    parser.add_argument("--image-size", type=int, default=None,
                        help="resize images (longer trials); default: native size")
    parser.add_argument("--in-process", action="store_true",
                        help="every timed study in this process (the earlier method)")
    parser.add_argument("--run-study", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_study:
        run_study(args.run_study)
        return
    source, image_size = args.dataset, args.image_size
    if args.quick:
        args.repeats, args.trials, args.epochs, source, image_size = 1, 2, 1, "digits", 8
    import logging

    import tunelab
    from tunelab.tracking import StudyTracker, remote, runs

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    handoffs, calls = CallTimer(), CallTimer()
    handoffs.install_handoffs()
    calls.install_calls()
    walls: dict[bool, list[float]] = {True: [], False: []}
    study_ends: list[float] = []
    ratios, checks, tracked_trials = [], [], 0
    try:
        with tempfile.TemporaryDirectory(prefix="tunelab-tracking-") as tmp:
            tmp = Path(tmp)
            # untimed warm-up: imports, first tracing and creating the store (once per
            # store, timed apart) count for neither
            store_seconds = time.perf_counter()
            StudyTracker(f"sqlite:///{tmp / 'mlflow.db'}", "warmup", background=False)
            store_seconds = time.perf_counter() - store_seconds

            def run(name: str, tracking: bool, **kw):
                raw = study(tmp, name, tracking=tracking, source=source,
                            image_size=image_size, **kw)
                return tunelab.tune(raw, in_process=True), raw

            if not args.quick and args.in_process:
                run("warmup", True, seed=99, n_trials=1, epochs=1)
            for rep in range(args.repeats):
                pair = {}
                for tracking in ((True, False) if rep % 2 == 0 else (False, True)):
                    name = f"r{rep}-{'on' if tracking else 'off'}"
                    if args.in_process:
                        handoffs.active = tracking
                        before = handoffs.seconds[STUDY_END]
                        start = time.perf_counter()
                        s, raw = run(name, tracking, seed=rep, n_trials=args.trials,
                                     epochs=args.epochs)
                        pair[tracking] = time.perf_counter() - start
                        handoffs.active = False
                        end_seconds = handoffs.seconds[STUDY_END] - before
                    else:
                        pair[tracking], end_seconds, raw = fresh_study(
                            tmp, name, tracking, handoffs, seed=rep, n_trials=args.trials,
                            epochs=args.epochs, source=source, image_size=image_size)
                        s = load_study(raw)
                    walls[tracking].append(pair[tracking])
                    print(f"[{time.strftime('%H:%M:%S')}] {name}: {pair[tracking]:.2f} s",
                          flush=True)
                    if tracking:
                        study_ends.append(end_seconds)
                        checks.append(consistency(s, raw))
                        tracked_trials += len(s.trials)
                ratios.append(pair[True] / pair[False])
            # the profiling study logs in this process, so each call can be timed as the
            # writer runs it
            writer, worker_writer = runs.shared_writer, remote.shared_writer
            runs.shared_writer, remote.shared_writer = (lambda: None), InlineWriter
            calls.active = True
            try:
                s, raw = run("profile", True, seed=5, n_trials=args.trials, epochs=args.epochs)
            finally:
                calls.active = False
                runs.shared_writer, remote.shared_writer = writer, worker_writer
            profiled_trials = len(s.trials)
            if not args.quick:  # a tracked study with pruned trials, for the consistency check
                s, raw = run("pruned", True, seed=7, n_trials=max(3, args.trials),
                             epochs=max(2, args.epochs), pruner="median")
                checks.append(consistency(s, raw))
    finally:
        handoffs.uninstall()
        calls.uninstall()
    print(f"\ntracking on vs off: {args.repeats} repeat(s) x {args.trials} trials x "
          f"{args.epochs} epochs on {Path(source).stem} at {image_size or 'native'} px, "
          + ("every study in this process" if args.in_process
             else "each study in a fresh process"))
    for i, r in enumerate(ratios):
        print(f"  repeat {i}: on {walls[True][i]:.1f} s, off {walls[False][i]:.1f} s, "
              f"ratio {r:.3f}")
    print(f"wall-time ratio on / off: median {statistics.median(ratios):.3f} "
          f"[{min(ratios):.3f}, {max(ratios):.3f}] (target <= 1.03, issue #21)")
    extra = [on - off for on, off in zip(walls[True], walls[False], strict=True)]
    per_trial = [(x - end) / args.trials for x, end in zip(extra, study_ends, strict=True)]
    untracked = statistics.median(walls[False]) / args.trials
    print(f"what tracking adds: median {statistics.median(extra):.2f} s a study, of which the "
          f"study end (study plots, parent run) is {statistics.median(study_ends):.2f} s and "
          f"the trials {statistics.median(per_trial):.3f} s each (trials of {untracked:.1f} s "
          "untracked)")
    if WARMUPS[True] and WARMUPS[False]:
        print(f"a process's first study (1 trial x 1 epoch, not counted above): tracked "
              f"{statistics.median(WARMUPS[True]):.2f} s, untracked "
              f"{statistics.median(WARMUPS[False]):.2f} s (median): tracking adds "
              f"{statistics.median(WARMUPS[True]) - statistics.median(WARMUPS[False]):.2f} s "
              "there (the MLflow import and the writer's start in this process)")
    print(f"creating the MLflow store (once per store, not counted above): "
          f"{store_seconds:.1f} s")
    print(f"\ntime the training process spends on tracking ({tracked_trials} tracked trials, "
          "timed studies)")
    print("\n".join(handoffs.table(tracked_trials)))
    print(f"\ncost of each MLflow call as the writer process runs it ({profiled_trials} trials "
          "of a study logged in process)")
    print("\n".join(calls.table(profiled_trials)))
    terminal = sum(a for a, _ in checks)
    finished = sum(b for _, b in checks)
    print(f"\nconsistency: MLflow trial runs in a terminal state / Optuna finished trials = "
          f"{terminal}/{finished} = {terminal / finished:.3f} (must be 1.0)")
    if terminal != finished:
        raise SystemExit("consistency check failed")


if __name__ == "__main__":
    main()
