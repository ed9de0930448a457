"""Search efficiency: tunelab against KerasTuner and random search, side by side.

Every method searches the same space with the same model builder (tunelab.models.build_model)
and the same training code (tunelab.models.training.train), on the same data, under the same
wall-clock budget per run; the analysis then also cuts every run at the same total number of
epochs actually trained (the smallest total any method reached for that dataset and seed).
Methods run one after another in an order rotated per (dataset, seed), so load from other
processes on a shared machine spreads over all of them.

Methods (tracking is on for tunelab only; tracking_overhead.py measures what it costs):
    tunelab           TPE (multivariate, 5 start-up trials) + median pruner, MLflow tracking on
    kt-hyperband      KerasTuner Hyperband (factor 3), continuing promoted trials
    kt-random         KerasTuner RandomSearch
    optuna-random     Optuna random sampler, no pruning
  ablations (tracking off):
    tpe-none          TPE without a pruner
    tpe-median        TPE + median pruner (tunelab's default without tracking)
    tpe-sha           TPE + successive halving pruner
    tpe-hyperband     TPE + Optuna's Hyperband pruner (TPE sees only its bracket's trials)
    random-hyperband  random sampler + Optuna's Hyperband pruner

A hold-out (20% of the training split, stratified) is carved before any search and used by no
method: each method's selected trial (best validation value) is scored on it. Epochs are
counted as trained (a pruned trial counts the epochs it ran; a KerasTuner Hyperband trial that
continues a promoted one counts only its new epochs). Time inside ``fit`` is measured by
wrapping ``keras.Model.fit``; hold-out scoring is excluded from every clock.

    python benchmarks/search_efficiency.py                # full: 3 datasets x 3 seeds x 9
                                                          #   methods x 75 s (~1 h 50 min)
    python benchmarks/search_efficiency.py --quick        # smoke test: digits, 1 seed, 2 trials
    python benchmarks/search_efficiency.py --datasets digits breastmnist --seconds 20
    python benchmarks/search_efficiency.py --from-results OUT/results.json   # re-analyse

Writes results.json, summary.md and plots (best validation value against cumulative epochs
and wall time) to --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

REPO = Path(__file__).resolve().parents[1]
DATASETS = {"digits": "digits",
            "breastmnist": str(REPO.parent / "shared" / "data" / "breastmnist.npz"),
            "pneumoniamnist": str(REPO.parent / "shared" / "data" / "pneumoniamnist.npz")}
# the fixed validation-accuracy target whose time to reach is the search-speed headline
TARGETS = {"digits": 0.95, "breastmnist": 0.85, "pneumoniamnist": 0.93}
# name: (engine, sampler or KerasTuner kind, pruner, tracking)
METHODS = {
    "tunelab": ("optuna", "tpe", "median", True),
    "kt-hyperband": ("keras-tuner", "hyperband", None, False),
    "kt-random": ("keras-tuner", "random", None, False),
    "optuna-random": ("optuna", "random", "none", False),
    "tpe-none": ("optuna", "tpe", "none", False),
    "tpe-median": ("optuna", "tpe", "median", False),
    "tpe-sha": ("optuna", "tpe", "successive_halving", False),
    "tpe-hyperband": ("optuna", "tpe", "hyperband", False),
    "random-hyperband": ("optuna", "random", "hyperband", False),
}
MAIN = ("tunelab", "kt-hyperband", "kt-random", "optuna-random")

SPACE = {
    "learning_rate": {"low": 1.0e-4, "high": 1.0e-2, "log": True},
    "batch_size": [32, 64, 128],
    "n_base": [4, 8, 16],
    "dense_units": [16, 32, 64],
    "dropout": {"low": 0.0, "high": 0.5},
    "optimizer": ["adam", "sgd", "rmsprop"],
}


# -- measuring ------------------------------------------------------------------------------
class FitClock:
    """Seconds spent inside ``keras.Model.fit`` (wraps it once per process)."""

    seconds = 0.0

    @classmethod
    def install(cls) -> None:
        import keras

        if getattr(keras.Model.fit, "_timed", False):
            return
        original = keras.Model.fit

        def fit(self, *args, **kwargs):
            start = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                cls.seconds += time.perf_counter() - start

        fit._timed = True
        keras.Model.fit = fit


class HoldoutProbe:
    """Stands in for the checkpoint store: both engines hand it every completed trial's
    model; it scores the model on the hold-out and keeps only the score. Its own time is
    recorded so it can be taken off the method's clock."""

    def __init__(self, holdout, n_classes: int):
        self.holdout, self.n_classes = holdout, n_classes
        self.scores: dict[int, float] = {}
        self.pauses: list[tuple[float, float]] = []  # (finished at, seconds)

    def save(self, study, record, model, meta):
        from tunelab.models import Head
        from tunelab.models.training import predict_proba

        start = time.time()
        head = Head(meta["loss"], self.n_classes)
        pred = predict_proba(model, head, self.holdout.x).argmax(axis=1)
        self.scores[record.number] = float((pred == self.holdout.y).mean())
        self.pauses.append((time.time(), time.time() - start))
        return None

    def paused_before(self, t: float) -> float:
        return sum(d for end, d in self.pauses if end <= t)


