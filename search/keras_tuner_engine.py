"""KerasTuner as a second search engine: same space, model builder, training and tracking.

``engine: keras-tuner`` runs the study's ``SearchSpace`` with KerasTuner's Hyperband,
BayesianOptimization or RandomSearch instead of Optuna's sampler and pruner. Everything else
is tunelab's: models come from ``tunelab.models.build_model``, training is
``tunelab.models.training.train`` (early stopping, LR schedule, class weights, augmentation,
per-class validation metrics), and every KerasTuner trial is

* an Optuna trial in the study's storage (asked with the KerasTuner values as fixed
  parameters, reported epoch by epoch, told its value), with the same ``history`` and
  ``summary`` user attributes as the Optuna engine, so ``tunelab best``, selection,
  registration and the study plots work unchanged;
* a nested MLflow run under the study's parent run, logged by the same ``StudyTracker``
  trial run (params, per-epoch metrics, learning curves, confusion matrix, summary).

The dimension mapping: ``Fixed`` -> ``hp.Fixed``, ``Choice`` -> ``hp.Choice`` (choices of
mixed types travel as their index), ``IntRange`` -> ``hp.Int`` (``sampling="log"`` for log
ranges), ``FloatRange`` -> ``hp.Float``. A family search (``space.model``) is not supported.

Hyperband continues a promoted trial from its parent's best-epoch weights: that KerasTuner
trial trains only the new epochs (``tuner/initial_epoch`` .. ``tuner/epochs``), which is
what its history, summary and MLflow run record. KerasTuner keeps its own state (oracle and
checkpoints) in ``directory``; one process runs the search (``workers: 1``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna

from tunelab.models.training_keys import TRAINING_KEYS

from .conditional import split_params
from .space import Choice, Fixed, FloatRange, IntRange, SearchSpace

KINDS = ("hyperband", "bayesian", "random")
_TUNER_KEYS = ("tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round",
               "tuner/trial_id")


class EngineError(ValueError):
    """A study the KerasTuner engine cannot run; the message says why."""


# -- the space -------------------------------------------------------------------------------
def _same_type(values) -> bool:
    kinds = {type(v) for v in values}
    return len(kinds) == 1 and kinds <= {int, float, str, bool}


def check_space(space: Any) -> SearchSpace:
    if not isinstance(space, SearchSpace) or type(space) is not SearchSpace:
        raise EngineError("engine keras-tuner: a family search (space.model) is not supported; "
                          "search one model, or use engine: optuna")
    return space


def declare(space: SearchSpace, hp) -> None:
    """Register every dimension of ``space`` on KerasTuner's ``HyperParameters``."""
    for name, dim in check_space(space).dimensions.items():
        if isinstance(dim, Fixed):
            if dim.value is not None:
                hp.Fixed(name, dim.value)
        elif isinstance(dim, Choice):
            if _same_type(dim.choices):
                hp.Choice(name, list(dim.choices), ordered=False)
            else:  # hp.Choice takes one type of value: mixed choices travel as indices
                hp.Choice(name, list(range(len(dim.choices))), ordered=False)
        elif isinstance(dim, IntRange):
            if dim.log:
                hp.Int(name, dim.low, dim.high, sampling="log")
            else:
                hp.Int(name, dim.low, dim.high, step=dim.step)
        elif isinstance(dim, FloatRange):
            hp.Float(name, dim.low, dim.high, step=None if dim.log else dim.step,
                     sampling="log" if dim.log else "linear")
        else:  # pragma: no cover - the space only has the four kinds
            raise EngineError(f"space.{name}: {dim!r} has no KerasTuner equivalent")


def decode(space: SearchSpace, values: Mapping[str, Any]) -> dict[str, Any]:
    """KerasTuner values -> tunelab parameters (every dimension, fixed ones included)."""
    out: dict[str, Any] = {}
    for name, dim in space.dimensions.items():
        if isinstance(dim, Fixed):
            out[name] = dim.value
            continue
        value = values[name]
        if isinstance(dim, Choice):
            out[name] = value if _same_type(dim.choices) else dim.choices[int(value)]
        elif isinstance(dim, IntRange):
            out[name] = int(value)
        else:
            value = float(value)
            if dim.step is not None and not dim.log:  # back onto Optuna's grid
                value = round(dim.low + round((value - dim.low) / dim.step) * dim.step, 12)
            out[name] = min(max(value, dim.low), dim.high)
    return out


