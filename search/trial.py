"""One trial's life, written once: plan, seed, build, train, report, summarize, rule, keep,
record, finish.

Every path that trains a configuration goes through here: the Optuna objective
(``objective.py``), the KerasTuner engine (``keras_tuner_engine.py``), ``tunelab register``'s
retraining and ``tunelab continue`` (``retrain`` and ``continue_trial`` below). What watches a
trial (the MLflow run, the terminal's events in ``progress.py``, later ownership and
heartbeats) attaches as a ``TrialHooks`` object and is told each step; it never reopens the
trial.

Everything a trial learns also goes into the Optuna storage as user attributes (history,
summary, state, reason, seed, every hyperparameter), so nothing is lost when tracking fails.
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from tunelab.models import timeline
from tunelab.models.training_keys import TRAINING_KEYS

from .conditional import split_params
from .selection import ObjectiveRule, is_chance_level, record_from_summary
from .summary import summarize


class TrialFailed(Exception):
    """A trial that failed for a reason of its own; the study goes on."""


class TrialDiverged(TrialFailed):
    pass


class BudgetReached(TrialFailed):
    pass


# -- what one configuration trains -------------------------------------------------------
@dataclass(frozen=True)
class TrialPlan:
    """A configuration made concrete: the model, its loss (and so its head), the training
    settings with the trial's training knobs applied, and the seed."""

    params: dict[str, Any]  # every hyperparameter, fixed ones included
    model_name: str
    model_params: dict[str, Any]
    loss: str
    settings: Any  # models.training.TrainingSettings, with the seed
    seed: int
    n_classes: int

    @property
    def head(self):
        from tunelab.models import Head

        return Head(self.loss, self.n_classes)

    def build(self, input_shape: Sequence[int]):
        """A fresh, uncompiled model of this plan."""
        from tunelab.models import build_model

        return build_model(self.model_name, input_shape, self.n_classes, loss=self.loss,
                           **self.model_params)


def plan_trial(params: Mapping[str, Any], *, model: str | Sequence[str], n_classes: int,
               training: Any, seed: int) -> TrialPlan:
    """``params`` (a trial's hyperparameters) -> the plan. ``model`` is the study's model or
    family list (a family search names the trial's family in ``params``). The loss defaults
    by the one rule of ``models.registry.default_loss``."""
    from tunelab.models.registry import default_loss

    params = dict(params)
    model_name, model_params, train_params = split_params(params, model, TRAINING_KEYS)
    loss = train_params.get("loss") or default_loss(n_classes)
    names = {f.name for f in dataclasses.fields(training)}
    settings = dataclasses.replace(training, **{k: v for k, v in train_params.items()
                                                if k in names and k != "loss"}, seed=seed)
    return TrialPlan(params, model_name, model_params, loss, settings, seed, n_classes)


# -- who watches a trial -----------------------------------------------------------------
@dataclass
class TrialEnd:
    """How a trial ended, for the hooks."""

    state: str  # COMPLETE, PRUNED, FAILED or KILLED (interrupted)
    reason: str = ""
    value: float | None = None
    detail: str = ""  # one line for the terminal
    summary: dict[str, float] | None = None
    history: dict[str, list[float]] = field(default_factory=dict)
    y_true: Any = None
    y_pred: Any = None
    out_of_fold: Any = None  # crossval.OutOfFold of a cross-validated trial
    model_summary: str | None = None
    artifacts_dir: str | None = None
    error: BaseException | None = None


class TrialHooks:
    """Observers of a trial's life. ``trial_started`` may return user attributes to record
    on the trial (a tracking hook returns its run id)."""

    def trial_started(self, trial: optuna.Trial, plan: TrialPlan) -> Mapping[str, Any] | None:
        return None

    def epoch_ended(self, trial: optuna.Trial, epoch: int, logs: Mapping[str, float]) -> None:
        pass

    def trial_ended(self, trial: optuna.Trial, plan: TrialPlan, end: TrialEnd) -> None:
        pass


#: seconds a trial's end waits for its run id from the writer process (tracking.remote)
RUN_ID_WAIT = 30.0