# -- one run --------------------------------------------------------------------------------
def load(name: str, image_size: int | None):
    from tunelab.models.data import Split, load_dataset, stratified_holdout

    data = load_dataset(DATASETS[name], image_size=image_size, validation_fraction=0.2, seed=0,
                        progress=False)
    keep, hold = stratified_holdout(data.train.y, 0.2, seed=1234, what="hold-out")
    train = data.train.take(keep)
    searched = dataclasses.replace(data, train=Split(train.x, train.y), test=None, info={})
    return searched, data.train.take(hold)


def config_for(method: str, seed: int, tmp: Path, *, seconds: float, n_trials: int | None,
               max_epochs: int, image_size: int | None, source: str):
    from tunelab.config import config_from_dict

    engine, kind, pruner, tracking = METHODS[method]
    raw = {
        "study_name": f"{method}-s{seed}", "model": "lenet",
        "dataset": {"source": source, "image_size": image_size, "cv_folds": 1},
        "space": SPACE, "n_trials": n_trials, "timeout": seconds, "max_epochs": max_epochs,
        "early_stopping": {"patience": 3}, "seed": seed, "tracking": tracking,
        # pinned: on an .npz the keys left out would take the lab defaults (config.py)
        "objective": {"metric": "val_accuracy"},
        # search speed only: the whole budget searches (no confirmation runs after it; the
        # selection benchmark compares how picks generalize)
        "selection": {"method": "best_validation"},
        "storage": str(tmp / method / "optuna.journal"),
        "tracking_uri": f"sqlite:///{tmp / method / 'mlflow.db'}",
        "checkpoints": {"keep_top": 0}, "engine": engine,
    }
    if engine == "optuna":
        raw["sampler"] = {"kind": kind}
        raw["pruner"] = {"kind": pruner, "n_startup_trials": 3, "n_warmup_steps": 2}
    else:
        raw["keras_tuner"] = {"kind": kind, "factor": 3,
                              "hyperband_iterations": 1 if n_trials else 1000,
                              "directory": str(tmp / method / "keras_tuner")}
    return config_from_dict(raw)


def run_method(method: str, data, holdout, seed: int, tmp: Path, *, seconds: float,
               n_trials: int | None, max_epochs: int, image_size: int | None,
               source: str) -> dict:
    from tunelab import wiring
    from tunelab.search import run_trials
    from tunelab.search.keras_tuner_engine import KerasTunerSettings, run_keras_tuner
    from tunelab.tracking import StudyTracker

    config = config_for(method, seed, tmp, seconds=seconds, n_trials=n_trials,
                        max_epochs=max_epochs, image_size=image_size, source=source)
    FitClock.install()
    fit_before = FitClock.seconds
    started = time.time()
    tracker = None
    if config.tracking:
        tracker = StudyTracker(config.resolved_tracking_uri, config.study_name)
        tracker.start_study(config=config.to_dict(), space=config.search_space.to_yaml(),
                            data_info={"fingerprint": data.fingerprint()})
    study = wiring.open_study(config, create=True)
    objective = wiring.make_objective(config, data, tracker, n_trials, started)
    objective.progress = None
    probe = HoldoutProbe(holdout, data.n_classes)
    objective.checkpoints = probe
    deadline = started + seconds
    if config.engine == "optuna":
        run_trials(study, objective, n_trials=n_trials, deadline=deadline)
    else:
        kt = config.keras_tuner
        run_keras_tuner(study, objective, KerasTunerSettings(
            kind=kt.kind, max_epochs=max_epochs, factor=kt.factor,
            hyperband_iterations=kt.hyperband_iterations, directory=kt.directory,
            overwrite=True), deadline=deadline)
    if tracker is not None:
        tracker.flush()
        tracker.parent.end("FINISHED")
    ended = time.time()
    wall = ended - started - probe.paused_before(ended)
    fit = FitClock.seconds - fit_before
    trials = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.datetime_complete
                    or t.datetime_start):
        if t.datetime_complete is None:
            continue
        end = t.datetime_complete.timestamp()
        trials.append({"number": t.number, "state": t.state.name,
                       "value": t.value if t.state.name == "COMPLETE" else None,
                       "epochs": len(t.user_attrs.get("history", {}).get("loss", [])),
                       "t": end - started - probe.paused_before(end),
                       "holdout": probe.scores.get(t.number)})
    cum = 0
    for tr in trials:
        cum += tr["epochs"]
        tr["cum_epochs"] = cum
    return {"method": method, "seed": seed, "wall": wall, "fit": fit, "trials": trials,
            "budget_s": seconds}


