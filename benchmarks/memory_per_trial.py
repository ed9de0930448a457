"""Resident memory per trial: trials in one process vs tunelab's recycled worker processes.

TensorFlow keeps memory from every model built in a process, even after
``keras.backend.clear_session()``. tunelab runs trials in worker processes recycled every
``trials_per_process`` trials. This benchmark runs the same study both ways, side by side,
and prints the memory of the process that ran each trial and the ratio trial N / trial 3.

    python benchmarks/memory_per_trial.py            # 30 trials each way (~4 minutes)
    python benchmarks/memory_per_trial.py --quick    # 4 trials each way (smoke test)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def study(tmp: Path, name: str, n_trials: int, per_process: int) -> dict:
    return {
        "study_name": name, "model": "lenet",
        "dataset": {"source": "digits", "image_size": 16},
        "space": {"n_base": [8, 16, 32], "dense_units": [32, 64],
                  "learning_rate": {"low": 1e-3, "high": 1e-2, "log": True},
                  "batch_size": 64},
        "n_trials": n_trials, "max_epochs": 2, "pruner": {"kind": "none"},
        # every trial a searched one: the default's confirmation runs would take the last
        # six of n_trials and run in the tune process
        "selection": {"method": "best_validation"},
        "trials_per_process": per_process,
        "storage": str(tmp / "optuna.journal"),
        "tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}",
    }


def rss_by_trial(study_obj) -> list[float]:
    trials = sorted(study_obj.get_trials(deepcopy=False), key=lambda t: t.number)
    return [t.user_attrs.get("summary", {}).get("process_rss_mb", float("nan")) for t in trials]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="4 trials each way, workers recycled every 2")
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--per-process", type=int, default=None,
                        help="trials per worker process (default: the config default)")
    args = parser.parse_args()
    n = 4 if args.quick else args.trials
    import tunelab
    from tunelab.config import StudyConfig

    per_process = args.per_process or StudyConfig().trials_per_process
    if args.quick:
        per_process = 2
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, in_process in (("one process", True), ("recycled workers", False)):
            start = time.time()
            s = tunelab.tune(study(Path(tmp), label.replace(" ", "-"), n, per_process),
                             in_process=in_process)
            results[label] = (rss_by_trial(s), time.time() - start)
    print(f"\nresident memory (MB) of the process that ran each trial; {n} trials, "
          f"workers recycled every {per_process}")
    print(f"{'trial':>5}  {'one process':>12}  {'recycled workers':>16}")
    one, recycled = results["one process"][0], results["recycled workers"][0]
    for i, (a, b) in enumerate(zip(one, recycled, strict=True), start=1):
        print(f"{i:>5}  {a:>12.0f}  {b:>16.0f}")
    k = 3 if n >= 3 else 1
    for label, (rss, seconds) in results.items():
        print(f"{label:>16}: trial {n} / trial {k} memory = {rss[n - 1] / rss[k - 1]:.3f}, "
              f"wall {seconds:.0f} s")
    print(f"wall-time ratio recycled / one process = "
          f"{results['recycled workers'][1] / results['one process'][1]:.2f}")


if __name__ == "__main__":
    main()