class TrackingHooks(TrialHooks):
    """The trial's MLflow run (any tracker with ``trial_run(...)``, ``tunelab.tracking``'s
    ``StudyTracker``): opened at the start, one metrics batch per epoch, finished at the end."""

    def __init__(self, tracker: Any, *, config: Mapping[str, Any], data_info: Mapping[str, Any],
                 data: Any = None, extra_tags: Callable[[optuna.Trial], Mapping] | None = None):
        self.tracker, self.config, self.data_info, self.data = tracker, config, data_info, data
        self.extra_tags = extra_tags
        self.runs: dict[int, Any] = {}
        self.unrecorded: set[int] = set()  # trials whose run id has not come back yet

    def trial_started(self, trial, plan):
        tags = {"optuna.trial_number": trial.number,
                **(self.extra_tags(trial) if self.extra_tags else {})}
        run = self.tracker.trial_run(trial.number, {"model": plan.model_name, "loss": plan.loss,
                                                    **plan.params},
                                     seed=plan.seed, config=self.config,
                                     data_info=self.data_info, extra_tags=tags)
        self.runs[trial.number] = run
        if self.data is not None:
            _log_augmented_samples(run, plan.settings, self.data, plan.seed)
        if run.run_id:
            return {"mlflow_run_id": run.run_id}
        # a worker's run is created by its writer process (tracking.remote): the id is
        # recorded once it comes back, at an epoch's end, or at the trial's end
        if hasattr(run, "wait_run_id"):
            self.unrecorded.add(trial.number)
        return None

    def _record_run_id(self, trial, run, timeout: float = 0) -> None:
        if trial.number not in self.unrecorded:
            return
        run_id = run.wait_run_id(timeout) if timeout else run.run_id
        if run_id:
            trial.set_user_attr("mlflow_run_id", run_id)
            self.unrecorded.discard(trial.number)

    def epoch_ended(self, trial, epoch, logs):
        run = self.runs.get(trial.number)
        if run is not None:
            self._record_run_id(trial, run)
            run.epoch_ended(epoch, logs)

    def trial_ended(self, trial, plan, end):
        run = self.runs.pop(trial.number, None)
        if run is None:
            return
        # the last chance (a finished trial's attributes are fixed): what `best`, `register`
        # and the confirmation runs link to; the writer created the run long before, unless
        # it is far behind (a loaded machine) or the store is down
        self._record_run_id(trial, run, timeout=RUN_ID_WAIT)
        self.unrecorded.discard(trial.number)
        common = {"class_names": self.data.class_names if self.data is not None else None,
                  "model_summary": end.model_summary, "artifacts_dir": end.artifacts_dir}
        if end.state == "COMPLETE":
            oof = end.out_of_fold
            run.finish(state="COMPLETE", summary=end.summary, history=end.history,
                       y_true=end.y_true, y_pred=end.y_pred, **common,
                       **({"arrays": {"out_of_fold.npz": oof.arrays()}} if oof is not None
                          else {}))
        elif end.state == "PRUNED":
            run.finish(state="PRUNED", history=end.history, reason=end.reason,
                       summary=end.summary, **common)
        else:
            run.finish(state=end.state, history=end.history or None, reason=end.reason,
                       **common, **({"traceback": format_error(end.error)}
                                    if end.error is not None else {}))


def _log_augmented_samples(run: Any, settings: Any, data: Any, seed: int) -> None:
    """Log ``augmentation.png`` to the trial's run (originals in the first column)."""
    from tunelab.models.data.augment import augmented_samples

    log = getattr(run, "log_image_grid", None)
    samples = None if log is None else augmented_samples(data, settings.augmentation, seed)
    if samples is not None:
        images, labels = samples
        title = ", ".join(f"{k}={v}" for k, v in vars(settings.augmentation).items() if v)
        log(images, labels, "augmentation.png", f"augmented training samples ({title})")


# -- the lifecycle -----------------------------------------------------------------------
@dataclass
class TrialOutcome:
    value: float
    objectives: float | tuple[float, float]
    summary: dict[str, float]
    model: Any
    plan: TrialPlan


