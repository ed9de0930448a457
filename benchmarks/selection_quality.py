"""Selection quality: does the pick hold up on images no trial has seen?

For each dataset and seed, a stratified 30% hold-out is removed from train + validation
before anything else (the rest is split into train / validation at the source's own ratio);
no method ever sees it. Then, on the same wall-clock budget ``--seconds`` per method:

* one tunelab study (TPE + median pruner, objective ``val_auc``) whose trials every
  tunelab selection method shares:
    best_validation, gap_penalized, rule   pick from the trials finished by the budget;
    confirm_mean, confirm_lcb              pick from the trials finished by
                                           (1 - reserve) x budget, then confirm the top
                                           ``--confirm-top`` with ``--confirm-seeds`` fresh
                                           seeds (their time is measured and reported);
    ensemble                               the averaged probabilities of confirm_mean's top 3
                                           confirmed candidates;
    confirm_cv                             the same candidates confirmed instead by a
                                           ``--confirm-folds``-fold CV on train + validation
                                           (``confirm_kind: cv``), in a reserve of its own;
* KerasTuner Hyperband and RandomSearch (best validation value, their own pick).

Each pick's model (the search trial's, as ``tunelab register`` logs it) is scored on the
hold-out: ROC AUC (macro one-vs-rest for k > 2) and accuracy, with bootstrap 95% intervals;
the drop is the method's estimate (validation score or confirmed mean) minus the hold-out
AUC. For the default method's pick it also reports the hold-out accuracy at the decision
threshold fitted on the validation images (``registry.threshold: accuracy``) against argmax.

    python benchmarks/selection_quality.py --quick          # smoke test: digits, seconds
    python benchmarks/selection_quality.py --datasets breastmnist --seeds 0 1 --seconds 150
    python benchmarks/selection_quality.py                  # the full protocol (~3 h on 2
                                                            # cores: 2 datasets x 6 seeds x
                                                            # 3 runs x 600 s ... see --help)

Writes results.json and summary.md to --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# the shared data beside the checkout (../shared/data), or beside a worktree's parent folder
SHARED = next((p / "shared" / "data" for p in REPO.parents
               if (p / "shared" / "data").is_dir()), REPO.parent / "shared" / "data")
DATASETS = {"digits": "digits",
            "breastmnist": str(SHARED / "breastmnist.npz"),
            "pneumoniamnist": str(SHARED / "pneumoniamnist.npz")}
TUNELAB_METHODS = ("best_validation", "gap_penalized", "rule", "confirm_mean", "confirm_lcb",
                   "ensemble", "confirm_cv", "cv_from_start")
REFERENCES = ("kt-hyperband", "kt-random")
# --quick only: a space small enough for seconds of digits
QUICK_SPACE = {"learning_rate": {"low": 1.0e-3, "high": 1.0e-2, "log": True},
               "batch_size": [128], "n_base": [4], "dense_units": [16],
               "batch_norm": [True, False], "optimizer": ["adam", "rmsprop"]}


# -- data and scores ------------------------------------------------------------------------
def carve(name: str, seed: int, image_size: int | None):
    """(searched dataset, hold-out split): 30% of train + validation, stratified, per seed."""
    from tunelab.models.data import Split, load_dataset, stratified_holdout
    from tunelab.models.data.folds import pool_of

    data = load_dataset(DATASETS[name], image_size=image_size, validation_fraction=0.2,
                        seed=0, progress=False)
    pool = pool_of(data)
    val_share = len(data.val) / (len(data.train) + len(data.val))
    keep, hold = stratified_holdout(pool.y, 0.3, seed=1000 + seed, what="hold-out")
    rest = pool.take(keep)
    tr, va = stratified_holdout(rest.y, val_share, seed=2000 + seed, what="validation")
    searched = dataclasses.replace(data, train=Split(rest.x[tr], rest.y[tr]),
                                   val=Split(rest.x[va], rest.y[va]), test=None, info={})
    return searched, pool.take(hold)


def auc(y: np.ndarray, probs: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if probs.shape[1] == 2:
        return float(roc_auc_score(y, probs[:, 1]))
    return float(roc_auc_score(y, probs, multi_class="ovr", average="macro",
                               labels=list(range(probs.shape[1]))))


N_BOOT = 500


def scores(y: np.ndarray, probs: np.ndarray, *, threshold: float | None = None,
           n_boot: int | None = None, seed: int = 0) -> dict:
    from tunelab.tracking.pyfunc_model import decide

    pred = decide(probs, None if threshold is None else {"threshold": {"threshold": threshold}})
    out = {"auc": auc(y, probs), "acc": float((pred == y).mean())}
    rng = np.random.default_rng(seed)
    boots_auc, boots_acc = [], []
    for _ in range(N_BOOT if n_boot is None else n_boot):
        i = rng.integers(0, len(y), len(y))
        if len(np.unique(y[i])) < probs.shape[1]:
            continue
        boots_auc.append(auc(y[i], probs[i]))
        boots_acc.append(float((pred[i] == y[i]).mean()))
    if boots_auc:
        out["auc_ci"] = [float(np.percentile(boots_auc, q)) for q in (2.5, 97.5)]
        out["acc_ci"] = [float(np.percentile(boots_acc, q)) for q in (2.5, 97.5)]
    return out


class Probe:
    """Stands in for the checkpoint store: keeps every completed trial's hold-out and
    validation probabilities (the model a registration would log), nothing else."""

    def __init__(self, holdout, val, n_classes: int):
        self.holdout, self.val, self.n_classes = holdout, val, n_classes
        self.holdout_probs: dict[int, np.ndarray] = {}
        self.val_probs: dict[int, np.ndarray] = {}
        self.outputs: dict[int, tuple[str, np.ndarray, np.ndarray]] = {}
        self.out_of_fold: dict[int, object] = {}
        self.finished: dict[int, float] = {}

    def save(self, study, record, model, meta):
        from tunelab.models import Head

        head = Head(meta["loss"], self.n_classes)
        hold = model.predict(self.holdout.x, batch_size=256, verbose=0)
        val = model.predict(self.val.x, batch_size=256, verbose=0)
        self.holdout_probs[record.number] = head.probabilities(hold)
        self.val_probs[record.number] = head.probabilities(val)
        # raw head outputs, for the calibration and threshold `register` fits
        self.outputs[record.number] = (meta["loss"], val, hold)
        self.finished[record.number] = time.time()
        return None

    def save_out_of_fold(self, study, record, out_of_fold):
        """A cross-validated trial keeps no model (the cv part retrains its pick); its
        out-of-fold predictions are kept, as the checkpoint store keeps them."""
        self.out_of_fold[record.number] = out_of_fold
        self.finished[record.number] = time.time()
        return None


# -- runs -----------------------------------------------------------------------------------
def study_config(name: str, tag: str, seed: int, tmp: Path, args, engine: str = "optuna",
                 kt_kind: str = "hyperband", cv_folds: int = 1):
    """The study a user gets from ``tunelab tune --dataset <file> --timeout <seconds>``
    (tunelab's defaults for that data: ``config.lab_defaults`` on the .npz files), with
    tracking off, a throw-away storage, and the benchmark's own selection (``rule``: it
    confirms at the 70% cut itself). Flags given to the benchmark override the defaults."""
    from tunelab.config import config_from_dict

    raw = {"study_name": f"{tag}-s{seed}",
           "dataset": {"source": DATASETS[name], "image_size": args.image_size or "auto",
                       "cv_folds": cv_folds},
           "n_trials": args.n_trials, "timeout": args.seconds, "seed": seed,
           "tracking": False, "storage": str(tmp / tag / "optuna.journal"),
           "checkpoints": {"keep_top": 0}, "engine": engine, "selection": {"method": "rule"}}
    if args.max_epochs is not None:
        raw["max_epochs"] = args.max_epochs
    if args.patience is not None:
        raw["early_stopping"] = {"patience": args.patience}
    if args.quick:
        raw["space"] = QUICK_SPACE
    if engine == "optuna":
        if args.pruner is not None:
            raw["pruner"] = {"kind": args.pruner}
    else:
        raw["keras_tuner"] = {"kind": kt_kind, "factor": 3,
                              "hyperband_iterations": 1 if args.n_trials else 1000,
                              "directory": str(tmp / tag / "keras_tuner")}
    return config_from_dict(raw)


def search(config, data, probe, seconds: float) -> tuple[object, float]:
    from tunelab import wiring
    from tunelab.search import run_trials
    from tunelab.search.keras_tuner_engine import KerasTunerSettings, run_keras_tuner

    started = time.time()
    study = wiring.open_study(config, create=True)
    objective = wiring.make_objective(config, data, None, config.n_trials, started)
    objective.progress = None
    objective.checkpoints = probe
    if config.engine == "optuna":
        run_trials(study, objective, n_trials=config.n_trials, deadline=started + seconds)
    else:
        kt = config.keras_tuner
        run_keras_tuner(study, objective, KerasTunerSettings(
            kind=kt.kind, max_epochs=config.max_epochs, factor=kt.factor,
            hyperband_iterations=kt.hyperband_iterations, directory=kt.directory,
            overwrite=True), deadline=started + seconds)
    return study, started


THRESHOLD_RULES = ("accuracy", "youden")


def threshold_scores(fit_y, fit_outputs, loss: str, hold_y, hold_outputs) -> dict:
    """The decision threshold as ``tunelab register`` fits it: temperature calibration and
    each rule of ``registry.threshold`` fitted on out-of-sample outputs (validation, or the
    out-of-fold predictions of a cross-validated trial), then the hold-out accuracy of the
    calibrated model at that threshold, beside its accuracy at argmax."""
    from tunelab.tracking.evaluation import fit_calibration

    out = {}
    for rule in THRESHOLD_RULES:
        cal = fit_calibration(fit_y, fit_outputs, loss=loss, method="temperature",
                              threshold=rule, fitted_on="benchmark")
        pred = cal.predict(hold_outputs)
        out[rule] = {"threshold": float(cal.threshold.threshold),
                     "acc": float((pred == hold_y).mean())}
    # a temperature keeps the argmax: the model's own decision without a threshold
    argmax = cal.probabilities(hold_outputs).argmax(axis=1)
    out["argmax"] = {"acc": float((argmax == hold_y).mean())}
    return out


def pick_entry(method: str, number: int | None, estimate: float | None, probe: Probe,
               holdout, seed: int, probs=None, extra: dict | None = None) -> dict:
    if number is None and probs is None:
        return {"method": method, "trial": None}
    probs = probe.holdout_probs[number] if probs is None else probs
    s = scores(holdout.y, probs, seed=seed)
    return {"method": method, "trial": number, "estimate": estimate, **s,
            "drop": None if estimate is None else estimate - s["auc"], **(extra or {})}


def run_seed(name: str, seed: int, args, tmp: Path,
             parts: tuple[str, ...] = ("tunelab", *REFERENCES)) -> list[dict]:
    from tunelab import wiring
    from tunelab.search.selection import records_from_study
    from tunelab.search.selection_methods import choose

    data, holdout = carve(name, seed, args.image_size)
    print(f"[{name} seed {seed}] {len(data.train)} train / {len(data.val)} val / "
          f"{len(holdout)} hold-out, input {data.input_shape}", flush=True)
    out = []
    if "tunelab" in parts:
        out += run_tunelab(name, seed, args, tmp, data, holdout)
    if "tunelab-cv" in parts:
        out += run_tunelab_cv(name, seed, args, tmp, data, holdout)
    # references on the same budget and hold-out
    for ref, kind in (("kt-hyperband", "hyperband"), ("kt-random", "random")):
        if ref not in args.references or ref not in parts:
            continue
        cfg = study_config(name, ref, seed, tmp, args, engine="keras-tuner", kt_kind=kind)
        p = Probe(holdout, data.val, data.n_classes)
        st, _ = search(cfg, data, p, args.seconds)
        rule = wiring.objective_rule(cfg)
        recs = [r for r in records_from_study(st, rule.metric) if r.number in p.holdout_probs]
        c = choose(recs, "best_validation", rule)
        out.append(pick_entry(ref, c.chosen and c.chosen.number, c.chosen and c.chosen.value,
                              p, holdout, seed, extra={"n_trials": len(recs)}))
    smallest = int(np.bincount(data.val.y, minlength=data.n_classes).min())
    for e in out:
        e.update(dataset=name, seed=seed, smallest_val=smallest, seconds=args.seconds)
    return out


def part_of(row: dict) -> str:
    """The study (``--parts``) a row came from."""
    method = row["method"]
    if method in REFERENCES:
        return method
    return "tunelab-cv" if method == "cv_from_start" else "tunelab"


def earlier_rows(out: Path, seconds: float) -> tuple[list[dict], float]:
    """``--resume``: the rows an earlier run left in ``out/results.json`` at the same budget
    (a run stopped part-way, or one session's share of a run longer than a session), and
    the seconds that run had taken."""
    path = out / "results.json"
    if not path.exists():
        return [], 0.0
    saved = json.loads(path.read_text())
    rows = [r for r in saved["rows"] if r.get("seconds") == seconds]
    return rows, float(saved.get("total_seconds", 0.0)) if rows else 0.0


def run_tunelab_cv(name: str, seed: int, args, tmp: Path, data, holdout) -> list[dict]:
    """Cross-validated selection from the start: every trial is a ``--cv-folds``-fold CV on
    train + validation (``dataset.cv_folds``), the pick is the best CV mean, and its model is
    what ``tunelab register`` makes of it: retrained on the whole pool for the folds' mean
    best epoch (that retraining's time is reported, outside the budget, as register's is)."""
    from tunelab import wiring
    from tunelab.models import Head
    from tunelab.registering import retrain
    from tunelab.search.selection import records_from_study
    from tunelab.search.selection_methods import choose

    config = study_config(name, "tunelab-cv", seed, tmp, args, cv_folds=args.cv_folds)
    rule = wiring.objective_rule(config)
    probe = Probe(holdout, data.val, data.n_classes)
    study, started = search(config, data, probe, args.seconds)
    records = records_from_study(study, rule.metric)
    c = choose(records, "best_validation", rule)
    if c.chosen is None:
        return [{"method": "cv_from_start", "trial": None, "n_trials": len(records)}]
    t0 = time.time()
    model, meta = retrain(config, data, c.chosen)
    hold = model.predict(holdout.x, batch_size=256, verbose=0)
    probs = Head(meta["loss"], data.n_classes).probabilities(hold)
    entry = pick_entry("cv_from_start", c.chosen.number, c.chosen.value, probe, holdout, seed,
                       probs=probs, extra={"n_trials": len(records),
                                           "retrain_seconds": round(time.time() - t0, 1),
                                           "cv_folds": args.cv_folds})
    oof = probe.out_of_fold.get(c.chosen.number)
    if data.n_classes == 2 and oof is not None:
        entry["thresholds"] = threshold_scores(oof.y, oof.outputs, meta["loss"], holdout.y,
                                               hold)
        entry["thresholds_fitted_on"] = "out-of-fold predictions"
    return [entry]


def smallest_val_class(name: str, args) -> int:
    """Images of the smallest class in the searched validation split (seed 0's carving)."""
    data, _ = carve(name, 0, args.image_size)
    return int(np.bincount(data.val.y, minlength=data.n_classes).min())


def run_tunelab(name: str, seed: int, args, tmp: Path, data, holdout) -> list[dict]:
    """One tunelab study shared by every tunelab selection method."""
    from tunelab import wiring
    from tunelab.search.selection import records_from_study
    from tunelab.search.selection_methods import choose, select_by_method

    out = []
    config = study_config(name, "tunelab", seed, tmp, args)
    rule = wiring.objective_rule(config)
    probe = Probe(holdout, data.val, data.n_classes)
    study, started = search(config, data, probe, args.seconds)
    search_end = time.time()
    records = records_from_study(study, rule.metric)
    records = [r for r in records if r.number in probe.holdout_probs]
    early_cut = started + args.seconds * (1 - args.reserve)
    early = [r for r in records if probe.finished.get(r.number, 0) <= early_cut]
    for method in ("best_validation", "gap_penalized"):
        c = choose(records, method, rule)
        out.append(pick_entry(method, c.chosen and c.chosen.number,
                              c.chosen and c.chosen.value, probe, holdout, seed))
    sel = select_by_method(records, rule, "rule")
    out.append(pick_entry("rule", sel.chosen and sel.chosen.number,
                          sel.chosen and sel.chosen.value, probe, holdout, seed))
    confirmed, confirm_seconds = confirm_early(study, rule, config, data, seed, args, early,
                                               kind="seeds", runs=args.confirm_seeds)
    timing = {"search_seconds": round(search_end - started, 1),
              "confirm_seconds": round(confirm_seconds, 1),
              "confirm_budget": round(args.seconds * args.reserve, 1),
              "n_trials": len(records), "n_early": len(early)}
    default_pick = None
    for method in ("confirm_mean", "confirm_lcb"):
        s = select_by_method(confirmed, rule, method, top=args.confirm_top)
        est = s.choice.estimate if s.choice is not None else None
        entry = pick_entry(method, s.chosen and s.chosen.number, est, probe, holdout, seed,
                           extra=timing)
        out.append(entry)
        if method == args.default:
            default_pick = s.chosen
    s = select_by_method(confirmed, rule, "confirm_mean", top=args.confirm_top)
    if s.choice is not None and s.choice.confirmed:
        members = s.choice.members[:3]
        probs = np.mean([probe.holdout_probs[m] for m in members], axis=0)
        est = statistics.fmean(x.confirmation.mean for x in s.choice.candidates[:3])
        out.append(pick_entry("ensemble", None, est, probe, holdout, seed, probs=probs,
                              extra={"members": members, **timing}))
    else:
        out.append({"method": "ensemble", "trial": None})
    if args.confirm_folds >= 2:
        out.append(confirm_by_folds(study, rule, config, data, probe, holdout, seed, args,
                                    early, timing))
    # the decision threshold on the default pick (binary only), as register fits it
    if default_pick is not None and data.n_classes == 2:
        loss, val_out, hold_out = probe.outputs[default_pick.number]
        fitted = threshold_scores(data.val.y, val_out, loss, holdout.y, hold_out)
        for e in out:
            if e["method"] == args.default:
                e["thresholds"] = fitted
                e["thresholds_fitted_on"] = "validation"
    return out


def confirm_early(study, rule, config, data, seed, args, early, *, kind: str,
                  runs: int) -> tuple[list, float]:
    """Confirm the top candidates of the early cut (``kind`` seeds or cv) in a reserve of
    ``reserve`` x budget; return those trials' records, re-read with their confirmations,
    and the seconds it took."""
    from tunelab import wiring
    from tunelab.search.confirm import confirm_candidates
    from tunelab.search.selection import records_from_study

    t0 = time.time()
    confirm_candidates(study, rule=rule, data=data, model=config.model,
                       training=wiring.training_settings(config), seed=seed,
                       top=args.confirm_top, kind=kind, runs=runs, records=early,
                       log=lambda m: None,
                       # equal wall time: no confirmation run starts after the reserve (the
                       # methods pick among the trials of the first (1 - reserve) x budget,
                       # as `tune` would have stopped its search there); --quick's budget is
                       # trials, not time
                       deadline=None if args.quick else t0 + args.seconds * args.reserve)
    seconds = time.time() - t0
    numbers = {r.number for r in early}
    return [r for r in records_from_study(study, rule.metric) if r.number in numbers], seconds


def confirm_by_folds(study, rule, config, data, probe, holdout, seed, args, early,
                     timing) -> dict:
    """``confirm_cv``: the candidates of the same early cut confirmed by k-fold CV on train +
    validation instead of fresh seeds, with a reserve of its own (the search part is shared,
    so both confirmations see the same 70%; each gets the 30% `tune` would give it). Ranked
    by the mean of the folds; the pick's model is the search trial's, as for confirm_mean."""
    from tunelab.search.selection_methods import select_by_method

    confirmed, seconds = confirm_early(study, rule, config, data, seed, args, early,
                                       kind="cv", runs=args.confirm_folds)
    s = select_by_method(confirmed, rule, "confirm_mean", top=args.confirm_top)
    est = s.choice.estimate if s.choice is not None else None
    return pick_entry("confirm_cv", s.chosen and s.chosen.number, est, probe, holdout, seed,
                      extra={**timing, "confirm_seconds": round(seconds, 1),
                             "confirm_folds": args.confirm_folds,
                             "confirmed": bool(s.choice and s.choice.confirmed)})


# -- report ---------------------------------------------------------------------------------
def med_range(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.3f}"
    return f"{med:.3f} ({min(values):.3f}-{max(values):.3f})"


def default_line(mine: list[dict]) -> list[str]:
    """tunelab's default method on this data (``dataset.cv_folds`` and ``selection.method``
    auto: cv_from_start when the validation split's smallest class has fewer than
    ``CV_AUTO_BELOW`` images, else confirm_mean) against the issue's targets."""
    from tunelab.config import CV_AUTO_BELOW

    smallest = [r["smallest_val"] for r in mine if r.get("smallest_val") is not None]
    if not smallest:
        return []
    default = "cv_from_start" if min(smallest) < CV_AUTO_BELOW else "confirm_mean"
    ours = [r for r in mine if r["method"] == default]
    hb = [r for r in mine if r["method"] == "kt-hyperband"]
    if not ours:
        return [f"tunelab's default on this data: {default} (not run here)"]

    def med(rs, key):
        vals = [r[key] for r in rs if r.get(key) is not None]
        return statistics.median(vals) if vals else None

    text = (f"**tunelab's default on this data: {default}** (the validation split's smallest "
            f"class has {min(smallest)} images; cross-validated trials below "
            f"{CV_AUTO_BELOW}): median hold-out AUC {med(ours, 'auc'):.3f}, accuracy "
            f"{med(ours, 'acc'):.3f}, drop {med(ours, 'drop'):.3f} (target <= 0.03)")
    if hb:
        ahead = med(ours, "auc") > med(hb, "auc") and med(ours, "acc") > med(hb, "acc")
        text += (f"; KerasTuner Hyperband {med(hb, 'auc'):.3f} / {med(hb, 'acc'):.3f}: "
                 f"{'ahead in both' if ahead else 'NOT ahead in both'}")
    return ["", text]


def threshold_lines(mine: list[dict]) -> list[str]:
    """Hold-out accuracy of each default candidate's pick at argmax and at each
    ``registry.threshold`` rule (calibrated, fitted out of sample as register does)."""
    lines = []
    for method in ("cv_from_start", "confirm_mean"):
        rs = [r for r in mine if r["method"] == method and "thresholds" in r]
        if not rs:
            continue
        cells = []
        for rule in ("argmax", *THRESHOLD_RULES):
            accs = [r["thresholds"][rule]["acc"] for r in rs]
            n_ok = sum(r["thresholds"][rule]["acc"] >= r["thresholds"]["argmax"]["acc"]
                       for r in rs)
            wins = "" if rule == "argmax" else f", >= argmax in {n_ok} of {len(rs)}"
            cells.append(f"{rule} {med_range(accs)}{wins}")
        lines.append(f"decision threshold on the {method} pick (fitted on "
                     f"{rs[0]['thresholds_fitted_on']}, calibrated), hold-out accuracy: "
                     + "; ".join(cells) + " (seeds " + ", ".join(str(r["seed"]) for r in rs)
                     + ")")
    return lines


def summary(rows: list[dict], settings: str) -> str:
    lines = [f"settings: {settings}", ""]
    for name in sorted({r["dataset"] for r in rows}):
        mine = [r for r in rows if r["dataset"] == name and r.get("trial") is not None
                or r["dataset"] == name and r["method"] == "ensemble" and "auc" in r]
        seeds = sorted({r["seed"] for r in mine})
        lines += [f"### {name} (seeds {', '.join(map(str, seeds))}; median (range) over seeds)",
                  "", "| method | estimate | hold-out AUC | hold-out acc | drop (estimate - "
                  "hold-out AUC) | per-seed AUC 95% CI |", "|---|---|---|---|---|---|"]
        for method in (*TUNELAB_METHODS, *REFERENCES):
            rs = [r for r in mine if r["method"] == method]
            none = [r["seed"] for r in rows if r["dataset"] == name and r["method"] == method
                    and r.get("trial") is None and "auc" not in r]
            if none:
                lines.append(f"| {method} | no pick for seed(s) {', '.join(map(str, none))} "
                             "| | | | |")
            if not rs:
                continue
            cis = "; ".join(f"[{r['auc_ci'][0]:.3f}, {r['auc_ci'][1]:.3f}]" for r in rs
                            if "auc_ci" in r)
            lines.append(f"| {method} | {med_range([r['estimate'] for r in rs])} | "
                         f"{med_range([r['auc'] for r in rs])} | "
                         f"{med_range([r['acc'] for r in rs])} | "
                         f"{med_range([r['drop'] for r in rs])} | {cis} |")
        timed = [r for r in mine if r["method"] == "confirm_mean"]
        if timed:
            lines += ["", "confirmation time (s) per seed: " + ", ".join(
                f"{r['confirm_seconds']} of {r['confirm_budget']} reserved" for r in timed)
                + "; trials (all / by the early cut): " + ", ".join(
                f"{r['n_trials']}/{r['n_early']}" for r in timed)]
        folds = [r for r in mine if r["method"] == "confirm_cv"]
        if folds:
            lines.append(f"CV confirmation ({folds[0]['confirm_folds']} folds) time (s) per "
                         "seed: " + ", ".join(
                             f"{r['confirm_seconds']} of {r['confirm_budget']} reserved"
                             + ("" if r.get("confirmed") else " (nothing confirmed)")
                             for r in folds))
        counts = []
        for method, what in (("confirm_mean", "tunelab"), ("cv_from_start", "tunelab-cv"),
                             ("kt-hyperband", "kt-hyperband"), ("kt-random", "kt-random")):
            ns = [r["n_trials"] for r in rows if r["dataset"] == name and r["method"] == method
                  and "n_trials" in r]
            if ns:
                counts.append(f"{what} {', '.join(map(str, ns))}")
        if counts:
            lines.append("trials completed per study (per seed): " + "; ".join(counts))
        lines += default_line(mine)
        lines += threshold_lines(mine)
        lines.append("")
    return "\n".join(lines)


def run_child(argv: list[str] | None, name: str, seed: int, part: str, out: Path) -> list[dict]:
    """One study in a fresh interpreter: the same flags, one (dataset, seed, part)."""
    from fresh_process import run_in_fresh_process  # beside this script

    return run_in_fresh_process(__file__, argv, [name, str(seed), part],
                                out / f"part-{name}-{seed}-{part}.json")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: digits, seconds")
    parser.add_argument("--datasets", nargs="+", default=["breastmnist", "pneumoniamnist"],
                        choices=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[3, 4, 5],
                        help="targets on 3-5; defaults were to be chosen on 0-2")
    parser.add_argument("--seconds", type=float, default=600.0, help="wall budget per method")
    parser.add_argument("--n-trials", type=int, default=None)
    parser.add_argument("--max-epochs", type=int, default=None, help="default: tunelab's")
    parser.add_argument("--patience", type=int, default=None, help="default: tunelab's")
    parser.add_argument("--pruner", default=None, help="default: tunelab's (median)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="default: tunelab's (native for .npz)")
    parser.add_argument("--reserve", type=float, default=0.3)
    parser.add_argument("--confirm-top", type=int, default=3)
    parser.add_argument("--confirm-seeds", type=int, default=2)
    parser.add_argument("--confirm-folds", type=int, default=3,
                        help="confirm_cv: folds per candidate, in a reserve of its own "
                             "(0: not run)")
    parser.add_argument("--default", default="confirm_mean")
    parser.add_argument("--references", nargs="*", default=list(REFERENCES))
    parser.add_argument("--cv-folds", type=int, default=3,
                        help="cv_from_start: folds per trial, run where the validation split "
                             "has fewer than 50 images of its smallest class (0: never)")
    parser.add_argument("--parts", nargs="+", default=None,
                        choices=["tunelab", "tunelab-cv", *REFERENCES],
                        help="the studies to run (default: all that apply)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" /
                                             "selection_quality"))
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows --out/results.json holds for this budget and run "
                             "only the (dataset, seed, part) studies it lacks")
    parser.add_argument("--in-one-process", action="store_true",
                        help="run every study in this process (default: each study in a "
                             "fresh one, so no run pays for an earlier one's leaks)")
    parser.add_argument("--child", nargs=3, metavar=("DATASET", "SEED", "PART"),
                        help=argparse.SUPPRESS)  # one study, rows to --out/part-*.json
    args = parser.parse_args(argv)
    if args.quick:
        global N_BOOT
        N_BOOT = 50
        args.datasets, args.seeds, args.seconds, args.n_trials = ["digits"], [0], 30.0, 4
        args.max_epochs, args.patience, args.image_size, args.confirm_top = 2, 1, 8, 2
        args.confirm_seeds, args.references, args.pruner = 1, ["kt-hyperband"], "none"
        args.confirm_folds = 2
        args.reserve = 0.0  # every trial may be confirmed: the budget is trials here
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.child:
        name, seed, part = args.child[0], int(args.child[1]), args.child[2]
        with tempfile.TemporaryDirectory(prefix="tunelab-selq-") as tmp:
            rows = run_seed(name, seed, args, Path(tmp), parts=(part,))
        (out / f"part-{name}-{seed}-{part}.json").write_text(json.dumps(rows, indent=1))
        return None
    began = time.time()
    rows, earlier = earlier_rows(out, args.seconds) if args.resume else ([], 0.0)
    done = {(r["dataset"], r["seed"], part_of(r)) for r in rows}
    if rows:
        print(f"--resume: {len(rows)} rows of {len(done)} studies kept from "
              f"{out / 'results.json'} ({earlier / 60:.1f} min)", flush=True)

    def save(**more) -> None:
        (out / "results.json").write_text(json.dumps(
            {"rows": rows, "total_seconds": earlier + time.time() - began, **more}, indent=1))

    with tempfile.TemporaryDirectory(prefix="tunelab-selq-") as tmp:
        for name in args.datasets:
            parts = args.parts or (
                "tunelab", *(["tunelab-cv"] if args.cv_folds >= 2
                             and smallest_val_class(name, args) < 50 else []),
                *[r for r in REFERENCES if r in args.references])
            for seed in args.seeds:
                todo = tuple(p for p in parts if (name, seed, p) not in done)
                if args.in_one_process and todo:
                    rows += run_seed(name, seed, args, Path(tmp) / f"{name}-{seed}",
                                     parts=todo)
                elif todo:
                    for part in todo:
                        rows += run_child(argv, name, seed, part, out)
                        save()  # after every study: a stopped run keeps what it measured
                save()
    total = earlier + time.time() - began
    cfg = study_config(args.datasets[0], "tunelab", 0, out, args)
    settings = (f"{args.seconds:g} s per method; tunelab's defaults for the data "
                f"(config.lab_defaults) unless flagged: objective {cfg.objective.metric}, "
                f"model {cfg.model}, max_epochs {cfg.max_epochs}, patience "
                f"{cfg.early_stopping.patience}, pruner {cfg.pruner.kind} (warm-up "
                f"{cfg.pruner.n_warmup_steps} epochs), image size "
                f"{args.image_size or 'native'}, space {', '.join(cfg.space)}; confirm top "
                f"{args.confirm_top} x {args.confirm_seeds} seeds in {args.reserve:.0%} of the "
                f"budget (confirm_cv: x {args.confirm_folds} folds in a reserve of its own); "
                f"each study in a fresh process: {not args.in_one_process}; "
                f"total run time {total / 60:.1f} min")
    text = summary(rows, settings)
    (out / "summary.md").write_text(text)
    save(settings=settings)
    print(text)
    print(f"total run time {total:.0f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
