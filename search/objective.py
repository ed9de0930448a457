"""The objective: one trial = suggest hyperparameters, build, train, report, record.

It joins the rooms through plain interfaces: ``tunelab.models`` for Keras, a tracker (any
object with ``trial_run(...)``; the MLflow one lives in ``tunelab.tracking``) and a progress
printer. Every trial's history and summary also go into the Optuna storage as user
attributes, so nothing is lost when tracking fails.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import optuna
from optuna_integration import KerasPruningCallback

from tunelab.models.data import Dataset
from tunelab.models.data.augment import augmented_samples
from tunelab.models.training import TrainingSettings
from tunelab.models.training_keys import TRAINING_KEYS

from .conditional import split_params
from .crossval import CrossValResult, train_folds
from .progress import Progress
from .selection import ObjectiveRule, record_from_summary
from .space import SearchSpace
from .study import best_trial, counted_trials, fail_stale_trials, over_budget, primary_value
from .summary import summarize


class TrialFailed(Exception):
    """A trial that failed for a reason of its own; the study goes on."""


class TrialDiverged(TrialFailed):
    pass


class BudgetReached(TrialFailed):
    pass


class _NoTracking:
    run_id = None

    def epoch_ended(self, epoch: int, logs: Mapping[str, float]) -> None:
        pass

    def finish(self, *, state: str, **details: Any) -> None:
        pass


@dataclass
class Objective:
    model_name: str
    space: SearchSpace
    data: Dataset
    training: TrainingSettings
    metric: str
    direction: str
    n_trials: int | None = None
    seed: int = 0
    config: Mapping[str, Any] = field(default_factory=dict)
    tracker: Any = None  # has trial_run(number, params, *, seed, config, data_info)
    progress: Progress | None = None
    tensorboard: bool = False
    rule: ObjectiveRule | None = None  # objective kind and gap limit; None: the raw metric
    checkpoints: Any = None  # a search.checkpoints.CheckpointStore; None: keep no weights
    feature_cache_dir: str | None = None  # frozen-backbone features shared by trials (disk)
    cv_folds: int = 1  # > 1: every trial is k-fold cross-validation (crossval.py)

    def __post_init__(self):
        self.data_info = {"fingerprint": self.data.fingerprint(),
                          "class_names": list(self.data.class_names),
                          "class_counts": self.data.class_counts(),
                          "class_index": self.data.class_index,
                          "input_shape": list(self.data.input_shape)}

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        from tunelab.models import Head, build_model
        from tunelab.models.training import (
            model_summary,
            predict_proba,
            reset_session,
            tensorboard_callback,
        )
        from tunelab.models.transfer import train_model

        study = trial.study
        if over_budget(study, trial.number, self.n_trials):
            trial.set_user_attr("skipped", "the trial budget was already filled")
            raise BudgetReached("the trial budget was already filled by other workers")
        params = self.space.suggest(trial)
        seed = self.seed + trial.number
        reset_session(seed)
        # family search: the trial's model and only its family's parameters (conditional.py)
        model_name, model_params, train_params = split_params(params, self.model_name,
                                                              TRAINING_KEYS)
        loss = train_params.get("loss") or ("binary_crossentropy" if self.data.n_classes == 2
                                            else "categorical_crossentropy")
        head = Head(loss, self.data.n_classes)
        model = build_model(model_name, self.data.input_shape, self.data.n_classes,
                            loss=loss, **model_params)
        settings = replace(self.training, **{k: v for k, v in train_params.items()
                                             if k != "loss"})
        settings = replace(settings, seed=seed)
        n_params = int(model.count_params())
        trial.set_user_attr("seed", seed)
        # every hyperparameter, fixed ones included (trial.params holds only the suggested):
        # what a retrain or a synced run needs to rebuild exactly this model
        trial.set_user_attr("hparams", params)
        trial.set_user_attr("model", model_name)
        trial.set_user_attr("n_params", n_params)
        best = best_trial(study)
        if self.progress:
            self.progress.trial_started(trial.number, counted_trials(study) + 1,
                                        (primary_value(best), best.number) if best else None)
        run = (self.tracker.trial_run(trial.number, {"model": model_name, "loss": loss,
                                                      **params},
                                      seed=seed, config=self.config, data_info=self.data_info,
                                      extra_tags={"optuna.trial_number": trial.number})
               if self.tracker else _NoTracking())
        if run.run_id:
            trial.set_user_attr("mlflow_run_id", run.run_id)
        history: dict[str, list[float]] = {}

        def on_epoch(epoch: int, logs: dict[str, float]) -> None:
            for key, value in logs.items():
                history.setdefault(key, []).append(value)
            run.epoch_ended(epoch, logs)
            if self.progress:
                self.progress.epoch(trial.number, epoch, logs)

        multi = self.rule is not None and self.rule.multi  # Optuna cannot prune it
        callbacks: list[Any] = [] if multi else [KerasPruningCallback(trial, self.metric)]
        tb_dir = None
        if self.tensorboard:
            tb_dir = tempfile.mkdtemp(prefix=f"tunelab-tb-{trial.number}-")
            callbacks.append(tensorboard_callback(tb_dir))
        common = {"model_summary": model_summary(model), "artifacts_dir": tb_dir,
                  "class_names": self.data.class_names}
        trial.set_user_attr("model_summary", common["model_summary"])  # for `tunelab sync`
        _log_augmented_samples(run, settings, self.data, seed)
        started = time.time()
        try:
            if self.cv_folds > 1:
                result = train_folds(
                    trial, self.data, self.cv_folds, head=head, settings=settings,
                    build=lambda: build_model(model_name, self.data.input_shape,
                                              self.data.n_classes, loss=loss, **model_params),
                    metric=self.metric, direction=self.direction, seed=seed,
                    fold_seed=self.seed, callbacks=callbacks, on_epoch=on_epoch,
                    feature_cache_dir=self.feature_cache_dir)
            else:
                result = train_model(model, head, self.data, settings, callbacks=callbacks,
                                     on_epoch=on_epoch, feature_cache_dir=self.feature_cache_dir)
        except optuna.TrialPruned:
            epochs = len(history.get("loss", []))
            reason = f"pruned at epoch {epochs}"
            self._record(trial, history, state="PRUNED", reason=reason, started=started)
            run.finish(state="PRUNED", history=history, reason=reason, **common,
                       summary=self._summary(history))
            self._report(trial.number, "PRUNED", None, reason)
            raise
        except BaseException as err:
            reason = f"{type(err).__name__}: {err}"
            state = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
            self._record(trial, history, state="FAILED", reason=reason, started=started)
            run.finish(state=state, history=history or None, reason=reason, **common)
            self._report(trial.number, "FAILED", None, reason)
            raise
        if result.diverged:
            self._record(trial, history, state="FAILED", reason=result.reason, started=started)
            run.finish(state="FAILED", history=history, reason=result.reason, **common)
            self._report(trial.number, "FAILED", None, result.reason)
            raise TrialDiverged(result.reason)
        if result.extra:  # transfer models: feature cache hits, frozen epochs, unfrozen layers
            trial.set_user_attr("transfer", dict(result.extra))
        cv = isinstance(result, CrossValResult)  # summary: means over folds, fold std
        summary = result.summary if cv else summarize(result.history, self.metric,
                                                      self.direction)
        summary["n_params"] = n_params
        summary["train_seconds"] = time.time() - started
        summary["process_rss_mb"] = current_rss_mb()
        summary["process_peak_rss_mb"] = _max_rss_mb()
        y_true, y_pred = (result.y_true, result.y_pred) if cv else (  # out-of-fold with cv
            self.data.val.y, predict_proba(model, head, self.data.val.x).argmax(axis=1))
        # the validation confusion counts: `tunelab sync` draws confusion_matrix.png from them
        trial.set_user_attr("val_confusion", confusion_counts(y_true, y_pred,
                                                              self.data.n_classes))
        rule = self.rule or ObjectiveRule(self.metric, self.direction)
        value = rule.value(summary)
        summary["objective"] = value
        gap_limit = rule.constraint(summary)
        if gap_limit is not None:
            trial.set_constraint("gap", gap_limit)  # > 0: infeasible, samplers avoid it
        self._checkpoint(trial, model, head, value, summary, params, seed, result.history,
                         {} if gap_limit is None else {"gap": gap_limit})
        self._record(trial, result.history, state="COMPLETE", summary=summary, started=started)
        run.finish(state="COMPLETE", summary=summary, history=result.history,
                   y_true=y_true, y_pred=y_pred, **common)
        objectives = rule.objectives(summary)  # (metric, overfit gap) when multi-objective
        self._report(trial.number, "COMPLETE", value,
                     (f"gap {objectives[1]:.4f}, " if rule.multi else "")
                     + f"best epoch {int(summary['best_epoch'])}/{int(summary['epochs_trained'])}")
        return objectives

    def _checkpoint(self, trial, model, head, value, summary, params, seed, history,
                    constraints) -> None:
        """Keep the weights if the trial ranks among the top ones; never fail the trial.
        A cross-validated trial has no single model: `tunelab register` retrains it."""
        if self.checkpoints is None or self.cv_folds > 1:
            return
        record = record_from_summary(trial.number, value, summary, self.metric,
                                     constraints=constraints)
        meta = {"model": split_params(params, self.model_name, TRAINING_KEYS)[0],
                "loss": head.loss, "params": params, "seed": seed,
                "input_shape": list(self.data.input_shape),
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

    def _summary(self, history: dict[str, list[float]]) -> dict[str, float] | None:
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
        trial.set_user_attr("state", state)
        trial.set_user_attr("train_seconds", round(time.time() - started, 3))
        if reason:
            trial.set_user_attr("reason", reason)

    def _report(self, number: int, state: str, value: float | None, detail: str) -> None:
        if self.progress:
            self.progress.trial_finished(number, state, value, detail)


def confusion_counts(y_true, y_pred, n_classes: int) -> list[list[int]]:
    """counts[true][predicted], as plain lists (a user attribute is JSON)."""
    import numpy as np

    pairs = np.asarray(y_true, dtype="int64") * n_classes + np.asarray(y_pred, dtype="int64")
    counts = np.bincount(pairs, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes).tolist()


def _log_augmented_samples(run: Any, settings: Any, data: Dataset, seed: int) -> None:
    """Log ``augmentation.png`` to the trial's run (originals in the first column)."""
    log = getattr(run, "log_image_grid", None)
    samples = None if log is None else augmented_samples(data, settings.augmentation, seed)
    if samples is not None:
        images, labels = samples
        title = ", ".join(f"{k}={v}" for k, v in vars(settings.augmentation).items() if v)
        log(images, labels, "augmentation.png", f"augmented training samples ({title})")