@dataclass
class TrialLifecycle:
    """Runs one trial of a study from its hyperparameters to its recorded end."""

    data: Any  # models.data.Dataset
    model: str | Sequence[str]  # the study's model, or its families
    training: Any  # models.training.TrainingSettings without the trial's knobs
    metric: str
    direction: str
    seed: int = 0  # trial N trains with seed + N
    rule: ObjectiveRule | None = None  # objective kind and gap limit; None: the raw metric
    hooks: list[TrialHooks] = field(default_factory=list)
    checkpoints: Any = None  # search.top_checkpoints.CheckpointStore; None: keep no weights
    feature_cache_dir: str | None = None  # frozen-backbone features shared by trials (disk)
    cv_folds: int = 1  # > 1: every trial is k-fold cross-validation (crossval.py)
    tensorboard: bool = False
    stop_check: Callable[[], None] | None = None  # raises to stop; called after every batch
    #: a context manager factory the trial's work runs inside: the shell's, where a stop
    #: signal waits for ``stop_check`` instead of landing inside TensorFlow
    stop_guard: Callable[[], Any] | None = None

    def __post_init__(self):
        self.rule = self.rule or ObjectiveRule(self.metric, self.direction)
        self.data_info = {"fingerprint": self.data.fingerprint(),
                          "class_names": list(self.data.class_names),
                          "class_counts": self.data.class_counts(),
                          "class_index": self.data.class_index,
                          "input_shape": list(self.data.input_shape)}

    def plan(self, number: int, params: Mapping[str, Any]) -> TrialPlan:
        return plan_trial(params, model=self.model, n_classes=self.data.n_classes,
                          training=self.training, seed=self.seed + number)

    def run(self, trial: optuna.Trial, params: Mapping[str, Any], *, prune: bool = True,
            model: Any = None, callbacks: Sequence[Any] = (), initial_epoch: int = 0,
            max_epochs: int | None = None) -> TrialOutcome:
        """Train ``params`` as ``trial``; raises ``optuna.TrialPruned``, ``TrialDiverged`` or
        the trial's own error after recording it. ``model``: already built (and seeded) by
        the caller (KerasTuner's hypermodel); ``prune``: report epochs and stop when the
        study's pruner says so (otherwise only report). Runs inside ``stop_guard``: a stop
        signal is raised by ``stop_check`` at a batch's end, never inside TensorFlow; one
        that comes after the last batch lets the trial record its end first."""
        guard = self.stop_guard() if self.stop_guard is not None else nullcontext()
        with guard:
            return self._run(trial, params, prune=prune, model=model, callbacks=callbacks,
                             initial_epoch=initial_epoch, max_epochs=max_epochs)

    def _run(self, trial: optuna.Trial, params: Mapping[str, Any], *, prune: bool,
             model: Any, callbacks: Sequence[Any], initial_epoch: int,
             max_epochs: int | None) -> TrialOutcome:
        from tunelab.models.training import model_summary, predict_proba, reset_session

        plan = self.plan(trial.number, params)
        if max_epochs is not None:
            plan = dataclasses.replace(plan, settings=dataclasses.replace(
                plan.settings, max_epochs=max_epochs))
        if model is None:
            reset_session(plan.seed)
            model = plan.build(self.data.input_shape)
            timeline.mark("model_built")
        head = plan.head
        n_params = int(model.count_params())
        # every hyperparameter, fixed ones included (trial.params holds only the suggested):
        # what a retrain or a synced run needs to rebuild exactly this model
        for key, value in {"seed": plan.seed, "hparams": plan.params, "model": plan.model_name,
                           "n_params": n_params}.items():
            trial.set_user_attr(key, value)
        history: dict[str, list[float]] = {}

        def on_epoch(epoch: int, logs: dict[str, float]) -> None:
            for key, value in logs.items():
                history.setdefault(key, []).append(value)
            for hook in self.hooks:
                hook.epoch_ended(trial, epoch, logs)
            if self.rule.multi or self.metric not in logs:  # Optuna cannot prune those
                return
            trial.report(float(logs[self.metric]), epoch)
            if prune and trial.should_prune():
                raise optuna.TrialPruned(f"Trial was pruned at epoch {epoch}.")

        tb_dir = tempfile.mkdtemp(prefix=f"tunelab-tb-{trial.number}-") if self.tensorboard \
            else None
        extra_callbacks = list(callbacks)
        if self.stop_check is not None:
            from tunelab.models.training import BatchCheck

            extra_callbacks.append(BatchCheck(self.stop_check))
        if tb_dir:
            from tunelab.models.training import tensorboard_callback

            extra_callbacks.append(tensorboard_callback(tb_dir))
        common = {"model_summary": model_summary(model), "artifacts_dir": tb_dir}
        trial.set_user_attr("model_summary", common["model_summary"])  # for `tunelab sync`
        started = time.time()

        def end(state: str, **details: Any) -> None:
            self._record(trial, details.get("history", history), state=state,
                         started=started, reason=details.get("reason", ""),
                         summary=details.get("summary"))
            finished = TrialEnd(state=state, **common, **details)
            for hook in self.hooks:
                hook.trial_ended(trial, plan, finished)

        try:
            # inside the try: an interrupt that lands while a hook opens the trial's MLflow
            # run still ends it (KILLED), instead of leaving it RUNNING
            for hook in self.hooks:
                for key, value in (hook.trial_started(trial, plan) or {}).items():
                    trial.set_user_attr(key, value)
            if self.cv_folds > 1:
                from .crossval import train_folds

                result = train_folds(
                    trial, self.data, self.cv_folds, head=head, settings=plan.settings,
                    build=lambda: plan.build(self.data.input_shape), metric=self.metric,
                    direction=self.direction, seed=plan.seed, fold_seed=self.seed,
                    callbacks=extra_callbacks, on_epoch=on_epoch,
                    feature_cache_dir=self.feature_cache_dir)
            else:
                from tunelab.models.transfer import train_model

                result = train_model(model, head, self.data, plan.settings,
                                     callbacks=extra_callbacks, on_epoch=on_epoch,
                                     feature_cache_dir=self.feature_cache_dir,
                                     initial_epoch=initial_epoch)
        except optuna.TrialPruned:
            reason = f"pruned at epoch {len(history.get('loss', []))}"
            end("PRUNED", reason=reason, summary=self._summary(history), history=history)
            raise
        except BaseException as err:
            state = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
            if state == "FAILED":  # the terminal gets one line; the traceback is kept here
                trial.set_user_attr("traceback", format_error(err))
            end(state, reason=f"{type(err).__name__}: {err}".rstrip(": "), history=history,
                error=err)
            raise
        if result.diverged:
            end("FAILED", reason=result.reason, history=history)
            raise TrialDiverged(result.reason)
        if result.extra:  # transfer models: feature cache hits, frozen epochs, unfrozen layers
            trial.set_user_attr("transfer", dict(result.extra))
        cv = self.cv_folds > 1  # summary: means over folds, fold std
        summary = result.summary if cv else summarize(result.history, self.metric,
                                                      self.direction)
        summary["n_params"] = n_params
        summary["train_seconds"] = time.time() - started
        summary["process_rss_mb"] = current_rss_mb()
        summary["process_peak_rss_mb"] = _max_rss_mb()
        y_true, y_pred = (result.y_true, result.y_pred) if cv else (  # out-of-fold with cv
            self.data.val.y, predict_proba(model, head, self.data.val.x).argmax(axis=1))
        # a constant guess scores the majority share: such a trial is flagged, never picked
        counts = np.bincount(np.asarray(y_true).astype(int), minlength=self.data.n_classes)
        summary["majority_share"] = float(counts.max() / max(1, counts.sum()))
        summary["n_classes"] = float(self.data.n_classes)
        # the validation confusion counts: `tunelab sync` draws confusion_matrix.png from them
        trial.set_user_attr("val_confusion", confusion_counts(y_true, y_pred,
                                                              self.data.n_classes))
        value = self.rule.value(summary)
        summary["objective"] = value
        gap_limit = self.rule.constraint(summary)
        if gap_limit is not None:
            trial.set_constraint("gap", gap_limit)  # > 0: infeasible, samplers avoid it
        oof = result.out_of_fold if cv else None
        self._checkpoint(trial, plan, model, value, summary, result.history,
                         {} if gap_limit is None else {"gap": gap_limit}, oof)
        objectives = self.rule.objectives(summary)  # (metric, overfit gap) when multi-objective
        detail = ((f"gap {objectives[1]:.4f}, " if self.rule.multi else "")
                  + f"best epoch {int(summary['best_epoch'])}/{int(summary['epochs_trained'])}"
                  + (", CHANCE LEVEL: no better than the majority class, never picked"
                     if is_chance_level(summary) else ""))
        end("COMPLETE", value=value, summary=summary, history=result.history, y_true=y_true,
            y_pred=y_pred, out_of_fold=oof, detail=detail)
        return TrialOutcome(value, objectives, summary, model, plan)

    def _checkpoint(self, trial, plan: TrialPlan, model, value, summary, history,
                    constraints, out_of_fold=None) -> None:
        """Keep the weights if the trial ranks among the top ones; never fail the trial.
        A cross-validated trial has no single model (`tunelab register` retrains it): its
        out-of-fold predictions are kept instead, for the retrained model's calibration."""
        if self.checkpoints is None:
            return
        record = record_from_summary(trial.number, value, summary, self.metric,
                                     constraints=constraints)
        if self.cv_folds > 1:
            if out_of_fold is None:
                return
            try:
                path = self.checkpoints.save_out_of_fold(trial.study, record, out_of_fold)
            except Exception as err:  # a full disk must not lose the trial's results
                print(f"tunelab: trial {trial.number}: out-of-fold predictions not saved "
                      f"({type(err).__name__}: {err}); `tunelab register` will retrain its "
                      "folds to get them", file=sys.stderr)
                return
            if path is not None:
                trial.set_user_attr("out_of_fold", str(path))
            return
        meta = {"model": plan.model_name, "loss": plan.loss, "params": plan.params,
                "seed": plan.seed, "input_shape": list(self.data.input_shape),
                "class_names": list(self.data.class_names),
                "data_fingerprint": self.data_info["fingerprint"], "summary": summary,
                "history": history, "epochs_trained": len(history.get("loss", []))}
        try:
            path = self.checkpoints.save(trial.study, record, model, meta)
        except Exception as err:  # a full disk must not lose the trial's results
            print(f"tunelab: trial {trial.number}: checkpoint not saved ({type(err).__name__}: "
                  f"{err}); `tunelab register` will retrain it if needed", file=sys.stderr)
            return
        if path is not None:
            trial.set_user_attr("checkpoint", str(path))

    def _summary(self, history: Mapping[str, list[float]]) -> dict[str, float] | None:
        try:
            return summarize(history, self.metric, self.direction)
        except (KeyError, ValueError):
            return None

    def _record(self, trial: optuna.Trial, history: Mapping[str, list[float]], *, state: str,
                started: float, reason: str = "", summary: Mapping[str, float] | None = None,
                ) -> None:
        trial.set_user_attr("history", {k: [round(v, 6) for v in vs]
                                        for k, vs in history.items()})
        trial.set_user_attr("summary", dict(summary or self._summary(dict(history)) or {}))
        trial.set_user_attr("state", "FAILED" if state == "KILLED" else state)
        trial.set_user_attr("train_seconds", round(time.time() - started, 3))
        if reason:
            trial.set_user_attr("reason", reason)


