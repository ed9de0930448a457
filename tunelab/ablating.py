"""``tunelab ablate``: retrain a study's champion (or any trial) with one knob changed at a
time, every variant with the same seeds, and say what each knob does.

The variant logic, the seeds, the tables and the stated effects are ``search.ablation``'s
(pure functions); the training goes through the trial-retraining path (``retrain_variant``,
the one seam to it); the runs, figures and tables are logged by ``tracking.ablation_runs``
and drawn by ``tracking.ablation_plots``. This module only wires them, like
``tunelab.registering``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import textwrap
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunelab.config import DEFAULT_STORE, ConfigError, StudyConfig
from tunelab.registering import open_finished_study
from tunelab.text_table import table
from tunelab.wiring import load_data, study_selection, training_settings

#: The study's user attributes ``ablation:trial-<N>:<knob>`` keep each knob's table (with its
#: figure's path), so ``tunelab report`` includes them.
ATTR_PREFIX = "ablation:"


def retrain_variant(config: StudyConfig, data, record):
    """Train ``record`` (``.number``, ``.params``, ``.extra["seed"]``) again: the one call into
    the trial lifecycle, so moving ``retrain`` changes this line only."""
    from tunelab.registering import retrain

    return retrain(config, data, record)


@dataclass
class TrainedVariant:
    label: str
    knobs: list[str]
    params: dict[str, Any]
    seed: int
    run_id: str | None
    seconds: float


@dataclass
class Ablation:
    """What ``ablate`` did: the trial, the seeds, every training and each knob's table."""

    study: str
    trial: int
    why: str  # how the trial was picked
    seeds: list[int]
    epochs: int
    ablation_id: str
    trained: list[TrainedVariant] = field(default_factory=list)
    tables: list[Any] = field(default_factory=list)  # search.ablation.KnobTable, per knob
    output_dir: Path | None = None
    artifacts: list[str] = field(default_factory=list)  # on the study's parent run


def default_output_dir(config: StudyConfig, trial: int) -> Path:
    """``ablations/<study>/trial-<N>`` beside the journal (or under ./mlruns for a database)."""
    base = (DEFAULT_STORE if "://" in config.storage_url
            else Path(config.storage_url.removeprefix("journal:")).expanduser().parent)
    return (base / "ablations" / config.study_name / f"trial-{trial}").resolve()


def _pick_trial(opened, config: StudyConfig, trial: int | None, out):
    from tunelab.search.selection import record_from_trial

    study, metric = opened.study, config.objective.metric
    if trial is None:
        # the pick of `tunelab best` and `register`: the rule re-ranked by selection.method
        selection = study_selection(study, config)
        if selection.chosen is not None:
            return selection.chosen, "the champion: the trial the selection rule picks"
        if selection.best_by_objective is None:
            raise ConfigError(f"study {config.study_name!r} has no complete trial to ablate")
        record = selection.best_by_objective
        print(f"tunelab: no trial passes the selection rule ({selection.explanation()}); "
              f"ablating trial {record.number}, the best objective", file=out)
        return record, "the best objective (no trial passes the selection rule)"
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if trial not in trials:
        raise ConfigError(f"--trial: study {config.study_name!r} has no trial {trial} "
                          f"(trials 0..{max(trials, default=-1)})")
    frozen = trials[trial]
    if frozen.state.name != "COMPLETE" or not frozen.values:
        raise ConfigError(f"--trial: trial {trial} is {frozen.state.name.lower()}; only "
                          "complete trials can be ablated")
    return record_from_trial(frozen, metric), f"trial {trial}, as asked"


def _defaults(model_name: str, config: StudyConfig, n_classes: int) -> dict[str, Any]:
    """Base values of knobs the study did not search: the model's hyperparameter defaults
    and the training defaults."""
    from tunelab.models import resolve_hparams
    from tunelab.models.registry import default_loss
    from tunelab.models.training_keys import TRAINING_KEYS

    settings = dataclasses.asdict(training_settings(config))
    out = {k: settings[k] for k in TRAINING_KEYS if k in settings}
    out["class_weight"] = out.get("class_weight") or "none"
    out["loss"] = default_loss(n_classes)
    out.update(resolve_hparams(model_name))
    return out


