"""Orchestration: where a study's wall time goes, tunelab against a hand-glued loop and KerasTuner.

Each case runs in a fresh process, with a fresh store folder, and writes a timeline of events
(tunelab: ``TUNELAB_TIMELINE``, see models/timeline.py; the other two mark the same events
themselves). The timeline is cut into phases that add up to the wall time, command to exit:

    start-up          command -> the first trial starts (imports, data, study, parent run, spawn)
    sampling          trial start -> hyperparameters suggested
    build             suggested -> model built (clear_session, seed, build_model)
    trial set-up      built -> training starts (tunelab: user attributes, MLflow run, summary)
    compile           model.compile
    fit set-up        compiled -> first epoch begins (input pipeline, fit's own set-up)
    first-epoch overhead    each trial's first epoch minus the median steady epoch (tracing)
    first epochs at steady speed   trials x the median steady epoch
    steady epochs     every epoch after a trial's first, summed (begin -> end of Keras' epoch)
    callbacks after the first epoch / after later epochs
                      epoch end -> next epoch begin or fit end: the other callbacks' work
                      (tunelab: validation metrics, tracking hand-off, progress line; early
                      stopping; pruning), split because the first traces predict
    end-of-trial work fit end (or the pruned epoch) -> trial end, after the trial is stored
    between trials    trial end -> next trial start, same process (Optuna's ask included)
    worker recycles   a worker's last trial end -> the next worker's first trial start
    study end         last trial end -> exit (study plots, parent run, process exit)

Headlines: **tunelab wall / hand-glued wall** per dataset and **wall / steady epoch compute**
(epochs trained x the median steady epoch of the same run) per case.

Cases, per dataset (digits at 16x16; BreastMNIST at 28x28 from ../shared/data, skipped with
the reason when absent):
    tunelab      the real CLI, ``tunelab tune pinned.yaml``: LeNet, the space, budget and
                 seed of the default study as of d06f586, pinned here so that changing the
                 default does not move the baseline
    hand-glued   in-memory Optuna study (the same TPE seed and options, median pruner),
                 the same space, ``tunelab.models.build_model``, plain ``model.fit`` with
                 early stopping and ``KerasPruningCallback``; no tracking, no checkpoints
    keras-tuner  KerasTuner RandomSearch, the same trials, builder, epochs, early stopping
    hand-glued, same trials
                 the hand-glued loop replaying tunelab's trials of the same run (their
                 parameters enqueued, in order, each trained for the epochs tunelab trained
                 it): the two searches diverge after TPE's random start-up trials, so only
                 this one compares equal work on the pinned configs (--no-replay: skipped)
and once, beside them, ``tunelab tune`` with no arguments (today's default study), reported,
not targeted.

    python benchmarks/orchestration.py            # full: ~15 minutes on 2 cores
    python benchmarks/orchestration.py --quick    # smoke test: digits 8x8, 3 trials x 2 epochs
    python benchmarks/orchestration.py --lab-sized  # BreastMNIST at 128x128, 10 trials x 8
    python benchmarks/orchestration.py --equal-work # same compute for both: orchestration alone
    python benchmarks/orchestration.py --from-results benchmarks/results/orchestration/results.json

Writes results.json (every phase, the per-gap breakdown, the raw timelines) and summary.md to
--out (default benchmarks/results/orchestration/).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BREAST = REPO.parent / "shared" / "data" / "breastmnist.npz"
OUT = REPO / "benchmarks" / "results" / "orchestration"

# The default study's space as of d06f586 (README "The study file"), pinned.
SPACE = {
    "learning_rate": {"low": 1.0e-4, "high": 1.0e-2, "log": True},
    "batch_size": [32, 64, 128],
    "n_base": [8, 16, 32],
    "dropout": {"low": 0.0, "high": 0.5},
    "spatial_dropout": {"low": 0.0, "high": 0.3},
    "batch_norm": [True, False],
    "optimizer": ["adam", "sgd", "rmsprop"],
    "loss": ["categorical_crossentropy", "categorical_hinge"],
}
# --equal-work: the same compute in every trial (one architecture and batch size; the
# learning rate and dropout do not change the cost of an epoch), every trial trains
# EQUAL_EPOCHS epochs (no early stopping, no pruner), so tunelab and the hand-glued loop do
# the same work whatever their samplers propose, and their wall ratio is orchestration alone
EQUAL_SPACE = {
    "learning_rate": {"low": 1.0e-4, "high": 1.0e-2, "log": True},
    "batch_size": [64], "n_base": [16], "dropout": {"low": 0.0, "high": 0.5},
    "spatial_dropout": [0.1], "batch_norm": [True], "optimizer": ["adam"],
    "loss": ["categorical_crossentropy"],
}
EQUAL_EPOCHS = 10
TRAINING_KEYS = ("learning_rate", "batch_size", "optimizer", "loss")
PATIENCE, STARTUP_TRIALS, PRUNE_STARTUP, PRUNE_WARMUP, SEED = 5, 5, 3, 2, 42

PHASES = (
    "start-up (command to first trial)",
    "sampling (suggest)",
    "build",
    "trial set-up",
    "compile",
    "fit set-up",
    "first-epoch overhead",
    "first epochs at steady speed",
    "steady epochs",
    "callbacks after the first epoch",
    "callbacks after later epochs",
    "end-of-trial work",
    "between trials",
    "worker recycles",
    "study end (to exit)",
    "other",
)
KINDS = ("tunelab", "hand-glued", "keras-tuner")
REPLAY = "hand-glued, same trials"  # the loop replaying tunelab's trials (--no-replay: off)
GAPS = {"start-up (command to first trial)", "between trials", "worker recycles",
        "study end (to exit)"}


def pinned_config(source: str, image_size: int, n_trials: int, max_epochs: int,
                  per_process: int, cache_dir: Path, equal_work: bool = False) -> dict:
    """Every key that shapes the study, explicit: the default study as of d06f586 (with
    ``equal_work``: its fixed-cost variant, see EQUAL_SPACE)."""
    config = {
        "study_name": "orchestration", "model": "lenet",
        "dataset": {"source": source, "image_size": image_size, "color_mode": "grayscale",
                    "validation_fraction": 0.2, "cache_dir": str(cache_dir), "cv_folds": 1},
        "space": SPACE, "n_trials": n_trials, "timeout": None, "max_epochs": max_epochs,
        "early_stopping": {"enabled": True, "monitor": None, "patience": PATIENCE,
                           "min_delta": 0.0, "restore_best_weights": True},
        "lr_schedule": {"kind": "constant"},
        "objective": {"metric": "val_accuracy", "direction": None, "kind": "metric"},
        "sampler": {"kind": "tpe", "n_startup_trials": STARTUP_TRIALS},
        "pruner": {"kind": "median", "n_startup_trials": PRUNE_STARTUP,
                   "n_warmup_steps": PRUNE_WARMUP},
        "seed": SEED, "trials_per_process": per_process, "workers": 1, "tracking": True,
        "tensorboard": False, "engine": "optuna", "checkpoints": {"keep_top": 3},
        # d06f586 picked the best validation score: no confirmation runs after the search
        # (later defaults add them, and the hand-glued loop has none)
        "selection": {"method": "best_validation"},
    }
    if equal_work:
        config.update(space=EQUAL_SPACE, pruner={"kind": "none"},
                      early_stopping={"enabled": False})
    return config


# -- the two baselines, each run in its own process (--run-case) ------------------------------
def _load(spec: dict):
    from tunelab.models.data import load_dataset
    from tunelab.models.timeline import mark

    data = load_dataset(spec["source"], image_size=spec["image_size"], validation_fraction=0.2,
                        seed=SEED, progress=False)
    mark("data_loaded")
    return data


def _compile(model, head, name: str, learning_rate: float) -> None:
    import keras

    optimizer = {"adam": lambda: keras.optimizers.Adam(learning_rate),
                 "sgd": lambda: keras.optimizers.SGD(learning_rate, momentum=0.9),
                 "rmsprop": lambda: keras.optimizers.RMSprop(learning_rate)}[name]()
    model.compile(optimizer=optimizer, loss=head.loss, metrics=[head.accuracy_metric()])


def _early_stopping():
    import keras

    return keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=PATIENCE,
                                         restore_best_weights=True, verbose=0)


def hand_glued(spec: dict) -> None:
    """What a lab writes by hand: Optuna + Keras, no tracking."""
    import keras
    import optuna
    from optuna_integration import KerasPruningCallback

    from tunelab.models import Head, build_model
    from tunelab.models.timeline import keras_callbacks, mark

    data = _load(spec)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=SEED, n_startup_trials=STARTUP_TRIALS,
                                           multivariate=True, constant_liar=True),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=PRUNE_STARTUP,
                                           n_warmup_steps=PRUNE_WARMUP))

    def suggest(trial, name, dim):
        if isinstance(dim, list):
            return trial.suggest_categorical(name, dim)
        return trial.suggest_float(name, dim["low"], dim["high"], log=dim.get("log", False))

    equal_work = spec.get("equal_work", False)
    space = EQUAL_SPACE if equal_work else SPACE
    # --replay: tunelab's own trials (its parameters, in its order), each trained for the
    # epochs tunelab trained it (early stopping and pruning decided there): the same work
    replay = spec.get("replay")
    for planned in replay or ():
        study.enqueue_trial(planned["params"])

    def objective(trial):
        mark("trial_start", trial=trial.number)
        p = {name: suggest(trial, name, dim) for name, dim in space.items()}
        mark("suggested")
        keras.backend.clear_session()
        keras.utils.set_random_seed(SEED + trial.number)
        head = Head(p["loss"], data.n_classes)
        model = build_model("lenet", data.input_shape, data.n_classes, loss=p["loss"],
                            **{k: v for k, v in p.items() if k not in TRAINING_KEYS})
        mark("model_built")
        mark("train_start")
        _compile(model, head, p["optimizer"], p["learning_rate"])
        mark("compiled")
        history = model.fit(
            data.train.x, head.encode_labels(data.train.y), batch_size=p["batch_size"],
            epochs=replay[trial.number]["epochs"] if replay else spec["max_epochs"], verbose=0,
            validation_data=(data.val.x, head.encode_labels(data.val.y)),
            callbacks=[*keras_callbacks(), *([] if equal_work or replay else [
                _early_stopping(), KerasPruningCallback(trial, "val_accuracy")])]).history
        mark("fit_end")
        return max(history["val_accuracy"])

    study.optimize(objective, n_trials=len(replay) if replay else spec["n_trials"],
                   callbacks=[lambda s, t: mark("trial_end", trial=t.number)])
    mark("study_end")


def tunelab_trials(folder: Path, events: list[dict]) -> list[dict]:
    """The trials tunelab's case trained, in its order: each one's parameters (from its
    journal) and the epochs it trained (from its timeline, as the analysis counts them)."""
    import optuna

    from tunelab.search.study import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="orchestration", storage=open_storage(
        str(folder / "mlruns" / "optuna.journal")))
    epochs = {row["trial"]: row["epochs"] for row in analyse(events)["per_trial"]}
    out = []
    for trial in sorted(study.trials, key=lambda t: t.number):
        if epochs.get(trial.number):
            out.append({"params": dict(trial.params), "epochs": epochs[trial.number]})
    return out


def keras_tuner(spec: dict) -> None:
    """KerasTuner RandomSearch on the same builder. Its oracle draws the hyperparameters
    before a trial begins (time between trials); it clears the session and collects garbage
    before each build (counted as build)."""
    import keras_tuner as kt

    from tunelab.models import Head, build_model
    from tunelab.models.timeline import keras_callbacks, mark

    data = _load(spec)

    def suggest(hp, name, dim):
        if isinstance(dim, list) and all(isinstance(v, bool) for v in dim):
            return hp.Boolean(name)  # hp.Choice holds booleans as integers
        if isinstance(dim, list):
            return hp.Choice(name, dim)
        return hp.Float(name, dim["low"], dim["high"],
                        sampling="log" if dim.get("log") else "linear")

    class LeNet(kt.HyperModel):
        def build(self, hp):
            p = {name: suggest(hp, name, dim) for name, dim in SPACE.items()}
            head = Head(p["loss"], data.n_classes)
            model = build_model("lenet", data.input_shape, data.n_classes, loss=p["loss"],
                                **{k: v for k, v in p.items() if k not in TRAINING_KEYS})
            mark("model_built")
            mark("train_start")
            _compile(model, head, p["optimizer"], p["learning_rate"])
            mark("compiled")
            return model

        def fit(self, hp, model, x, y, validation_data, **kwargs):
            head = Head(hp.get("loss"), data.n_classes)
            xv, yv = validation_data
            history = model.fit(x, head.encode_labels(y), batch_size=hp.get("batch_size"),
                                validation_data=(xv, head.encode_labels(yv)), **kwargs)
            mark("fit_end")
            return history

    class Search(kt.RandomSearch):
        def on_trial_begin(self, trial):
            mark("trial_start", trial=trial.trial_id)
            mark("suggested")  # the oracle drew them before the trial began
            super().on_trial_begin(trial)

        def on_trial_end(self, trial):
            super().on_trial_end(trial)
            mark("trial_end", trial=trial.trial_id)

    with tempfile.TemporaryDirectory(prefix="orchestration-kt-") as tmp:
        tuner = Search(LeNet(), objective=kt.Objective("val_accuracy", "max"),
                       max_trials=spec["n_trials"], seed=SEED, directory=tmp,
                       project_name="kt", overwrite=True)
        tuner.search(data.train.x, data.train.y, validation_data=(data.val.x, data.val.y),
                     epochs=spec["max_epochs"], verbose=0,
                     callbacks=[*keras_callbacks(), _early_stopping()])
        mark("study_end")


# -- running the cases ------------------------------------------------------------------------
def tunelab_command() -> list[str]:
    script = Path(sys.executable).parent / "tunelab"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tunelab"]


def run_case(name: str, command: list[str], cwd: Path, timeline: Path, log: Path,
             timeout: float) -> list[dict]:
    """One case in a fresh process; its events, framed by 'launch' and 'exit'."""
    env = {**os.environ, "TUNELAB_TIMELINE": str(timeline),
           "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    timeline.unlink(missing_ok=True)
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(command)}", flush=True)
    launch = time.time()
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
        samples = sample_memory(proc, timeout)
    end = time.time()
    if proc.returncode != 0:
        raise SystemExit(f"{name} exited with code {proc.returncode}; see {log}:\n"
                         + log.read_text()[-3000:])
    events = [json.loads(line) for line in timeline.read_text().splitlines() if line.strip()]
    me = os.getpid()
    return [{"t": launch, "pid": me, "event": "launch"}, *events,
            {"t": end, "pid": me, "event": "exit", "memory": samples}]


def sample_memory(proc: subprocess.Popen, timeout: float, every: float = 0.25) -> list:
    """Until ``proc`` exits: [seconds, resident MB of it and all its descendants, worker
    processes alive] every ``every`` s (a worker: ``tunelab worker``, a standby one too)."""
    import psutil

    began, samples = time.time(), []
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        if time.time() - began > timeout:
            proc.kill()
            raise subprocess.TimeoutExpired(proc.args, timeout)
        total, workers = 0, 0
        try:
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in family:
            try:
                total += p.memory_info().rss
                workers += "worker" in p.cmdline()[:5]
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        samples.append([round(time.time() - began, 2), round(total / 2**20, 1), workers])
        time.sleep(every)
    return samples


def memory_summary(samples: list) -> dict:
    """Peak resident memory of the case's processes; with worker processes, the peak while
    two or more were alive (a recycle's overlap, or the standby beside the first) and while
    at most one was."""
    if not samples:
        return {}
    out = {"peak_mb": max(s[1] for s in samples)}
    overlap = [s[1] for s in samples if s[2] >= 2]
    single = [s[1] for s in samples if s[2] <= 1]
    if any(s[2] for s in samples):
        out["peak_overlap_mb"] = max(overlap) if overlap else None
        out["peak_single_mb"] = max(single) if single else None
        out["overlap_seconds"] = round(sum(0.25 for _ in overlap), 1)
    return out


# -- the analysis -----------------------------------------------------------------------------
def _trial_label(a: dict, b: dict, first: bool) -> str:
    ea, eb = a["event"], b["event"]
    if ea == "epoch_begin" and eb == "epoch_end":
        return "first epoch" if first else "steady epoch"
    if ea == "epoch_end" and eb in ("epoch_begin", "fit_end"):
        return "per-epoch callbacks"
    if eb == "trial_end":
        return "end-of-trial work"
    return {"suggested": "sampling (suggest)", "model_built": "build",
            "train_start": "trial set-up", "compiled": "compile", "fit_begin": "fit set-up",
            "epoch_begin": "fit set-up"}.get(eb, "other")


def analyse(events: list[dict]) -> dict:
    """Cut one case's timeline into PHASES (they add up to the wall time)."""
    events = sorted(events, key=lambda e: e["t"])
    launch = next(e["t"] for e in events if e["event"] == "launch")
    end = next(e["t"] for e in events if e["event"] == "exit")
    trials, open_trials = [], {}
    for e in events:
        pid = e["pid"]
        if e["event"] == "trial_start":
            open_trials[pid] = [e]
        elif pid in open_trials:
            open_trials[pid].append(e)
            if e["event"] == "trial_end":
                trials.append(open_trials.pop(pid))
    trials.sort(key=lambda tr: tr[0]["t"])
    if not trials:
        raise ValueError("no trial in the timeline")
    seconds = dict.fromkeys(PHASES, 0.0)
    first_epochs, steady, per_trial = [], [], []
    for tr in trials:
        row = {"pid": tr[0]["pid"], "trial": tr[0].get("trial"), "epochs": 0,
               "pruned": not any(e["event"] == "fit_end" for e in tr)}
        first = after_first = False
        for a, b in zip(tr, tr[1:], strict=False):
            if a["event"] == "fit_begin":
                first = True
            label = _trial_label(a, b, first)
            dt = b["t"] - a["t"]
            if label == "first epoch":
                first_epochs.append(dt)
                first, after_first = False, True
            elif label == "steady epoch":
                steady.append(dt)
                after_first = False
            elif label == "per-epoch callbacks":
                label = ("callbacks after the first epoch" if after_first
                         else "callbacks after later epochs")
            if label in ("first epoch", "steady epoch"):
                row["epochs"] += 1
            row[label] = row.get(label, 0.0) + dt
        per_trial.append(row)
    median_steady = statistics.median(steady) if steady else (
        statistics.median(first_epochs) if first_epochs else 0.0)
    for row in per_trial:
        for label, dt in row.items():
            if label in seconds:
                seconds[label] += dt
            elif label == "first epoch":
                seconds["first-epoch overhead"] += dt - median_steady
                seconds["first epochs at steady speed"] += median_steady
            elif label == "steady epoch":
                seconds["steady epochs"] += dt
    # the gaps around the trials, with what happened in each (consecutive events)
    bounds = [(None, launch, trials[0][0]["t"], "start-up (command to first trial)")]
    for prev, nxt in zip(trials, trials[1:], strict=False):
        kind = "between trials" if prev[0]["pid"] == nxt[0]["pid"] else "worker recycles"
        bounds.append((prev, prev[-1]["t"], nxt[0]["t"], kind))
    bounds.append((trials[-1], trials[-1][-1]["t"], end, "study end (to exit)"))
    breakdown: dict[str, dict[str, float]] = {kind: {} for kind in GAPS}
    counts = dict.fromkeys(GAPS, 0)
    for _, lo, hi, kind in bounds:
        seconds[kind] += hi - lo
        counts[kind] += 1
        inside = [e for e in events if lo <= e["t"] <= hi]
        for a, b in zip(inside, inside[1:], strict=False):
            step = f"{a['event']} -> {b['event']}"
            breakdown[kind][step] = breakdown[kind].get(step, 0.0) + b["t"] - a["t"]
    wall = end - launch
    seconds["other"] += wall - sum(seconds.values())
    epochs = sum(r["epochs"] for r in per_trial)
    compute = epochs * median_steady
    first_epoch = next((e["t"] for e in events if e["event"] == "epoch_begin"), end)
    return {
        "wall": wall, "trials": len(trials), "epochs": epochs,
        "pruned": sum(r["pruned"] for r in per_trial),
        "processes": len({tr[0]["pid"] for tr in trials}),
        "median_steady_epoch": median_steady,
        "median_first_epoch": statistics.median(first_epochs) if first_epochs else None,
        "steady_compute": compute,
        "overhead_per_trial": (wall - compute) / len(trials),
        "wall_over_compute": wall / compute if compute > 0 else math.inf,
        "time_to_first_epoch": first_epoch - launch,
        "phases": seconds, "gap_counts": counts, "gap_breakdown": breakdown,
        "per_trial": per_trial,
        "memory": memory_summary(next(e for e in events if e["event"] == "exit")
                                 .get("memory", [])),
    }


# -- reporting --------------------------------------------------------------------------------
def case_table(name: str, r: dict) -> list[str]:
    wall, n = r["wall"], r["trials"]
    lines = [f"\n{name}: wall {wall:.1f} s, {n} trials ({r['pruned']} pruned) in "
             f"{r['processes']} process(es), {r['epochs']} epochs, median steady epoch "
             f"{r['median_steady_epoch']:.3f} s, first epoch begins {r['time_to_first_epoch']:.1f}"
             " s after the command",
             f"  {'phase':<36} {'seconds':>8} {'share':>6} {'per trial':>9}"]
    for phase in PHASES:
        sec = r["phases"][phase]
        if phase == "other" and abs(sec) < 0.0005:
            continue
        count = r["gap_counts"].get(phase) if phase in GAPS else n
        each = f"{sec / count:>9.3f}" if count else f"{'':>9}"
        lines.append(f"  {phase:<36} {sec:>8.2f} {sec / wall:>6.1%} {each}"
                     + (f"  (x{count})" if phase in GAPS and count else ""))
        for step, s in sorted(r["gap_breakdown"].get(phase, {}).items(), key=lambda kv: -kv[1]):
            if s >= 0.05:
                lines.append(f"      {step:<40} {s:>6.2f}")
    lines.append(f"  steady epoch compute = {r['epochs']} epochs x "
                 f"{r['median_steady_epoch']:.3f} s = {r['steady_compute']:.1f} s; "
                 f"wall / steady epoch compute = {r['wall_over_compute']:.2f}")
    return lines


def headlines(results: dict) -> list[str]:
    lines = ["\nheadline ratios"]
    for dataset, cases in results["datasets"].items():
        if "tunelab" in cases and "hand-glued" in cases:
            ratio = cases["tunelab"]["wall"] / cases["hand-glued"]["wall"]
            lines.append(f"  {dataset}: tunelab wall / hand-glued loop wall = {ratio:.2f} "
                         f"({cases['tunelab']['epochs']} against "
                         f"{cases['hand-glued']['epochs']} epochs: "
                         + ("the same work)" if cases["tunelab"]["epochs"]
                            == cases["hand-glued"]["epochs"] else "the two searches diverge)"))
        if "tunelab" in cases and REPLAY in cases:
            ratio = cases["tunelab"]["wall"] / cases[REPLAY]["wall"]
            lines.append(f"  {dataset}: tunelab wall / hand-glued loop on tunelab's trials = "
                         f"{ratio:.2f} ({cases['tunelab']['epochs']} against "
                         f"{cases[REPLAY]['epochs']} epochs: the same work)")
        for case, r in cases.items():
            lines.append(f"  {dataset}: {case} wall / steady epoch compute = "
                         f"{r['wall_over_compute']:.2f} ({r['wall']:.1f} s / "
                         f"{r['steady_compute']:.1f} s); outside it "
                         f"{r['overhead_per_trial']:.2f} s a trial")
    return lines


def markdown(results: dict) -> str:
    """The side-by-side phase table BENCHMARKS.md shows."""
    columns = [(d, c, r) for d, cases in results["datasets"].items() for c, r in cases.items()]
    head = "| phase | " + " | ".join(f"{c} ({d})" for d, c, _ in columns) + " |"
    rows = [head, "|---|" + "---|" * len(columns)]

    def cell(r, sec):
        return f"{sec:.1f} s ({sec / r['wall']:.0%})"

    for phase in PHASES:
        if phase == "other" and all(abs(r["phases"]["other"]) < 0.05 for *_, r in columns):
            continue
        rows.append(f"| {phase} | " + " | ".join(cell(r, r["phases"][phase])
                                               for *_, r in columns) + " |")
    for label, fmt in (("**wall**", lambda r: f"**{r['wall']:.1f} s**"),
                       ("trials (pruned) / processes",
                        lambda r: f"{r['trials']} ({r['pruned']}) / {r['processes']}"),
                       ("epochs trained", lambda r: str(r["epochs"])),
                       ("median steady epoch", lambda r: f"{r['median_steady_epoch']:.3f} s"),
                       ("command to first epoch", lambda r: f"{r['time_to_first_epoch']:.1f} s"),
                       ("(wall - steady epoch compute) / trials",
                        lambda r: f"{r['overhead_per_trial']:.2f} s"),
                       ("**wall / steady epoch compute**",
                        lambda r: f"**{r['wall_over_compute']:.2f}**"),
                       ("peak memory, all its processes", lambda r: _mb(r, "peak_mb")),
                       ("peak memory while 2+ workers lived (s of it)",
                        lambda r: _mb(r, "peak_overlap_mb")
                        + (f" ({r['memory']['overlap_seconds']:.0f} s)"
                           if r.get("memory", {}).get("peak_overlap_mb") else "")),
                       ("peak memory while at most 1 worker lived",
                        lambda r: _mb(r, "peak_single_mb"))):
        rows.append(f"| {label} | " + " | ".join(fmt(r) for *_, r in columns) + " |")
    return "\n".join(rows) + "\n"


def _mb(r: dict, key: str) -> str:
    value = r.get("memory", {}).get(key)
    return f"{value:.0f} MB" if value else "-"


def report(results: dict, out: Path | None) -> None:
    for dataset, cases in results["datasets"].items():
        for case, r in cases.items():
            print("\n".join(case_table(f"{case} on {dataset}", r)))
    print("\n".join(headlines(results)))
    table = markdown(results)
    print("\n" + table)
    if out is not None:
        (out / "summary.md").write_text(table + "\n".join(headlines(results)) + "\n")


# -- main -------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="digits 8x8, 3 trials x 2 epochs, workers recycled every 2")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--breast", type=Path, default=BREAST,
                        help="BreastMNIST .npz (default: ../shared/data/breastmnist.npz)")
    parser.add_argument("--cases", nargs="+", choices=KINDS, default=list(KINDS),
                        help="which cases to run per dataset (default: all three)")
    parser.add_argument("--default-only", action="store_true",
                        help="only `tunelab tune` with no arguments (the default study's "
                             "phases; issue #16 asks it under 3 minutes)")
    parser.add_argument("--no-default", action="store_true",
                        help="skip the run of the default study (no arguments)")
    parser.add_argument("--lab-sized", action="store_true",
                        help="BreastMNIST upscaled to 128x128 (a lab's image size), tunelab "
                             "and the hand-glued loop, 10 trials of up to 8 epochs")
    parser.add_argument("--equal-work", action="store_true",
                        help="tunelab and the hand-glued loop on the same work: one "
                             "architecture and batch size, 20 trials of 10 epochs each (no "
                             "early stopping, no pruner), so their wall ratio is "
                             "orchestration alone; with --lab-sized, at 128x128")
    parser.add_argument("--no-replay", action="store_true",
                        help="skip the hand-glued loop replaying tunelab's own trials (its "
                             "parameters, each for the epochs tunelab trained it: the same "
                             "work, so the ratio is orchestration alone)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per case")
    parser.add_argument("--from-results", type=Path,
                        help="analyse the timelines of a results.json again and print them")
    parser.add_argument("--run-case", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_case:
        spec = json.loads(args.run_case.read_text())
        {"hand-glued": hand_glued, "keras-tuner": keras_tuner}[spec["kind"]](spec)
        return
    if args.from_results:  # analysed again from the raw timelines
        results = json.loads(args.from_results.read_text())
        results["datasets"] = {}
        for key, events in results["timelines"].items():
            dataset, kind = key.split("/", 1)
            results["datasets"].setdefault(dataset, {})[kind] = analyse(events)
        report(results, None)
        return
    import yaml

    if args.quick:
        datasets = {"digits": ("digits", 8)}
        n_trials, max_epochs, per_process = 3, 2, 2
    elif args.lab_sized:
        if not args.breast.is_file():
            parser.error(f"--lab-sized needs BreastMNIST: {args.breast} is not present "
                         "(--breast PATH)")
        datasets = {"breastmnist-128": (str(args.breast.resolve()), 128)}
        n_trials, max_epochs, per_process = 10, 8, 8
    else:
        datasets = {"digits": ("digits", 16)}
        if args.breast.is_file():
            datasets["breastmnist"] = (str(args.breast.resolve()), 28)
        else:
            print(f"breastmnist: skipped, {args.breast} is not present", flush=True)
        n_trials, max_epochs, per_process = 20, 15, 8
    if args.equal_work and not args.quick:
        max_epochs = EQUAL_EPOCHS
        if "keras-tuner" in args.cases and args.cases != list(KINDS):
            parser.error("--equal-work compares tunelab and the hand-glued loop only")
    if (args.equal_work and not args.quick) or args.lab_sized:
        args.no_default = True  # tunelab against the hand-glued loop only
        if args.cases == list(KINDS):
            args.cases = ["tunelab", "hand-glued"]
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"commit": _commit(), "quick": args.quick, "equal_work": args.equal_work,
               "lab_sized": args.lab_sized, "started": time.strftime("%F %T"),
               "load_before": os.getloadavg(), "datasets": {}, "timelines": {}}
    wall_start = time.time()
    with tempfile.TemporaryDirectory(prefix="tunelab-orchestration-") as tmp:
        tmp = Path(tmp)
        runs = []
        for dataset, (source, size) in datasets.items():
            for kind in () if args.default_only else args.cases:
                folder = tmp / f"{dataset}-{kind}"
                folder.mkdir()
                if kind == "tunelab":
                    config = pinned_config(source, size, n_trials, max_epochs, per_process,
                                           folder / "cache", equal_work=args.equal_work)
                    (folder / "pinned.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
                    command = [*tunelab_command(), "tune", "pinned.yaml"]
                else:
                    spec = {"kind": kind, "source": source, "image_size": size,
                            "n_trials": n_trials, "max_epochs": max_epochs,
                            "equal_work": args.equal_work}
                    (folder / "case.json").write_text(json.dumps(spec))
                    command = [sys.executable, str(Path(__file__).resolve()), "--run-case",
                               str(folder / "case.json")]
                runs.append((dataset, kind, folder, command))
                if kind == "tunelab" and not args.no_replay and not args.equal_work:
                    replay = tmp / f"{dataset}-{REPLAY}"
                    replay.mkdir()
                    runs.append((dataset, REPLAY, replay,
                                 [sys.executable, str(Path(__file__).resolve()), "--run-case",
                                  str(replay / "case.json")]))
        if not args.quick and not args.no_default:
            folder = tmp / "default"
            folder.mkdir()
            runs.append(("digits", "tunelab default (no arguments)", folder,
                         [*tunelab_command(), "tune"]))
        for dataset, kind, folder, command in runs:
            key = f"{dataset}/{kind}"
            if kind == REPLAY:  # tunelab's trials, read from its case just run
                spec = {"kind": "hand-glued", "source": datasets[dataset][0],
                        "image_size": datasets[dataset][1], "n_trials": n_trials,
                        "max_epochs": max_epochs, "equal_work": False,
                        "replay": tunelab_trials(tmp / f"{dataset}-tunelab",
                                                 results["timelines"][f"{dataset}/tunelab"])}
                (folder / "case.json").write_text(json.dumps(spec))
            load = os.getloadavg()[0]
            events = run_case(key, command, folder, folder / "timeline.jsonl",
                              args.out / f"{dataset}-"
                              f"{'hand-glued-same-trials' if kind == REPLAY else kind.split()[0]}"
                              f"{'-default' if 'default' in kind else ''}.log", args.timeout)
            results["timelines"][key] = events
            results["datasets"].setdefault(dataset, {})[kind] = analyse(events)
            r = results["datasets"][dataset][kind]
            r["load_average"] = [load, os.getloadavg()[0]]  # 1-minute, before and after
            print(f"  wall {r['wall']:.1f} s, {r['trials']} trials, {r['epochs']} epochs, "
                  f"load average {load:.1f} before, {os.getloadavg()[0]:.1f} after", flush=True)
    results["total_seconds"] = time.time() - wall_start
    results["load_after"] = os.getloadavg()
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    report(results, args.out)
    print(f"\ncommit {results['commit']}; total {results['total_seconds'] / 60:.1f} min; load "
          f"average before {results['load_before'][0]:.1f}, after "
          f"{results['load_after'][0]:.1f}; results in {args.out}")


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                              capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    main()
