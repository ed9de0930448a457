"""Confirmation: the study's top candidates measured again before one is chosen.

``tune``'s parent process calls ``confirm_candidates`` once the search has stopped (never a
hand-started worker), inside the study's budget. Each candidate is retrained through the
trial lifecycle's ``retrain`` with fresh seeds (``kind="seeds"``, same train / validation
split) or once per fold of a k-fold split of train + validation (``kind="cv"``). Every
finished run goes into the Optuna storage at once as a *study* user attribute
``confirmations:<trial>`` (a list of ``{kind, index, seed, score, ...}``): a killed
confirmation resumes where it stopped, and the sampler never learns from these runs (they are
not trials). ``search/selection_methods.py`` ranks by them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna

from .selection import ObjectiveRule, records_from_study, select
from .selection_methods import Confirmation, top_candidates, trusted_pool
from .summary import summarize
from .trial import retrain

CONFIRM_SEED_STRIDE = 100_003  # fresh seeds, far from the search's seed + N


def confirmation_key(number: int) -> str:
    return f"confirmations:{number}"


def stored_confirmations(study: optuna.Study) -> dict[int, list[dict[str, Any]]]:
    attrs = study.user_attrs
    prefix = confirmation_key(0)[:-1]
    return {int(k[len(prefix):]): list(v) for k, v in attrs.items() if k.startswith(prefix)}


def confirm_seed(base_seed: int, number: int, index: int) -> int:
    return base_seed + number + CONFIRM_SEED_STRIDE * (index + 1)


def confirm_candidates(study: optuna.Study, *, rule: ObjectiveRule, data: Any,
                       model: str | Sequence[str], training: Any, seed: int, top: int,
                       kind: str = "seeds", runs: int = 2, deadline: float | None = None,
                       feature_cache_dir: str | None = None,
                       on_run: Callable[[Any, Mapping[str, Any], Mapping], None] | None = None,
                       log: Callable[[str], None] = print,
                       records: Sequence[Any] | None = None) -> dict[int, Confirmation]:
    """Retrain the ``top`` eligible trials ``runs`` times each (seeds or folds); skip runs
    already stored; stop starting runs at ``deadline``. ``on_run(record, entry, history)``
    is told every finished run (the MLflow hook). ``records``: choose among these trials
    only (the benchmark's equal-wall-time cut); default every complete trial. Returns the
    confirmations."""
    if records is None:
        records = records_from_study(study, rule.metric)
    candidates = top_candidates(trusted_pool(select(records, rule)), rule, top)
    stored = stored_confirmations(study)
    folds = None
    out: dict[int, Confirmation] = {}
    for record in candidates:
        # runs of another kind (a study confirmed again after `confirm_kind` changed) stay
        # stored; the ranking uses the latest kind (selection_methods)
        others = [e for e in stored.get(record.number, []) if e.get("kind") != kind]
        done = [e for e in stored.get(record.number, []) if e.get("kind") == kind]
        for index in range(runs):
            if any(e.get("index") == index for e in done):
                continue
            if deadline is not None and time.time() >= deadline:
                log(f"tunelab: confirmation stopped at the study's deadline; trial "
                    f"{record.number} has {len(done)} of {runs} runs")
                break
            started = time.time()
            trial_seed = int(record.extra.get("seed") or seed + record.number)
            if kind == "seeds":
                run_seed, fit_data = confirm_seed(seed, record.number, index), data
            else:
                if folds is None:
                    from tunelab.models.data.folds import k_folds

                    folds = [f.data for f in k_folds(data, runs, seed)]
                run_seed, fit_data = trial_seed, folds[index]
            _, meta = retrain(record.params, number=record.number, seed=run_seed, model=model,
                              data=fit_data, training=training,
                              feature_cache_dir=feature_cache_dir if kind == "seeds" else None)
            summary = summarize(meta["history"], rule.metric, rule.direction)
            entry = {"kind": kind, "index": index, "seed": run_seed,
                     "score": float(rule.value(summary)),
                     "metric": float(summary[f"best_{rule.metric}"]),
                     "best_epoch": int(summary["best_epoch"]),
                     "seconds": round(time.time() - started, 2)}
            done.append(entry)
            study.set_user_attr(confirmation_key(record.number), others + done)  # resumable
            log(f"tunelab: confirmation of trial {record.number}, "
                f"{'seed' if kind == 'seeds' else 'fold'} {index + 1}/{runs}: "
                f"{rule.metric} {entry['metric']:.4f} (search: {record.value:.4f})")
            if on_run is not None:
                on_run(record, entry, meta["history"])
        scores = tuple(e["score"] for e in done)
        if scores:
            out[record.number] = Confirmation(record.number, scores, kind)
    return out