def distributions(space: SearchSpace) -> dict[str, optuna.distributions.BaseDistribution]:
    """The Optuna distributions of the searched dimensions (what ``space.suggest`` asks)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for name, dim in space.dimensions.items():
        if isinstance(dim, Choice):
            out[name] = CategoricalDistribution(list(dim.choices))
        elif isinstance(dim, IntRange):
            out[name] = IntDistribution(dim.low, dim.high, log=dim.log,
                                        step=1 if dim.log else dim.step)
        elif isinstance(dim, FloatRange):
            out[name] = FloatDistribution(dim.low, dim.high, log=dim.log,
                                          step=None if dim.log else dim.step)
    return out


# -- the engine -----------------------------------------------------------------------------
@dataclass(frozen=True)
class KerasTunerSettings:
    kind: str = "hyperband"  # hyperband, bayesian or random
    max_epochs: int = 15  # Hyperband's largest budget; the others train every trial this long
    factor: int = 3  # Hyperband's reduction factor
    hyperband_iterations: int = 1  # Hyperband sweeps; each runs every bracket once
    num_initial_points: int | None = None  # BayesianOptimization: random trials first
    directory: str = "keras_tuner"  # KerasTuner's oracle and checkpoints
    overwrite: bool = False  # False: a rerun resumes KerasTuner's state in directory


@dataclass
class _Current:
    """The trial being trained: what ``_build_and_fit_model`` needs and what it leaves."""

    otrial: optuna.Trial
    params: dict[str, Any]
    model_name: str
    model_params: dict[str, Any]
    head: Any
    settings: Any
    seed: int
    on_epoch: Callable[[int, dict[str, float]], None]
    model: Any = None
    result: Any = None


def run_keras_tuner(study: optuna.Study, objective: Any, settings: KerasTunerSettings, *,
                    deadline: float | None = None,
                    on_trial_end: Callable[[optuna.trial.FrozenTrial, Any], None] | None = None,
                    ) -> str:
    """Search ``objective.space`` with KerasTuner, recording each trial in ``study`` and
    through ``objective.tracker`` exactly as ``search.objective.Objective`` does.

    ``objective`` is a ``search.objective.Objective`` (its data, training settings, metric,
    rule, tracker, progress and checkpoint store are used). ``on_trial_end(frozen, model)`` is
    told every finished trial (benchmarks keep the selected model from it). Returns why the
    search stopped: "budget", "deadline" or "done" (KerasTuner ran out of trials)."""
    try:
        import keras_tuner
    except ImportError:
        raise EngineError("engine keras-tuner needs KerasTuner: pip install "
                          "'tunelab[keras-tuner]'") from None
    if settings.kind not in KINDS:
        raise EngineError(f"keras_tuner.kind: {settings.kind!r} is not one of "
                          f"{', '.join(KINDS)}")
    space = check_space(objective.space)
    # the study's TPE would only be asked for fixed values: a random sampler costs nothing
    study = optuna.load_study(study_name=study.study_name, storage=study._storage,
                              sampler=optuna.samplers.RandomSampler(seed=objective.seed),
                              pruner=optuna.pruners.NopPruner())
    tuner_cls = _tuner_class(keras_tuner, settings.kind)
    direction = "max" if objective.direction == "maximize" else "min"
    kt_objective = keras_tuner.Objective(objective.metric, direction=direction)
    hypermodel = _hypermodel(keras_tuner, objective, space)
    common = dict(objective=kt_objective, seed=objective.seed, directory=settings.directory,
                  project_name=study.study_name, overwrite=settings.overwrite,
                  max_consecutive_failed_trials=10)
    if settings.kind == "hyperband":
        tuner = tuner_cls(hypermodel, max_epochs=settings.max_epochs, factor=settings.factor,
                          hyperband_iterations=settings.hyperband_iterations, **common)
    elif settings.kind == "bayesian":
        tuner = tuner_cls(hypermodel, max_trials=objective.n_trials,
                          num_initial_points=settings.num_initial_points, **common)
    else:
        tuner = tuner_cls(hypermodel, max_trials=objective.n_trials, **common)
    tuner.configure(study=study, objective=objective, space=space, settings=settings,
                    deadline=deadline, on_trial_end=on_trial_end)
    tuner.search(verbose=0)
    return tuner.stopped_by


def _tuner_class(keras_tuner, kind: str):
    base = {"hyperband": keras_tuner.Hyperband, "bayesian": keras_tuner.BayesianOptimization,
            "random": keras_tuner.RandomSearch}[kind]
    return type(f"Tunelab{base.__name__}", (_TunelabTunerMixin, base), {})


def _hypermodel(keras_tuner, objective: Any, space: SearchSpace):
    class SpaceHyperModel(keras_tuner.HyperModel):
        """tunelab's space and model registry as a KerasTuner hypermodel."""

        def declare_hyperparameters(self, hp) -> None:
            declare(space, hp)

        def build(self, hp):
            from tunelab.models import build_model
            from tunelab.models.training import compile_model

            declare(space, hp)  # KerasTuner's first build registers the space
            current = getattr(self, "current", None)
            if current is None:  # KerasTuner's own space discovery: any valid model will do
                params = decode(space, hp.values)
                name, model_params, train_params = _split(objective, params)
                _, loss = _head(objective, train_params)
                return build_model(name, objective.data.input_shape, objective.data.n_classes,
                                   loss=loss, **model_params)
            model = build_model(current.model_name, objective.data.input_shape,
                                objective.data.n_classes, loss=current.head.loss,
                                **current.model_params)
            compile_model(model, current.head, current.settings)
            return model

    return SpaceHyperModel()