# -- analysis -------------------------------------------------------------------------------
def best_at(run: dict, *, t: float | None = None, epochs: float | None = None) -> dict:
    """The selected trial (best validation value) among trials finished within a budget."""
    best = None
    for tr in run["trials"]:
        if (t is not None and tr["t"] > t) or (epochs is not None and tr["cum_epochs"] > epochs):
            break
        if tr["value"] is not None and (best is None or tr["value"] > best["value"]):
            best = tr
    return best or {"value": float("nan"), "holdout": float("nan")}


def time_to_reach(run: dict, target: float) -> float:
    for tr in run["trials"]:
        if tr["value"] is not None and tr["value"] >= target - 1e-12:
            return tr["t"]
    return math.inf


def rank_of(scores: dict[str, float]) -> dict[str, float]:
    """1 for the highest score; ties share their mean rank; a method with no score is last."""
    def key(m):
        v = scores[m]
        return -math.inf if v is None or math.isnan(v) else v

    ordered = sorted(scores, key=key, reverse=True)
    ranks, i = {}, 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and key(ordered[j + 1]) == key(ordered[i]):
            j += 1
        for m in ordered[i:j + 1]:
            ranks[m] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def med_spread(values: list[float], digits: int = 3) -> str:
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return "n/a"
    inf = sum(math.isinf(v) for v in vals)
    finite = sorted(v for v in vals if not math.isinf(v))
    if not finite:
        return f"not reached ({inf}/{len(vals)})"
    median = statistics.median(vals) if not inf else statistics.median(
        finite + [math.inf] * inf)
    text = f"{median:.{digits}f} [{finite[0]:.{digits}f}, {finite[-1]:.{digits}f}]"
    return text + (f", not reached in {inf}/{len(vals)}" if inf else "")