def format_error(err: BaseException) -> str:
    """A failed trial's traceback, for its MLflow run and its Optuna attributes."""
    import traceback

    return "".join(traceback.format_exception(type(err), err, err.__traceback__))[-20000:]


def confusion_counts(y_true, y_pred, n_classes: int) -> list[list[int]]:
    """counts[true][predicted], as plain lists (a user attribute is JSON)."""
    import numpy as np

    pairs = np.asarray(y_true, dtype="int64") * n_classes + np.asarray(y_pred, dtype="int64")
    counts = np.bincount(pairs, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes).tolist()


def _max_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 1024)


def current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


# -- the same configuration again, outside a study's search ------------------------------
def retrain(params: Mapping[str, Any], *, number: int, seed: int, model: str | Sequence[str],
            data: Any, training: Any, pooled_epochs: int | None = None,
            feature_cache_dir: str | None = None):
    """Train a trial's configuration again with its seed: ``tunelab register`` (no kept
    checkpoint) and later re-evaluations. ``pooled_epochs``: a cross-validated trial has no
    single model; train on the whole train + validation pool, without early stopping, for
    that many epochs (the folds' mean best epoch). Returns ``(model, meta)``."""
    from tunelab.models.data.folds import pool_of
    from tunelab.models.training import reset_session
    from tunelab.models.transfer import train_model

    plan = plan_trial(params, model=model, n_classes=data.n_classes, training=training,
                      seed=seed)
    reset_session(plan.seed)
    built = plan.build(data.input_shape)
    fit_data, settings = data, plan.settings
    if pooled_epochs is not None:
        settings = dataclasses.replace(settings, early_stopping=False,
                                       max_epochs=max(1, int(pooled_epochs)))
        fit_data = dataclasses.replace(data, train=pool_of(data), test=None)
    result = train_model(built, plan.head, fit_data, settings,
                         feature_cache_dir=feature_cache_dir)
    meta = {"model": plan.model_name, "loss": plan.loss, "params": dict(plan.params),
            "seed": plan.seed, "input_shape": list(data.input_shape),
            "class_names": list(data.class_names), "data_fingerprint": data.fingerprint(),
            "history": result.history, "epochs_trained": result.epochs_trained,
            "trial": number,
            "trained_on": "train+validation" if pooled_epochs is not None else "train"}
    return built, meta