def _split(objective: Any, params: Mapping[str, Any]):
    return split_params(dict(params), objective.model_name, TRAINING_KEYS)


def _head(objective: Any, train_params: Mapping[str, Any]):
    from tunelab.models import Head

    loss = train_params.get("loss") or ("binary_crossentropy" if objective.data.n_classes == 2
                                        else "categorical_crossentropy")
    return Head(loss, objective.data.n_classes), loss


class _TunelabTunerMixin:
    """Overrides ``run_trial`` (Optuna trial + MLflow run around each KerasTuner trial) and
    ``_build_and_fit_model`` (tunelab's ``train`` instead of ``HyperModel.fit``)."""

    def configure(self, *, study, objective, space, settings, deadline, on_trial_end) -> None:
        self._study, self._objective, self._space = study, objective, space
        self._settings, self._deadline, self._on_trial_end = settings, deadline, on_trial_end
        self._distributions = distributions(space)
        self._current: _Current | None = None
        self.stopped_by = "done"
        self._stop_if_over_budget()

    # -- budget: KerasTuner's oracle stops creating trials at max_trials ---------------------
    def _stop_if_over_budget(self) -> None:
        from .study import counted_trials

        n_trials = self._objective.n_trials
        if n_trials is not None and counted_trials(self._study) >= n_trials:
            self.stopped_by = "budget"
        elif self._deadline is not None and time.time() >= self._deadline:
            self.stopped_by = "deadline"
        else:
            return
        self.oracle.max_trials = max(1, len(self.oracle.trials))

    def on_trial_end(self, trial) -> None:
        super().on_trial_end(trial)
        self._stop_if_over_budget()

    # -- one trial ---------------------------------------------------------------------------
    def run_trial(self, trial, *args, **kwargs):
        import keras
        from keras_tuner.src import errors

        from .study import best_trial, counted_trials

        objective, study = self._objective, self._study
        values = trial.hyperparameters.values
        params = decode(self._space, values)
        searched = {k: params[k] for k in self._distributions}
        # Hyperband: tuner/trial_id is the parent trial this one continues from
        tuner_info = {("resumed_from" if k == "tuner/trial_id" else k.split("/", 1)[1]): values[k]
                      for k in _TUNER_KEYS if k in values}
        study.enqueue_trial(searched, skip_if_exists=False)
        otrial = study.ask(fixed_distributions=self._distributions)
        number = otrial.number
        seed = objective.seed + number
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)
        model_name, model_params, train_params = _split(objective, params)
        head, loss = _head(objective, train_params)
        training = replace(objective.training, **{k: v for k, v in train_params.items()
                                                  if k != "loss"})
        training = replace(training, seed=seed)
        otrial.set_user_attr("seed", seed)
        otrial.set_user_attr("hparams", params)  # fixed ones included, as the Optuna engine
        otrial.set_user_attr("model", model_name)
        otrial.set_user_attr("engine", f"keras-tuner/{self._settings.kind}")
        otrial.set_user_attr("keras_tuner", {"trial_id": trial.trial_id, **tuner_info})
        best = best_trial(study)
        if objective.progress:
            objective.progress.trial_started(number, counted_trials(study) + 1,
                                             (best.value, best.number) if best else None)
        run = (objective.tracker.trial_run(
                   number, {"model": model_name, "loss": loss, **params}, seed=seed,
                   config=objective.config, data_info=objective.data_info,
                   extra_tags={"optuna.trial_number": number,
                               "keras_tuner.trial_id": trial.trial_id,
                               "tunelab.engine": f"keras-tuner/{self._settings.kind}"})
               if objective.tracker else None)
        if run is not None and run.run_id:
            otrial.set_user_attr("mlflow_run_id", run.run_id)
        history: dict[str, list[float]] = {}

        def on_epoch(epoch: int, logs: dict[str, float]) -> None:
            for key, value in logs.items():
                history.setdefault(key, []).append(value)
            if run is not None:
                run.epoch_ended(epoch, logs)
            if objective.metric in logs:
                otrial.report(float(logs[objective.metric]), epoch)
            if objective.progress:
                objective.progress.epoch(number, epoch, logs)

        self._current = _Current(otrial, params, model_name, model_params, head, training, seed,
                                 on_epoch)
        self.hypermodel.current = self._current
        started = time.time()
        common = {"class_names": objective.data.class_names}
        try:
            super().run_trial(trial, *args, **kwargs)  # -> _build_and_fit_model below
        except BaseException as err:
            reason = f"{type(err).__name__}: {err}"
            objective._record(otrial, history, state="FAILED", reason=reason, started=started)
            study.tell(otrial, state=optuna.trial.TrialState.FAIL)
            if run is not None:
                state = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
                run.finish(state=state, history=history or None, reason=reason, **common)
            objective._report(number, "FAILED", None, reason)
            if isinstance(err, Exception) and not isinstance(err, errors.FatalError):
                raise errors.FailedTrialError(reason) from err
            raise
        finally:
            self.hypermodel.current = None
        current, self._current = self._current, None
        return self._finish_trial(current, run, history, started, common)

    def _finish_trial(self, current: _Current, run, history, started: float, common):
        from keras_tuner.src import errors

        from tunelab.models.training import model_summary, predict_proba

        from .selection import ObjectiveRule
        from .summary import summarize

        objective, study, otrial = self._objective, self._study, current.otrial
        result, model = current.result, current.model
        common = {**common, "model_summary": model_summary(model)}
        if result.diverged:
            objective._record(otrial, history, state="FAILED", reason=result.reason,
                              started=started)
            study.tell(otrial, state=optuna.trial.TrialState.FAIL)
            if run is not None:
                run.finish(state="FAILED", history=history, reason=result.reason, **common)
            objective._report(otrial.number, "FAILED", None, result.reason)
            raise errors.FailedTrialError(result.reason)
        summary = summarize(result.history, objective.metric, objective.direction)
        summary["n_params"] = int(model.count_params())
        summary["train_seconds"] = time.time() - started
        y_pred = predict_proba(model, current.head, objective.data.val.x).argmax(axis=1)
        rule = objective.rule or ObjectiveRule(objective.metric, objective.direction)
        value = rule.value(summary)
        summary["objective"] = value
        gap_limit = rule.constraint(summary)
        objective._checkpoint(otrial, model, current.head, value, summary, current.params,
                              current.seed, result.history,
                              {} if gap_limit is None else {"gap": gap_limit})
        objective._record(otrial, result.history, state="COMPLETE", summary=summary,
                          started=started)
        frozen = study.tell(otrial, value)
        if run is not None:
            run.finish(state="COMPLETE", summary=summary, history=result.history,
                       y_true=objective.data.val.y, y_pred=y_pred, **common)
        objective._report(otrial.number, "COMPLETE", value,
                          f"best epoch {int(summary['best_epoch'])}/"
                          f"{int(summary['epochs_trained'])}")
        if self._on_trial_end is not None:
            self._on_trial_end(frozen, model)
        # KerasTuner ranks trials by this (SaveBestEpoch monitors the raw metric per epoch)
        return {objective.metric: value}

    def _build_and_fit_model(self, trial, *args, **kwargs):
        from keras_tuner.src import utils as kt_utils

        from tunelab.models.training import train

        current = self._current
        model = self._try_build(trial.hyperparameters)  # Hyperband loads the parent's weights
        kt_utils.save_json(self._get_build_config_fname(trial.trial_id),
                           model.get_build_config())
        initial = int(kwargs.get("initial_epoch", 0) or 0)
        epochs = int(kwargs.get("epochs") or self._settings.max_epochs)
        settings = replace(current.settings, max_epochs=max(1, epochs - initial))
        result = train(model, current.head, self._objective.data, settings,
                       callbacks=list(kwargs.get("callbacks", [])), on_epoch=current.on_epoch,
                       initial_epoch=initial)
        current.model, current.result = model, result
        if result.diverged:
            return {self._objective.metric: float("nan")}
        values = [v for v in result.history.get(self._objective.metric, [])]
        best = max(values) if self._objective.direction == "maximize" else min(values)
        return {self._objective.metric: float(best)}


def default_directory(storage_url: str, study_name: str) -> str:
    """KerasTuner's state beside the Optuna journal (or under ./mlruns for a database)."""
    if "://" in storage_url:
        return str(Path("mlruns") / "keras_tuner")
    return str(Path(storage_url.removeprefix("journal:")).expanduser().parent / "keras_tuner")