def _max_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 1024)


def current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def run_trials(study: optuna.Study, objective: Objective, *, n_trials: int | None,
               max_trials_here: int | None = None, deadline: float | None = None,
               poll_seconds: float = 2.0) -> str:
    """Run trials until the study's budget is met, the deadline passes, or this process has
    run ``max_trials_here`` (then it should be recycled). Returns which of the three."""
    done_here, backoff = 0, 1.0
    while True:
        if n_trials is not None:
            fail_stale_trials(study)
            counted = counted_trials(study)
            if counted >= n_trials:
                return "budget"
            running = len(study.get_trials(deepcopy=False,
                                           states=(optuna.trial.TrialState.RUNNING,)))
            if counted + running >= n_trials:
                if deadline is not None and time.time() >= deadline:
                    return "deadline"
                time.sleep(poll_seconds)  # others' running trials may still fill the budget
                continue
        if deadline is not None and time.time() >= deadline:
            return "deadline"
        if max_trials_here is not None and done_here >= max_trials_here:
            return "recycle"
        try:
            study.optimize(objective, n_trials=1, catch=(TrialFailed,))
        except optuna.exceptions.StorageInternalError as err:
            print(f"tunelab: storage error ({err}); retrying in {backoff:.0f} s", flush=True)
            time.sleep(backoff)
            backoff = min(2 * backoff, 60.0)
            continue
        backoff = 1.0
        done_here += 1