def analyse(runs: list[dict]) -> tuple[str, dict]:
    groups: dict[tuple[str, int], dict[str, dict]] = {}
    for r in runs:
        groups.setdefault((r["dataset"], r["seed"]), {})[r["method"]] = r
    rows: dict[str, dict[str, list[float]]] = {}
    headline: dict[str, list[float]] = {"time_ratio": [], "holdout_diff_time": [],
                                        "holdout_diff_epochs": []}
    ranks: dict[str, dict[str, list[float]]] = {}
    for (_ds, _seed), by_method in groups.items():
        for key, field in (("val", "value"), ("hold", "holdout")):
            scores = {m: best_at(r, t=r["budget_s"])[field] for m, r in by_method.items()}
            for m, rank in rank_of(scores).items():
                ranks.setdefault(m, {"val": [], "hold": []})[key].append(rank)
        epoch_budget = min(r["trials"][-1]["cum_epochs"] if r["trials"] else 0
                           for r in by_method.values())
        for m, r in by_method.items():
            row = rows.setdefault(m, {k: [] for k in (
                "val_t", "hold_t", "val_e", "hold_e", "trials", "epochs", "overhead",
                "to_target", "trials_pm", "epochs_pm")})
            bt, be = best_at(r, t=r["budget_s"]), best_at(r, epochs=epoch_budget)
            row["val_t"].append(bt["value"])
            row["hold_t"].append(bt["holdout"] if bt["holdout"] is not None else math.nan)
            row["val_e"].append(be["value"])
            row["hold_e"].append(be["holdout"] if be["holdout"] is not None else math.nan)
            done = [tr for tr in r["trials"] if tr["t"] <= r["budget_s"]]
            row["trials"].append(float(sum(tr["state"] == "COMPLETE" for tr in done)))
            row["epochs"].append(float(done[-1]["cum_epochs"] if done else 0))
            row["overhead"].append((r["wall"] - r["fit"]) / r["fit"] if r["fit"] else math.nan)
            row["to_target"].append(time_to_reach(r, TARGETS.get(_ds, 0.9)))
            row["trials_pm"].append(60 * len(done) / r["budget_s"])
            row["epochs_pm"].append(60 * row["epochs"][-1] / r["budget_s"])
        if "tunelab" in by_method and "kt-hyperband" in by_method:
            tl, kt = by_method["tunelab"], by_method["kt-hyperband"]
            kt_best = best_at(kt, t=kt["budget_s"])
            if not math.isnan(kt_best["value"]):
                t_kt = time_to_reach(kt, kt_best["value"])
                headline["time_ratio"].append(time_to_reach(tl, kt_best["value"]) / t_kt)
            for key, kw in (("holdout_diff_time", {"t": tl["budget_s"]}),
                            ("holdout_diff_epochs", {"epochs": epoch_budget})):
                a, b = best_at(tl, **kw)["holdout"], best_at(kt, **kw)["holdout"]
                if a is not None and b is not None:
                    headline[key].append(a - b)
    lines = ["| method | best val (time budget) | hold-out (time budget) | best val (epoch "
             "budget) | hold-out (epoch budget) | trials completed | epochs trained | "
             "s to the target | trials / min | epochs / min | "
             "orchestration overhead | mean rank, val / hold-out |", "|" + "---|" * 12]
    for m in [m for m in METHODS if m in rows]:
        row = rows[m]
        lines.append(f"| {m} | {med_spread(row['val_t'])} | {med_spread(row['hold_t'])} | "
                     f"{med_spread(row['val_e'])} | {med_spread(row['hold_e'])} | "
                     f"{med_spread(row['trials'], 0)} | {med_spread(row['epochs'], 0)} | "
                     f"{med_spread(row['to_target'], 1)} | {med_spread(row['trials_pm'], 1)} | "
                     f"{med_spread(row['epochs_pm'], 1)} | "
                     f"{med_spread(row['overhead'], 2)} | "
                     f"{statistics.mean(ranks[m]['val']):.1f} / "
                     f"{statistics.mean(ranks[m]['hold']):.1f} |")
    lines += ["", "median [min, max] over datasets x seeds; s to the target: seconds until a "
              "trial first reaches the fixed validation accuracy "
              + ", ".join(f"{k} {v:g}" for k, v in TARGETS.items())
              + " (trials and epochs / min: finished trials (any state) and epochs trained "
              "per minute of budget); epoch budget = the smallest total "
              "epochs any method trained for that dataset and seed; mean rank: each method's "
              "rank among all methods within a dataset and seed at the time budget (1 = best, "
              "ties share the mean rank), averaged", "",
              f"- time for tunelab to reach KerasTuner Hyperband's final best / KerasTuner's "
              f"time: {med_spread(headline['time_ratio'], 2)} (n={len(headline['time_ratio'])})",
              f"- hold-out accuracy, tunelab - KerasTuner Hyperband, time budget: "
              f"{med_spread(headline['holdout_diff_time'])}",
              f"- hold-out accuracy, tunelab - KerasTuner Hyperband, epoch budget: "
              f"{med_spread(headline['holdout_diff_epochs'])}",
              f"- orchestration overhead (wall - fit) / fit, tunelab: "
              f"{med_spread(rows.get('tunelab', {}).get('overhead', []), 2)}; KerasTuner "
              f"Hyperband: {med_spread(rows.get('kt-hyperband', {}).get('overhead', []), 2)}"]
    return "\n".join(lines), headline


