"""What tracking's figures cost to save as PNG, and whether zlib's level is the lever.

The figures tracking logs on a study's path, drawn from a synthetic study of 10 complete
and 4 pruned trials (12 and 3 epochs, five searched parameters): each trial's learning
curves and confusion matrix (the tracking writer draws them while the next trial trains),
and the study figures (drawn at the study's end, where nothing else runs). Each figure is
drawn anew and saved once (its layout, rendering and encoding, as tracking saves it) as PNG
at PIL's default zlib level 6 (what tracking logs) or at level 1, the two levels' order
alternating each repeat; CPU seconds of this process, after one untimed round that
loads the fonts. Prints, per figure, both costs and sizes, and the totals' ratios.

    python benchmarks/figure_cost.py            # 5 repeats
    python benchmarks/figure_cost.py --quick    # 1 repeat
"""

from __future__ import annotations

import argparse
import io
import math
import random
import statistics
import time

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from tunelab.search import study_plots
from tunelab.tracking import plots

SPACE = {"learning_rate": FloatDistribution(1e-5, 1e-2, log=True),
         "batch_size": CategoricalDistribution([16, 32, 64]),
         "n_base": IntDistribution(4, 16), "dropout": FloatDistribution(0.0, 0.5),
         "optimizer": CategoricalDistribution(["adam", "sgd"])}


def synthetic_study(n_complete: int = 10, n_pruned: int = 4) -> optuna.Study:
    study = optuna.create_study(direction="maximize", study_name="figure-cost")
    study.set_user_attr("config", {"objective": {"metric": "val_accuracy", "kind": "metric",
                                                 "gap_tolerance": 0.05},
                                   "max_epochs": 15, "dataset": {"cv_folds": 1}})
    rng = random.Random(0)
    for number in range(n_complete + n_pruned):
        params = {n: d.choices[number % len(d.choices)] if isinstance(d, CategoricalDistribution)
                  else d.low + number % (d.high - d.low + 1) if isinstance(d, IntDistribution)
                  else 10 ** rng.uniform(math.log10(d.low), math.log10(d.high)) if d.log
                  else rng.uniform(d.low, d.high) for n, d in SPACE.items()}
        complete = number < n_complete
        epochs = 12 if complete else 3
        val = [0.5 + 0.4 * (1 - math.exp(-e / 3)) + 0.01 * rng.random() for e in range(epochs)]
        train = [v + 0.002 * e * (number % 4) for e, v in enumerate(val)]
        best = max(range(epochs), key=lambda e: val[e])
        study.add_trial(create_trial(
            state=TrialState.COMPLETE if complete else TrialState.PRUNED, params=params,
            distributions=SPACE, value=max(val) if complete else None,
            intermediate_values=dict(enumerate(val)),
            user_attrs={"history": {"accuracy": train, "val_accuracy": val,
                                    "loss": [1.5 - v for v in train],
                                    "val_loss": [1.5 - v for v in val]},
                        "summary": {"best_epoch": best + 1, "epochs_trained": epochs,
                                    "gap_accuracy": train[best] - val[best]}}))
    return study


def trial_figures() -> dict[str, tuple[object, int]]:
    rng = np.random.default_rng(0)
    history = {k: list(rng.uniform(0.3, 0.9, 20)) for k in
               ("loss", "val_loss", "accuracy", "val_accuracy")}
    y = rng.integers(0, 2, 78)
    return {"trial: learning curves": (plots.learning_curves(history, "trial 3", 12),
                                       plots.TRIAL_DPI),
            "trial: confusion matrix": (plots.confusion_matrix(y, rng.integers(0, 2, 78),
                                                               ["benign", "malignant"]), 110)}


def encode(fig, dpi: int, level: int) -> tuple[float, int]:
    buffer = io.BytesIO()
    start = time.process_time()
    fig.savefig(buffer, format="png", dpi=dpi, pil_kwargs={"compress_level": level})
    return time.process_time() - start, len(buffer.getvalue())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repeat")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    study = synthetic_study()

    def fresh() -> dict[str, tuple[object, int]]:  # each figure drawn anew, as tracking does
        figures, _ = study_plots.study_figures(study)
        return {**{f"study: {n}": (f, study_plots.LOGGED_DPI) for n, f in figures.items()},
                **trial_figures()}

    names = list(fresh())
    seconds = {(name, level): [] for name in names for level in (6, 1)}
    sizes: dict[tuple[str, int], int] = {}
    for fig, dpi in fresh().values():  # the process's first saves load fonts: untimed
        encode(fig, dpi, 6)
    for rep in range(repeats):
        for level in ((6, 1) if rep % 2 == 0 else (1, 6)):
            for name, (fig, dpi) in fresh().items():  # its first save: layout and render
                cpu, size = encode(fig, dpi, level)
                seconds[name, level].append(cpu)
                sizes[name, level] = size
            study_plots.close_all()
    med = {key: statistics.median(v) for key, v in seconds.items()}
    print(f"{repeats} repeat(s); CPU ms per save (median), PNG KiB")
    print(f"{'figure':<34} {'level 6':>8} {'level 1':>8} {'KiB 6':>7} {'KiB 1':>7}")
    for name in names:
        print(f"{name:<34} {1e3 * med[name, 6]:8.0f} {1e3 * med[name, 1]:8.0f} "
              f"{sizes[name, 6] / 1024:7.0f} {sizes[name, 1] / 1024:7.0f}")
    for group in ("study", "trial"):
        group_names = [n for n in names if n.startswith(group)]
        six, one = (sum(med[n, lv] for n in group_names) for lv in (6, 1))
        size6, size1 = (sum(sizes[n, lv] for n in group_names) for lv in (6, 1))
        print(f"{group} figures: level 1 / level 6 CPU = {one / six:.3f} "
              f"({1e3 * one:.0f} against {1e3 * six:.0f} ms); size {size1 / size6:.3f}")
    study_plots.close_all()


if __name__ == "__main__":
    main()
