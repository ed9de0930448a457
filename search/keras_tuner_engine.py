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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from .space import Choice, Fixed, FloatRange, IntRange, SearchSpace
from .trial import TrackingHooks

KINDS = ("hyperband", "bayesian", "random")
_TUNER_KEYS = ("tuner/epochs", "tuner/initial_epoch", "tuner/bracket", "tuner/round",
               "tuner/trial_id")


class EngineError(ValueError):
    """A study the KerasTuner engine cannot run; the message says why."""


# -- the space -------------------------------------------------------------------------------
def _same_type(values) -> bool:
    """Whether ``hp.Choice`` can carry the values themselves. Booleans travel as indices:
    KerasTuner hands a boolean choice back as 0 / 1 (``batch_norm=1 is invalid``)."""
    kinds = {type(v) for v in values}
    return len(kinds) == 1 and kinds <= {int, float, str}


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
    """The trial being trained: the Optuna trial asked for it and its parameters."""

    otrial: optuna.Trial
    params: dict[str, Any]
    outcome: Any = None


def run_keras_tuner(study: optuna.Study, objective: Any, settings: KerasTunerSettings, *,
                    deadline: float | None = None,
                    on_trial_end: Callable[[optuna.trial.FrozenTrial, Any], None] | None = None,
                    ) -> str:
    """Search ``objective.space`` with KerasTuner; each trial runs through the objective's
    trial lifecycle (``trial.py``), so it is recorded in ``study`` and tracked exactly as an
    Optuna-engine trial is.

    ``objective`` is a ``search.objective.Objective``. ``on_trial_end(frozen, model)`` is told
    every finished trial (benchmarks keep the selected model from it). Returns why the search
    stopped: "budget", "deadline" or "done" (KerasTuner ran out of trials)."""
    try:
        import keras_tuner
    except ImportError:
        raise EngineError("engine keras-tuner needs KerasTuner: pip install "
                          "'tunelab[keras-tuner]'") from None
    if settings.kind not in KINDS:
        raise EngineError(f"keras_tuner.kind: {settings.kind!r} is not one of "
                          f"{', '.join(KINDS)}")
    space = check_space(objective.space)
    # KerasTuner proposes the values; the study's TPE would only be asked for fixed ones
    study.sampler = optuna.samplers.RandomSampler(seed=objective.seed)
    study.pruner = optuna.pruners.NopPruner()
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
        """tunelab's space, model registry and trial lifecycle as a KerasTuner hypermodel:
        ``build`` makes the model of the current trial's plan, ``fit`` runs the lifecycle."""

        current: _Current | None = None

        def declare_hyperparameters(self, hp) -> None:
            declare(space, hp)

        def build(self, hp):
            from tunelab.models.training import compile_model

            declare(space, hp)  # KerasTuner's first build registers the space
            lifecycle = objective.lifecycle
            number = self.current.otrial.number if self.current is not None else 0
            plan = lifecycle.plan(number, decode(space, hp.values))
            model = plan.build(objective.data.input_shape)
            if self.current is not None:  # a real trial, not KerasTuner's space discovery
                compile_model(model, plan.head, plan.settings)
            return model

        def fit(self, hp, model, *args, **kwargs):
            """KerasTuner's training step: the trial lifecycle on the model KerasTuner built
            (Hyperband loads a promoted trial's weights into it first)."""
            current = self.current
            initial = int(kwargs.get("initial_epoch", 0) or 0)
            epochs = int(kwargs.get("epochs") or objective.training.max_epochs)
            current.outcome = objective.lifecycle.run(
                current.otrial, current.params, prune=False, model=model,
                callbacks=list(kwargs.get("callbacks", [])), initial_epoch=initial,
                max_epochs=max(1, epochs - initial))
            # KerasTuner ranks trials by this (SaveBestEpoch monitors the raw metric)
            return {objective.metric: current.outcome.value}

    return SpaceHyperModel()


class _TunelabTunerMixin:
    """``run_trial`` (KerasTuner's public hook) wraps each KerasTuner trial in an Optuna
    trial: asked with KerasTuner's values as fixed parameters, told its end."""

    def configure(self, *, study, objective, space, settings, deadline, on_trial_end) -> None:
        self._study, self._objective, self._space = study, objective, space
        self._settings, self._deadline, self._on_trial_end = settings, deadline, on_trial_end
        self._distributions = distributions(space)
        self.stopped_by = "done"
        engine = f"keras-tuner/{settings.kind}"
        for hook in objective.lifecycle.hooks:  # the trial's MLflow run names the engine
            if isinstance(hook, TrackingHooks):
                hook.extra_tags = lambda t: {"keras_tuner.trial_id":
                                             t.user_attrs["keras_tuner"]["trial_id"],
                                             "tunelab.engine": engine}
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
        import keras_tuner

        from tunelab.models.training import reset_session

        if self._objective.stop_check is not None:  # a stop deferred past the last trial's end
            self._objective.stop_check()
        study = self._study
        values = trial.hyperparameters.values
        params = decode(self._space, values)
        searched = {k: params[k] for k in self._distributions}
        # Hyperband: tuner/trial_id is the parent trial this one continues from
        tuner_info = {("resumed_from" if k == "tuner/trial_id" else k.split("/", 1)[1]): values[k]
                      for k in _TUNER_KEYS if k in values}
        study.enqueue_trial(searched, skip_if_exists=False)
        otrial = study.ask(fixed_distributions=self._distributions)
        otrial.set_user_attr("engine", f"keras-tuner/{self._settings.kind}")
        otrial.set_user_attr("keras_tuner", {"trial_id": trial.trial_id, **tuner_info})
        reset_session(self._objective.seed + otrial.number)  # before KerasTuner builds
        current = _Current(otrial, params)
        self.hypermodel.current = current
        try:
            result = super().run_trial(trial, *args, **kwargs)  # build, then fit above
        except BaseException as err:
            study.tell(otrial, state=optuna.trial.TrialState.FAIL)
            if isinstance(err, Exception) and not isinstance(err, keras_tuner.errors.FatalError):
                raise keras_tuner.errors.FailedTrialError(f"{type(err).__name__}: {err}") \
                    from err
            raise
        finally:
            self.hypermodel.current = None
        frozen = study.tell(otrial, current.outcome.value)
        if self._on_trial_end is not None:
            self._on_trial_end(frozen, current.outcome.model)
        return result


def default_directory(storage_url: str, study_name: str) -> str:
    """KerasTuner's state beside the Optuna journal (or under ./mlruns for a database)."""
    if "://" in storage_url:
        return str(Path("mlruns") / "keras_tuner")
    return str(Path(storage_url.removeprefix("journal:")).expanduser().parent / "keras_tuner")