def plot(runs: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")

    import matplotlib.pyplot as plt
    import numpy as np

    paths = []
    for ds in sorted({r["dataset"] for r in runs}):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, key, label in ((axes[0], "cum_epochs", "cumulative epochs trained"),
                               (axes[1], "t", "wall time (s)")):
            for m in METHODS:
                mine = [r for r in runs if r["dataset"] == ds and r["method"] == m]
                if not mine:
                    continue
                top = max((tr[key] for r in mine for tr in r["trials"]), default=1)
                grid = np.linspace(0, top, 100)
                curves = []
                for r in mine:
                    best, ys, i = -np.inf, [], 0
                    for g in grid:
                        while i < len(r["trials"]) and r["trials"][i][key] <= g:
                            v = r["trials"][i]["value"]
                            best = max(best, v) if v is not None else best
                            i += 1
                        ys.append(best if best > -np.inf else np.nan)
                    curves.append(ys)
                # drawn from where every seed has a finished trial, so the median of
                # running bests is monotone
                med = np.median(np.array(curves, dtype=float), axis=0)
                ax.plot(grid, med, label=m, lw=2 if m in MAIN else 1,
                        ls="-" if m in MAIN else "--")
            ax.set_xlabel(label)
            ax.set_ylabel("best val_accuracy (median over seeds)")
            ax.grid(alpha=0.3)
        axes[1].legend(fontsize=7)
        fig.suptitle(f"{ds}: best validation accuracy found")
        fig.tight_layout()
        path = out / f"search_efficiency_{ds}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


def run_child(argv: list[str] | None, ds: str, seed: int, method: str, out: Path) -> dict:
    """One run in a fresh interpreter (same flags), so no run pays for an earlier one's
    graphs, leaks and caches."""
    from fresh_process import run_in_fresh_process  # beside this script

    return run_in_fresh_process(__file__, argv, [ds, str(seed), method],
                                out / f"run-{ds}-{seed}-{method}.json")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: digits, 1 seed, tunelab and KerasTuner Hyperband, "
                             "2 trials of at most 2 epochs")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seconds", type=float, default=75.0, help="wall budget per run")
    parser.add_argument("--max-epochs", type=int, default=9)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" /
                                             "search_efficiency"))
    parser.add_argument("--from-results", metavar="RESULTS_JSON",
                        help="only analyse and plot the runs of an earlier results.json")
    parser.add_argument("--in-one-process", action="store_true",
                        help="every run in this process (default: each in a fresh one; in "
                             "one process the time outside fit grew from 0.6 s to 6 s a trial "
                             "over 81 runs)")
    parser.add_argument("--child", nargs=3, metavar=("DATASET", "SEED", "METHOD"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.from_results:
        saved = json.loads(Path(args.from_results).read_text())
        report(saved["runs"], saved["settings"], Path(args.out))
        return
    n_trials = None
    if args.quick:
        args.datasets, args.seeds, args.methods = ["digits"], [0], ["tunelab", "kt-hyperband"]
        args.max_epochs, n_trials, args.seconds = 2, 2, 60.0
    missing = [d for d in args.datasets if d != "digits" and not Path(DATASETS[d]).exists()]
    if missing:
        sys.exit(f"missing datasets: {', '.join(DATASETS[d] for d in missing)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if args.child:  # one run in this fresh process; the parent reads its JSON
        ds, seed, method = args.child[0], int(args.child[1]), args.child[2]
        data, holdout = load(ds, None)
        with tempfile.TemporaryDirectory(prefix="tunelab-bench-") as tmp:
            r = run_method(method, data, holdout, seed, Path(tmp), seconds=args.seconds,
                           n_trials=n_trials, max_epochs=args.max_epochs, image_size=None,
                           source=DATASETS[ds])
        r["dataset"] = ds
        (out / f"run-{ds}-{seed}-{method}.json").write_text(json.dumps(r))
        return
    runs = []
    with tempfile.TemporaryDirectory(prefix="tunelab-bench-") as tmp:
        for seed in args.seeds:
            for d_index, ds in enumerate(args.datasets):
                data = holdout = None
                shift = (seed + d_index) % len(args.methods)  # rotate the order
                order = args.methods[shift:] + args.methods[:shift]
                for method in order:
                    if args.in_one_process:
                        if data is None:
                            data, holdout = load(ds, None)
                        r = run_method(method, data, holdout, seed, Path(tmp) / f"{ds}-{seed}",
                                       seconds=args.seconds, n_trials=n_trials,
                                       max_epochs=args.max_epochs, image_size=None,
                                       source=DATASETS[ds])
                        r["dataset"] = ds
                    else:
                        r = run_child(argv, ds, seed, method, out)
                    runs.append(r)
                    done = [t for t in r["trials"] if t["value"] is not None]
                    best = max((t["value"] for t in done), default=float("nan"))
                    print(f"{ds:>14} seed {seed} {method:>16}: {len(done):3d} complete, "
                          f"{r['trials'][-1]['cum_epochs'] if r['trials'] else 0:4d} epochs, "
                          f"best val {best:.4f}, wall {r['wall']:.1f} s, fit {r['fit']:.1f} s",
                          flush=True)
    settings = (f"budget {args.seconds:.0f} s per run, max_epochs {args.max_epochs}, "
                f"n_trials {n_trials or 'unlimited'}, datasets {', '.join(args.datasets)}, "
                f"seeds {', '.join(map(str, args.seeds))}")
    (out / "results.json").write_text(json.dumps({"settings": settings, "runs": runs},
                                                 indent=1))
    report(runs, settings, out)


def report(runs: list[dict], settings: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    table, _ = analyse(runs)
    plots = plot(runs, out)
    (out / "summary.md").write_text(f"{settings}\n\n{table}\n")
    print(f"\n{settings}\n\n{table}\n\nplots: {', '.join(map(str, plots))}")


if __name__ == "__main__":
    main()