def out_of_fold(params: Mapping[str, Any], *, seed: int, fold_seed: int, n_folds: int,
                model: str | Sequence[str], data: Any, training: Any,
                metric: str = "val_accuracy", direction: str = "maximize",
                feature_cache_dir: str | None = None):
    """A cross-validated trial's folds trained again (same folds, same seeds as in the
    study: ``seed + fold``): its out-of-fold predictions (``crossval.OutOfFold``) when the
    study did not keep them. Raises ``TrialDiverged`` if a fold diverges."""
    from .crossval import train_folds

    plan = plan_trial(params, model=model, n_classes=data.n_classes, training=training,
                      seed=seed)
    result = train_folds(None, data, n_folds, build=lambda: plan.build(data.input_shape),
                         head=plan.head, settings=plan.settings, metric=metric,
                         direction=direction, seed=plan.seed, fold_seed=fold_seed,
                         feature_cache_dir=feature_cache_dir)
    if result.diverged:
        raise TrialDiverged(result.reason)
    return result.out_of_fold


def continue_trial(model: Any, meta: Mapping[str, Any], *, data: Any, training: Any,
                   epochs: int, metric: str, direction: str,
                   on_epoch: Callable[[int, dict[str, float]], None] | None = None,
                   feature_cache_dir: str | None = None):
    """Train a checkpointed trial ``epochs`` more epochs with its own training plan (a
    transfer model stays in its phase: frozen, or fine-tuning at its reduced rate).
    Returns ``(history of all epochs, summary, epochs trained now)``."""
    from tunelab.models.transfer import train_model

    plan = plan_trial(meta.get("params") or {}, model=meta["model"],
                      n_classes=data.n_classes, training=training,
                      seed=int(meta.get("seed") or 0))
    if meta.get("loss"):
        plan = dataclasses.replace(plan, loss=meta["loss"])
    settings = dataclasses.replace(plan.settings, max_epochs=epochs)
    done = int(meta.get("epochs_trained") or 0)
    result = train_model(model, plan.head, data, settings, on_epoch=on_epoch,
                         initial_epoch=done, feature_cache_dir=feature_cache_dir)
    history = {k: list((meta.get("history") or {}).get(k, [])) + v
               for k, v in result.history.items()}
    return history, summarize(history, metric, direction), result.epochs_trained