def _check_variant(config: StudyConfig, data, variant) -> None:
    """Every variant builds on this data: a bad value fails before anything trains."""
    from tunelab.models import allowed_losses, check_model_input, resolve_hparams
    from tunelab.search.conditional import split_params

    name, model_params, train_params = split_params(variant.params, config.model)
    try:
        resolved = resolve_hparams(name, **model_params)
        check_model_input(name, data.input_shape, **resolved)
    except ValueError as err:
        raise ConfigError(f"variant {variant.label}: {err}") from None
    loss = train_params.get("loss")
    if loss is not None and loss not in allowed_losses(data.n_classes):
        raise ConfigError(f"variant {variant.label}: loss {loss!r} is not allowed with "
                          f"{data.n_classes} classes")
    lr = train_params.get("learning_rate")
    if lr is not None and not (isinstance(lr, (int, float)) and lr > 0):
        raise ConfigError(f"variant {variant.label}: learning_rate {lr!r} must be > 0")


def _effective(params, defaults, requests) -> dict[str, Any]:
    """The value every varied knob has in ``params``, defaults included, so each run shows
    what it trained with even where the study did not search the knob."""
    from tunelab.models.data.augment import AUGMENT_KEYS
    from tunelab.search import ablation as ab

    names = [n for r in requests
             for n in (AUGMENT_KEYS if r.name == ab.AUGMENTATION else (r.name,))]
    return {ab.param_key(params, n): ab.base_value(params, defaults, n)
            for n in names if n in defaults or ab.param_key(params, n) in params}


def ablate(knobs: list[str], study_name: str | None = None, storage: str | None = None, *,
           trial: int | None = None, n_seeds: int = 3, seeds: list[int] | None = None,
           epochs: int | None = None, early_stopping: bool = False,
           output_dir: str | Path | None = None, out=None) -> Ablation:
    """Retrain the champion (or ``trial``) once per variant of each knob and seed, log every
    training as an ablation run, and return each knob's table (``search.ablation``)."""
    from tunelab.search import ablation as ab
    from tunelab.search.conditional import split_params

    out = out or sys.stdout
    if not knobs:
        raise ConfigError(f"give at least one knob: {', '.join(ab.NAMED_KNOBS)}, or NAME=V1,V2")
    opened = open_finished_study(study_name, storage)
    config = opened.config
    record, why = _pick_trial(opened, config, trial, out)
    try:
        requests = [ab.parse_knob(k) for k in knobs]
        seed0 = record.extra.get("seed")
        seed0 = config.seed + record.number if seed0 is None else int(seed0)
        seed_list = [int(s) for s in seeds] if seeds else ab.ablation_seeds(seed0, n_seeds)
    except ab.AblationError as err:
        raise ConfigError(str(err)) from None
    if epochs is not None and epochs < 1:
        raise ConfigError(f"--epochs: {epochs} must be >= 1")
    data = load_data(config)
    model_name = split_params(record.params, config.model)[0]
    defaults = _defaults(model_name, config, data.n_classes)
    per_knob = []
    try:
        for request in requests:
            per_knob.append((request, ab.variants_for(request, record.params, defaults,
                                                      config.search_space)))
    except ab.AblationError as err:
        raise ConfigError(str(err)) from None
    unique: dict[str, tuple[Any, list[str]]] = {}  # a variant shared by knobs trains once
    for request, variants in per_knob:
        for v in variants:
            _check_variant(config, data, v)
            unique.setdefault(v.key, (v, []))[1].append(request.title)
    # every variant trains for the same epochs, one trial per model (no folds), so the curves
    # compare epoch by epoch; the study's early stopping only with --early-stopping
    train_config = dataclasses.replace(
        config, max_epochs=epochs or config.max_epochs,
        early_stopping=dataclasses.replace(config.early_stopping, enabled=early_stopping),
        dataset=dataclasses.replace(config.dataset, cv_folds=1))
    metric, direction = config.objective.metric, config.direction
    result = Ablation(config.study_name, record.number, why, seed_list, train_config.max_epochs,
                      f"t{record.number}-{time.strftime('%Y%m%dT%H%M%S')}-"
                      f"{uuid.uuid4().hex[:6]}")
    tracker = None
    if config.tracking:
        from tunelab.tracking.ablation_runs import AblationTracker

        tracker = AblationTracker(opened.tracking_uri, config.study_name,
                                  ablation_id=result.ablation_id, trial=record.number)
    total = len(unique) * len(seed_list)
    print(f"ablating trial {record.number} of study {config.study_name!r} ({why}): "
          f"{len(requests)} knob(s), {len(unique)} distinct variant(s) x {len(seed_list)} "
          f"seed(s) {seed_list} = {total} training(s) of {train_config.max_epochs} epochs"
          + ("" if early_stopping else " (no early stopping)"), file=out, flush=True)
    runs: dict[str, list[Any]] = {}
    run_ids: dict[tuple[str, int], str | None] = {}
    done = 0
    for key, (variant, titles) in unique.items():
        for seed in seed_list:
            started = time.time()
            rec = dataclasses.replace(record, params=dict(variant.params),
                                      extra={**dict(record.extra), "seed": seed})
            model, meta = retrain_variant(train_config, data, rec)
            del model
            history = meta["history"]
            seed_run = ab.seed_run(seed, history, metric, direction)
            run_id = None
            if tracker is not None:
                logged = {**_effective(variant.params, defaults, requests), **variant.params}
                run_id = tracker.log_seed_run(label=variant.label, knobs=titles, seed=seed,
                                              is_base=variant.is_base, params=logged,
                                              history=history, summary=seed_run.summary)
            seed_run = dataclasses.replace(seed_run, run_id=run_id)
            runs.setdefault(key, []).append(seed_run)
            run_ids[(key, seed)] = run_id
            seconds = time.time() - started
            result.trained.append(TrainedVariant(variant.label, list(titles),
                                                 dict(variant.params), seed, run_id, seconds))
            done += 1
            best = seed_run.summary.get(f"best_{metric}")
            print(f"  [{done}/{total}] {variant.label}, seed {seed}: best {metric} "
                  + ("-" if best is None else f"{best:.4f}") + f" ({seconds:.1f} s)",
                  file=out, flush=True)

    from tunelab.tracking.ablation_plots import ablation_figure

    folder = Path(output_dir) if output_dir else default_output_dir(config, record.number)
    folder.mkdir(parents=True, exist_ok=True)
    result.output_dir = folder
    for request, variants in per_knob:
        results = [(v, runs[v.key]) for v in variants]
        knob_table = ab.knob_table(request.title, results, metric, direction)
        result.tables.append(knob_table)
        statement = knob_table.statement()
        text = (f"ablation of {request.title} around trial {record.number} of study "
                f"{config.study_name!r} ({why}); seeds {seed_list}; "
                f"{train_config.max_epochs} epochs"
                + ("" if early_stopping else ", no early stopping") + "\n\n"
                + table(knob_table.header(), knob_table.cells()) + "\n\n" + statement + "\n")
        slug = "".join(c if c.isalnum() or c in "-_.=," else "_" for c in request.title)
        figure = ablation_figure(
            ab.figure_series(results), header=knob_table.header(), cells=knob_table.cells(),
            note="\n".join(line for clause in knob_table.statement_lines()
                            for line in textwrap.wrap(clause, 170)),
            title=f"{config.study_name}: {request.title} around trial {record.number} "
                  f"(seeds {', '.join(map(str, seed_list))})")
        figure.savefig(folder / f"{slug}.png", dpi=110)
        (folder / f"{slug}.txt").write_text(text)
        data_out = {**knob_table.to_dict(), "trial": record.number, "why": why,
                    "epochs": train_config.max_epochs, "early_stopping": early_stopping,
                    "ablation_id": result.ablation_id, "seeds": seed_list,
                    "figure": str(folder / f"{slug}.png")}
        (folder / f"{slug}.json").write_text(json.dumps(data_out, indent=2, default=str))
        if tracker is not None:
            for v, row in zip(variants, knob_table.rows, strict=True):
                for seed, values in row.per_seed.items():
                    tracker.log_knob_metrics(run_ids.get((v.key, seed)), request.title, {
                        "epoch_reaching_base_accuracy": values["epoch_reaching_base_accuracy"],
                        "effect": None if v.is_base else values["effect"]})
            where = tracker.log_knob(request.title, figure=figure, text=text, data=data_out)
            if where:
                result.artifacts.append(where)
        else:
            from tunelab.tracking.plots import close

            close(figure)
        # the study keeps every knob's table: a study report includes them when it is drawn
        opened.study.set_user_attr(f"{ATTR_PREFIX}trial-{record.number}:{request.title}",
                                   data_out)
        print(f"\n{text}", file=out, end="")
    report = ab.report_section(result.tables, record.number)
    (folder / "report.md").write_text(report)
    if tracker is not None:
        tracker.log_report(report)
    print(f"\nfigures, tables and report.md in {folder}"
          + (f"; on the study's MLflow parent run under ablation/trial-{record.number}/"
             if result.artifacts else ""), file=out)
    return result
