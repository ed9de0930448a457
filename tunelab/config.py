"""The study configuration: one frozen, typed object loaded from YAML, then CLI overrides.

Every key is checked before anything is trained or written: an unknown key, a value of the
wrong type or an impossible combination raises ``ConfigError`` naming the key, the value and
what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from tunelab.models.metric_names import LOGGED_METRIC_FORMS, may_be_logged
from tunelab.search.conditional import build_space
from tunelab.search.space import Choice, Fixed, FloatRange, IntRange, SearchSpace


class ConfigError(ValueError):
    """A study configuration that cannot run; the message says what to change."""


class ConfigWarning(UserWarning):
    """A study configuration that runs, but not as written; the message says what changed."""


DEFAULT_STORE = Path("mlruns")
# the embedded default stores, relative to the folder tunelab runs in
DEFAULT_STORAGE = str(DEFAULT_STORE / "optuna.journal")
DEFAULT_TRACKING_URI = f"sqlite:///{DEFAULT_STORE / 'mlflow.db'}"


def default_space() -> dict[str, Any]:
    return {
        "learning_rate": {"low": 1.0e-4, "high": 1.0e-2, "log": True},
        "batch_size": [32, 64, 128],
        "n_base": [8, 16, 32],
        "dropout": {"low": 0.0, "high": 0.5},
        "spatial_dropout": {"low": 0.0, "high": 0.3},
        "batch_norm": [True, False],
        "optimizer": ["adam", "sgd", "rmsprop"],
        "loss": ["categorical_crossentropy", "categorical_hinge"],
    }


def lab_defaults() -> dict[str, Any]:
    """The defaults for a lab's own data: every source but the bundled digits, whose defaults
    (``default_space`` and the dataclasses' values) stay as they were. Only keys the study
    file and the flags leave out are taken from here, and only when a study is created: a
    resumed study keeps its stored config, so a change here never alters an existing study.

    Why each differs from the digits defaults (BENCHMARKS.md, selection quality):
    ``val_auc`` is the objective (threshold-free, so a 73:27 set cannot reward predicting the
    majority; macro one-vs-rest for three or more classes); class weights and the usual
    augmentations are searched; the learning rate reaches down to 1e-5, the labs' best by
    hand; smaller batches; one loss (hinge heads give no probabilities to calibrate); longer
    training with more patience; and no pruning in a trial's first 5 epochs, where small
    noisy validation sets rank trials by luck."""
    return {
        "space": {
            "learning_rate": {"low": 1.0e-5, "high": 1.0e-2, "log": True},
            "batch_size": [16, 32, 64],
            "n_base": [8, 16, 32],
            "dropout": {"low": 0.0, "high": 0.5},
            "batch_norm": [True, False],
            "optimizer": ["adam", "rmsprop"],
            "class_weight": ["balanced", "none"],
            "rotation": {"low": 0, "high": 15},
            "width_shift": {"low": 0.0, "high": 0.1},
            "horizontal_flip": [False, True],
        },
        "max_epochs": 30,
        "early_stopping": {"patience": 6},
        "objective": {"metric": "val_auc"},
        "pruner": {"n_startup_trials": 5, "n_warmup_steps": 5},
        "dataset": {"cv_folds": "auto"},
        "selection": {"method": "auto"},
    }


#: ``dataset.cv_folds: auto``: this many folds when the validation split's smallest class
#: has fewer than ``CV_AUTO_BELOW`` images (BENCHMARKS.md, selection quality: on
#: BreastMNIST's 15 malignant validation images the best validation score overfits; a
#: 3-fold CV mean stayed within 0.03 of the hold-out)
CV_AUTO_FOLDS = 3
CV_AUTO_BELOW = 50


def resolve_auto(config: StudyConfig, smallest_val_class: int) -> tuple[StudyConfig, str]:
    """``dataset.cv_folds: auto`` and ``selection.method: auto`` made concrete for data
    whose validation split has ``smallest_val_class`` images of its smallest class; with
    the line the study header shows (empty when nothing was auto)."""
    d, sel = config.dataset, config.selection
    if d.cv_folds != "auto" and sel.method != "auto":
        return config, ""
    why = ""
    folds = d.cv_folds
    if folds == "auto" and (config.engine != "optuna" or config.registry.ensemble > 1):
        folds = 1
        why = ("no cross-validation (dataset.cv_folds auto: "
               + ("the keras-tuner engine trains no folds)" if config.engine != "optuna"
                  else f"registry.ensemble {config.registry.ensemble} needs trials with one "
                       "model each)"))
    elif folds == "auto":
        small = smallest_val_class < CV_AUTO_BELOW
        folds = CV_AUTO_FOLDS if small else 1
        why = (f"{folds}-fold cross-validation on train + validation (dataset.cv_folds auto: "
               f"the validation split's smallest class has {smallest_val_class} images, "
               f"fewer than {CV_AUTO_BELOW})" if small else
               f"no cross-validation (dataset.cv_folds auto: the validation split's smallest "
               f"class has {smallest_val_class} images, at least {CV_AUTO_BELOW})")
    method = sel.method
    if method == "auto":
        method = "best_validation" if (folds or 1) > 1 else "confirm_mean"
        why = (why + "; " if why else "") + f"selection {method} (selection.method auto)"
    raw = config.to_dict()
    raw["dataset"]["cv_folds"] = folds
    raw["selection"]["method"] = method
    return config_from_dict(raw), why


def with_data_defaults(raw: Any) -> Any:
    """``raw`` with ``lab_defaults()`` under the keys it leaves out, when its dataset is not
    the bundled digits (nested keys one level deep: ``objective.kind`` given keeps the
    default ``objective.metric``; a ``space`` given is the whole space)."""
    if not isinstance(raw, Mapping):
        return raw
    dataset = raw.get("dataset")
    source = dataset.get("source", "digits") if isinstance(dataset, Mapping) else "digits"
    if source == "digits":
        return raw
    out = dict(raw)
    for key, value in lab_defaults().items():
        if key not in out:
            out[key] = value
        elif key != "space" and isinstance(out[key], Mapping):
            out[key] = {**value, **out[key]}
    return out


@dataclass(frozen=True)
class DatasetConfig:
    # "digits"; a MedMNIST-style .npz; an image folder (ROOT/<class>/* or
    # ROOT/train|validation|test/<class>/*); a CIFAR-10 python folder; a CSV of path,label
    source: str = "digits"
    # square side images are resized to; native (or null): keep the size; auto: native for
    # arrays (.npz, CIFAR-10), 16 for digits, the median size capped at 128 for image folders
    image_size: Literal["auto", "native"] | int | None = "auto"
    color_mode: Literal["grayscale", "rgb"] = "grayscale"
    validation_fraction: float = 0.2  # used when the source has no validation split
    test_fraction: float = 0.0  # stratified hold-out carved first, for final evaluation only
    label_pattern: str | None = None  # regex on file names, named group 'label': '^(?P<label>C\d)'
    labels_csv: str | None = None  # CSV of path,label (paths relative to source or the CSV)
    group_pattern: str | None = None  # regex on file paths (e.g. a patient id): one split per group
    skip_bad_images: bool = False  # false: an unreadable image is an error naming the file
    max_image_pixels: int = 89_478_485  # larger images are refused (decompression bombs)
    # decoded images and frozen features; null: ~/.cache/tunelab/datasets
    cache_dir: str | None = None
    memory_limit_mb: int | None = None  # train split cached in RAM below this; null: 1/4 of RAM
    # k >= 2: stratified k-fold CV on train + validation; 1/null: off; auto (a lab's data):
    # CV_AUTO_FOLDS folds when the validation split has fewer than CV_AUTO_BELOW images of
    # its smallest class, else off (resolved when the study is created, then stored)
    cv_folds: Literal["auto"] | int | None = 1
    # a .npz's class ids 0, 1, ... by name, in id order (e.g. [normal, pneumonia]); null: "0"...
    class_names: list[str] | None = None

    @property
    def folds(self) -> int:
        """Folds per trial: 1 without cross-validation (``auto`` counts as 1 until the study
        resolves it against its data: ``config.resolve_auto``)."""
        return self.cv_folds if isinstance(self.cv_folds, int) and self.cv_folds > 1 else 1


@dataclass(frozen=True)
class EarlyStoppingConfig:
    enabled: bool = True
    monitor: str | None = None  # null: the objective metric
    patience: int = 5
    min_delta: float = 0.0
    restore_best_weights: bool = True


@dataclass(frozen=True)
class LRScheduleConfig:
    kind: Literal["constant", "reduce_on_plateau", "step", "cosine"] = "constant"
    factor: float = 0.5  # reduce_on_plateau and step: multiply the rate by this
    patience: int = 3  # reduce_on_plateau: epochs without improvement
    step_size: int = 10  # step: epochs between decays
    min_lr: float = 1.0e-6


@dataclass(frozen=True)
class ObjectiveConfig:
    metric: str = "val_accuracy"  # loss-independent, so trials with different losses compare
    direction: Literal["maximize", "minimize"] | None = None  # null: minimize losses only
    # metric: the best-epoch metric; penalized: metric - gap_penalty * max(0, gap - tolerance);
    # pareto: two objectives, (metric, gap), a Pareto front; Optuna cannot prune such a study
    kind: Literal["metric", "penalized", "pareto"] = "metric"
    gap_tolerance: float = 0.05  # train - val accuracy gap a trusted trial may have
    gap_penalty: float = 1.0  # penalized: objective lost per point of gap above tolerance
    max_gap: float | None = None  # Optuna constraint: a larger gap makes a trial infeasible


@dataclass(frozen=True)
class CheckpointConfig:
    keep_top: int = 3  # best weights + optimizer state of this many top trials; 0: none
    dir: str | None = None  # null: checkpoints/<study_name> beside the journal (mlruns/)


@dataclass(frozen=True)
class RegistryConfig:
    gradcam_layer: str | None = None  # null: the last Conv2D (VGG's is Last_ConvLayer)
    gradcam_images_per_class: int = 2  # validation images per class in the Grad-CAM figure
    # fitted on the validation outputs at register, stored in the model; predict applies it
    calibration: Literal["temperature", "platt"] = "temperature"  # platt: two classes only
    # two classes: the stored operating point on the calibrated P(positive), fitted on the
    # validation split: accuracy | youden | {sensitivity: 0.9}; null: 0.5 (argmax)
    threshold: Any = None
    bootstrap_resamples: int = 2000  # stratified, seeded bootstrap of the evaluation intervals
    # k >= 2: register the mean of the top k confirmed candidates' probabilities as one model
    # (confirm_* selection; tunelab register --ensemble k); 1: the single pick
    ensemble: int = 1


@dataclass(frozen=True)
class SelectionConfig:
    """How ``tune``, ``best`` and ``register`` pick the champion (search/selection_methods.py).

    ``confirm_*`` methods retrain the ``confirm_top`` best trials after the search, inside the
    study's budget, with ``confirm_seeds`` fresh seeds (``confirm_kind: seeds``) or by
    ``confirm_folds``-fold cross-validation on train + validation (``cv``), and rank them by
    the mean of those fresh scores (``confirm_lcb``: mean - z * sd / sqrt(n))."""

    # rule: the objective's rule alone (gap tolerance, no rising validation loss)
    # auto (a lab's data): best_validation when every trial is cross-validated (its score is
    # already a k-fold mean), else confirm_mean; resolved with dataset.cv_folds
    method: Literal["rule", "best_validation", "gap_penalized", "confirm_mean",
                    "confirm_lcb", "auto"] = "confirm_mean"
    confirm_top: int = 3
    confirm_kind: Literal["seeds", "cv"] = "seeds"
    confirm_seeds: int = 2
    confirm_folds: int = 3
    z: float = 1.0
    reserve_fraction: float = 0.3  # share of n_trials / timeout kept for confirmation

    @property
    def confirms(self) -> bool:
        return self.method.startswith("confirm")

    @property
    def per_candidate(self) -> int:
        return self.confirm_seeds if self.confirm_kind == "seeds" else self.confirm_folds

    def candidates(self, n_trials: int | None) -> int:
        """Candidates confirmed: ``confirm_top``, fewer when their runs would take more than
        ``reserve_fraction`` of ``n_trials`` (none for a 3-trial study)."""
        if not self.confirms:
            return 0
        if n_trials is None:
            return self.confirm_top
        return max(0, min(self.confirm_top,
                          int(n_trials * self.reserve_fraction + 1e-9) // self.per_candidate))

    def runs(self, n_trials: int | None) -> int:
        """Trainings the confirmation adds; each counts as a trial against ``n_trials``."""
        return self.candidates(n_trials) * self.per_candidate


@dataclass(frozen=True)
class SamplerConfig:
    kind: Literal["tpe", "random", "grid"] = "tpe"
    n_startup_trials: int = 5  # TPE: random trials before the model kicks in


@dataclass(frozen=True)
class PrunerConfig:
    kind: Literal["median", "successive_halving", "hyperband", "none"] = "median"
    n_startup_trials: int = 3  # median: trials that are never pruned
    n_warmup_steps: int = 2  # median: epochs before a trial may be pruned
    min_resource: int = 1  # successive_halving / hyperband
    reduction_factor: int = 3


@dataclass(frozen=True)
class KerasTunerConfig:
    """``engine: keras-tuner``: KerasTuner searches the same space (search/keras_tuner_engine)."""

    kind: Literal["hyperband", "bayesian", "random"] = "hyperband"
    factor: int = 3  # hyperband: reduction factor; max_epochs is the study's max_epochs
    hyperband_iterations: int = 1  # hyperband: sweeps over all brackets
    num_initial_points: int | None = None  # bayesian: random trials first (null: KerasTuner's)
    directory: str | None = None  # KerasTuner's state; null: keras_tuner/ beside the journal


@dataclass(frozen=True)
class StudyConfig:
    # absent from the file: <data>-<model> (default_study_name), e.g. breastmnist-lenet
    study_name: str = "digits-lenet"
    model: str = "lenet"
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    space: dict[str, Any] = field(default_factory=default_space)
    n_trials: int | None = 20
    timeout: float | None = None  # seconds for the whole study
    max_epochs: int = 15
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    lr_schedule: LRScheduleConfig = field(default_factory=LRScheduleConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    seed: int = 42
    storage: str | None = None  # null: Optuna journal file mlruns/optuna.journal
    tracking_uri: str | None = None  # null: SQLite store mlruns/mlflow.db
    trials_per_process: int = 8  # trials run in a worker process before it is recycled
    # a recycled worker's successor starts (imports TensorFlow, loads the data) while the
    # worker trains its last trial; false: one after the other (less memory at a recycle)
    overlap_recycle: bool = True
    workers: int = 1  # local worker processes running trials at once
    heartbeat_interval: int = 10  # RDB storage: seconds between a running trial's heartbeats
    tensorboard: bool = False  # per-trial TensorBoard logs as run artifacts
    tracking: bool = True  # false: no MLflow runs at all (results stay in the Optuna storage)
    # optuna: the sampler and pruner above; keras-tuner: KerasTuner runs the same space
    engine: Literal["optuna", "keras-tuner"] = "optuna"
    keras_tuner: KerasTunerConfig = field(default_factory=KerasTunerConfig)
    checkpoints: CheckpointConfig = field(default_factory=CheckpointConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    # known-good configurations (names as in space) enqueued once as the first trials
    warm_start: list[dict[str, Any]] = field(default_factory=list)

    # -- derived -------------------------------------------------------------------------
    @functools.cached_property
    def search_space(self) -> SearchSpace:
        """Built once per config (a FamilySpace when space.model searches the model)."""
        return build_space(self.space)

    @property
    def direction(self) -> str:
        if self.objective.direction:
            return self.objective.direction
        return "minimize" if self.objective.metric.endswith("loss") else "maximize"

    @property
    def monitor(self) -> str:
        return self.early_stopping.monitor or self.objective.metric

    @property
    def storage_url(self) -> str:
        return self.storage or DEFAULT_STORAGE

    @property
    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or DEFAULT_TRACKING_URI

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# -- loading -------------------------------------------------------------------------------
class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader (no Python objects from tags) that refuses a key given twice in
    one mapping: plain PyYAML keeps the last value without a word."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # '<<: *anchor' merges; its keys may be overridden
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: PyYAML reports it below
                    continue
                if first is not None:
                    raise _DuplicateKey(f"line {line}: duplicate key {key!r} (first on line "
                                        f"{first}); YAML would silently keep only the last "
                                        "value, so remove one of them")
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


class _DuplicateKey(ConfigError):
    pass


def read_study_file(path: str | Path) -> dict[str, Any]:
    """The mapping a YAML study file holds; an empty file and a duplicate key are errors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such study file")
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # a SafeLoader
    except _DuplicateKey as err:
        raise ConfigError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    if raw is None:
        raise ConfigError(f"{path}: the study file is empty (or holds only comments); write "
                          "the keys to change, e.g. 'model: alexnet', or run `tunelab tune` "
                          "without a file for the embedded default study")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return raw


def apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Set dotted keys (``dataset.image_size``) in ``raw``, in place; None values are skipped
    (a flag that was not given)."""
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return raw


def user_mapping(path: str | Path | None, overrides: Mapping[str, Any] | None = None,
                 ) -> dict[str, Any]:
    """The keys the user set: the study file's (none for the embedded default) with the
    overrides on top. A resumed study takes every other key from its stored config."""
    raw = read_study_file(path) if path is not None else {}
    return apply_overrides(raw, overrides)


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                ) -> StudyConfig:
    """Read a YAML study file (or the embedded default), apply overrides, validate."""
    raw = user_mapping(path, overrides)
    try:
        return config_from_dict(raw)
    except ConfigError as err:
        if path is not None:
            raise ConfigError(f"{path}: {err}") from None
        raise


def default_study_name(raw: Mapping[str, Any]) -> str:
    """``<data>-<model>`` from the keys given: the dataset's file or folder name lower-cased
    (``digits`` for the bundled digits) and the model, or ``search`` when the study searches
    the model family: ``digits-lenet``, ``breastmnist-alexnet``, ``xray-search``. So another
    dataset or model is another study, never appended to an earlier one."""
    raw = _model_list_to_space(raw) if isinstance(raw, Mapping) else {}
    dataset = raw.get("dataset")
    source = dataset.get("source", "digits") if isinstance(dataset, Mapping) else "digits"
    space = raw.get("space")
    family = isinstance(space, Mapping) and "model" in space
    model = "search" if family else str(raw.get("model") or "lenet")
    return f"{_name_part(_data_name(str(source)), 'data')}-{_name_part(model, 'model')}"


def _data_name(source: str) -> str:
    if source == "digits":
        return "digits"
    path = Path(source).expanduser()
    if path.name in ("", ".", ".."):
        path = path.resolve()
    return path.stem if path.suffix.lower() in (".npz", ".csv") else path.name


def _name_part(text: str, fallback: str) -> str:
    import re

    return re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).strip("-.") or fallback


def _model_list_to_space(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """``model: [a, b]`` -> ``space.model: [a, b]`` and ``model: a`` (the family search lives
    in the space; ``model`` keeps a default that must be one of the families)."""
    if not isinstance(raw, Mapping):
        return raw
    model, space = raw.get("model"), raw.get("space")
    if isinstance(model, list):
        if not model:
            raise ConfigError("model: an empty list of models")
        base = dict(space) if isinstance(space, Mapping) else default_space()
        if "model" in base:
            raise ConfigError("model and space.model: give the list of models once")
        return {**raw, "model": str(model[0]), "space": {**base, "model": list(model)}}
    if isinstance(space, Mapping) and "model" in space and "model" not in raw:
        families = space["model"]
        first = families[0] if isinstance(families, list) and families else families
        return {**raw, "model": first}
    return raw


def config_from_dict(raw: Mapping[str, Any]) -> StudyConfig:
    """A validated config from a mapping; without ``study_name``, the name follows the data
    and the model (``default_study_name``); on a lab's own data, the keys left out take
    ``lab_defaults()``."""
    raw = _model_list_to_space(with_data_defaults(raw))
    if isinstance(raw, Mapping) and "study_name" not in raw:
        raw = {**raw, "study_name": default_study_name(raw)}
    config = _build(StudyConfig, raw, "")
    config = _no_pruning_for_pareto(config)
    validate(config)
    return config


def _no_pruning_for_pareto(config: StudyConfig) -> StudyConfig:
    """Optuna cannot prune multi-objective studies (``trial.report`` raises): the pareto
    kind turns pruning off, with a warning, rather than refusing the default pruner."""
    if config.objective.kind != "pareto" or config.pruner.kind == "none":
        return config
    warnings.warn(f"objective.kind: pareto makes a multi-objective study and Optuna cannot "
                  f"prune multi-objective studies: pruner.kind {config.pruner.kind!r} is "
                  "turned off (set pruner: {kind: none} to silence this warning; early "
                  "stopping still works)", ConfigWarning, stacklevel=3)
    return dataclasses.replace(config, pruner=dataclasses.replace(config.pruner, kind="none"))


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where.rstrip('.') or 'config'}: expected a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in raw.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"unknown key '{where}{key}'{hint} (allowed: {', '.join(fields)})"
            )
        kwargs[key] = _coerce(hints[key], value, f"{where}{key}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".")
    origin, args = get_origin(hint), get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for alt in inner[:-1]:  # the first alternative that takes the value; the last one
            try:                # names what is expected
                return _coerce(alt, value, key)
            except ConfigError:
                pass
        return _coerce(inner[-1], value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not allowed (choose one of "
                              f"{', '.join(map(str, args))})")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(args[0], item, f"{key}[{i}]") for i, item in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: expected a non-empty string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {hint!r} for {key}")


# -- validation ----------------------------------------------------------------------------
TRAINING_HPARAMS: dict[str, str] = {
    "learning_rate": "a number > 0",
    "batch_size": "an integer >= 1",
    "optimizer": "one of adam, sgd, rmsprop",
    "momentum": "a number in [0, 1) (SGD only)",
    "loss": "binary_crossentropy, hinge (two classes), categorical_crossentropy, "
            "categorical_hinge",
}


def _check_training_value(name: str, value: Any) -> str | None:
    """Return what is allowed if ``value`` is not, else None."""
    ok = {
        "learning_rate": lambda v: _is_number(v) and v > 0,
        "batch_size": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "optimizer": lambda v: v in ("adam", "sgd", "rmsprop"),
        "momentum": lambda v: _is_number(v) and 0 <= v < 1,
        "loss": lambda v: v in ("binary_crossentropy", "hinge", "categorical_crossentropy",
                                "categorical_hinge"),
    }[name](value)
    return None if ok else TRAINING_HPARAMS[name]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _positive(key: str, value: float | int | None, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{key}: {value!r} must be {'>= 0' if allow_zero else '> 0'}")


def validate(config: StudyConfig) -> None:
    """Checks that need no data and no framework; see ``validate_against_data`` for the rest."""
    _positive("n_trials", config.n_trials)
    _positive("timeout", config.timeout)
    _positive("max_epochs", config.max_epochs)
    _positive("trials_per_process", config.trials_per_process)
    _positive("workers", config.workers)
    _positive("heartbeat_interval", config.heartbeat_interval)
    _positive("early_stopping.patience", config.early_stopping.patience, allow_zero=True)
    _positive("lr_schedule.factor", config.lr_schedule.factor)
    if config.lr_schedule.factor >= 1:
        raise ConfigError(f"lr_schedule.factor: {config.lr_schedule.factor} must be in (0, 1)")
    _positive("lr_schedule.step_size", config.lr_schedule.step_size)
    _positive("sampler.n_startup_trials", config.sampler.n_startup_trials, allow_zero=True)
    _positive("pruner.reduction_factor", config.pruner.reduction_factor)
    if config.pruner.reduction_factor < 2:
        raise ConfigError("pruner.reduction_factor: must be >= 2")
    d = config.dataset
    if isinstance(d.image_size, int) and d.image_size < 1:
        raise ConfigError(f"dataset.image_size: {d.image_size} must be >= 1 (or null)")
    for key, frac in (("validation_fraction", d.validation_fraction),
                      ("test_fraction", d.test_fraction)):
        if not 0 <= frac < 1:
            raise ConfigError(f"dataset.{key}: {frac} must be in [0, 1)")
    if not 0 < d.validation_fraction:
        raise ConfigError("dataset.validation_fraction: must be > 0")
    _check_dataset(d)
    if config.n_trials is None and config.timeout is None and config.sampler.kind != "grid":
        raise ConfigError("n_trials and timeout are both null: set at least one budget")
    for key, metric in (("objective.metric", config.objective.metric),
                        ("early_stopping.monitor", config.monitor)):
        if not metric.startswith("val_"):
            raise ConfigError(
                f"{key}: {metric!r} must be a validation metric such as val_accuracy or "
                f"val_loss (logged: {LOGGED_METRIC_FORMS})"
            )
        if not may_be_logged(metric):
            raise ConfigError(f"{key}: {metric!r} is not logged by any trial, so the study "
                              f"could not read it; the metrics are {LOGGED_METRIC_FORMS}")
    if not config.study_name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ConfigError(f"study_name: {config.study_name!r} may only hold letters, digits, "
                          "'-', '_' and '.'")
    try:
        space = config.search_space
    except ValueError as err:
        raise ConfigError(str(err)) from None
    for name, dim in space.dimensions.items():
        if name in TRAINING_HPARAMS:
            for value in _extremes(dim):
                allowed = _check_training_value(name, value)
                if allowed:
                    raise ConfigError(f"space.{name}: {value!r} is not allowed ({allowed})")
    loss = space.dimensions.get("loss")
    if (loss is not None and not isinstance(loss, Fixed)
            and config.objective.metric == "val_loss"):
        raise ConfigError(
            "objective.metric: 'val_loss' is not comparable across trials when the loss itself "
            "is searched (space.loss has several choices); optimize a loss-independent metric "
            "such as val_accuracy, or fix space.loss"
        )
    _check_selection(config)
    _check_family_and_warm_start(config, space)
    _check_engine(config, space)
    if config.sampler.kind == "grid":
        try:
            space.grid()
        except ValueError as err:
            raise ConfigError(str(err)) from None


def _check_dataset(d: DatasetConfig) -> None:
    import re

    for key in ("label_pattern", "group_pattern"):
        pattern = getattr(d, key)
        if pattern is None:
            continue
        try:
            regex = re.compile(pattern)
        except re.error as err:
            raise ConfigError(f"dataset.{key}: {pattern!r} is not a valid regular expression "
                              f"({err})") from None
        if key == "label_pattern" and "label" not in regex.groupindex:
            raise ConfigError(f"dataset.label_pattern: {pattern!r} needs a named group "
                              "'label', e.g. '^(?P<label>C\\d+) '")
    if d.label_pattern and d.labels_csv:
        raise ConfigError("dataset.label_pattern and dataset.labels_csv: set one, not both")
    _positive("dataset.max_image_pixels", d.max_image_pixels)
    _positive("dataset.memory_limit_mb", d.memory_limit_mb)
    if d.class_names is not None:
        if len(d.class_names) < 2:
            raise ConfigError(f"dataset.class_names: {d.class_names!r}: name every class, in "
                              "class-id order (at least two)")
        repeated = sorted({n for n in d.class_names if d.class_names.count(n) > 1})
        if repeated:
            raise ConfigError(f"dataset.class_names: {', '.join(map(repr, repeated))} named "
                              "twice; every class needs its own name")
    if d.cv_folds is not None and d.cv_folds != "auto" and d.cv_folds < 1:
        raise ConfigError(f"dataset.cv_folds: {d.cv_folds} must be >= 2 (k-fold "
                          "cross-validation) or 1 / null (no cross-validation)")


def _check_family_and_warm_start(config: StudyConfig, space: SearchSpace) -> None:
    from tunelab.search.conditional import FamilySpace
    from tunelab.search.warm_start import check_warm_start

    if isinstance(space, FamilySpace) and config.model not in space.families():
        raise ConfigError(f"model: {config.model!r} is not one of the models space.model "
                          f"searches ({', '.join(space.families())})")
    if config.warm_start and config.sampler.kind == "grid":
        raise ConfigError("warm_start: the grid sampler runs every grid point anyway; drop "
                          "warm_start or use sampler.kind tpe or random")
    try:
        check_warm_start(config.warm_start, space)
    except ValueError as err:
        raise ConfigError(str(err)) from None


TRANSFER_MODELS = ("transfer", "vgg16_transfer")  # models/transfer.py's families


def _check_engine(config: StudyConfig, space: SearchSpace) -> None:
    if config.engine != "keras-tuner":
        return
    if config.objective.kind == "pareto":
        raise ConfigError("objective.kind: pareto (two objectives) needs engine: optuna; "
                          "KerasTuner optimizes one objective")
    if config.dataset.folds > 1:
        raise ConfigError(f"dataset.cv_folds: {config.dataset.cv_folds}; engine: keras-tuner "
                          "trains one model per trial, so cross-validation needs engine: "
                          "optuna (or dataset.cv_folds: 1)")
    from tunelab.search.conditional import FamilySpace

    if isinstance(space, FamilySpace):
        raise ConfigError("engine: keras-tuner cannot search the model family (space.model); "
                          "search one model, or use engine: optuna")
    if config.model in TRANSFER_MODELS:
        # KerasTuner's fit hook trains the model it built and checkpoints its weights every
        # epoch for Hyperband; a transfer model trains its head on cached features first
        raise ConfigError(f"model: {config.model}; engine: keras-tuner cannot train transfer "
                          "models (their frozen phase trains the head on cached backbone "
                          "features, which KerasTuner's checkpoints cannot follow); use "
                          "engine: optuna")
    if config.workers != 1:
        raise ConfigError(f"workers: {config.workers}; engine: keras-tuner runs its search in "
                          "one process (workers: 1)")
    if config.keras_tuner.factor < 2:
        raise ConfigError(f"keras_tuner.factor: {config.keras_tuner.factor} must be >= 2")
    _positive("keras_tuner.hyperband_iterations", config.keras_tuner.hyperband_iterations)
    _positive("keras_tuner.num_initial_points", config.keras_tuner.num_initial_points)
    if config.warm_start:
        raise ConfigError("warm_start: only engine: optuna enqueues warm-start trials")


def _check_selection(config: StudyConfig) -> None:
    o = config.objective
    _positive("objective.gap_tolerance", o.gap_tolerance, allow_zero=True)
    _positive("objective.gap_penalty", o.gap_penalty, allow_zero=True)
    if o.max_gap is not None and not 0 <= o.max_gap <= 1:
        raise ConfigError(f"objective.max_gap: {o.max_gap} must be in [0, 1] (an accuracy "
                          "gap) or null")
    _positive("checkpoints.keep_top", config.checkpoints.keep_top, allow_zero=True)
    _positive("registry.gradcam_images_per_class", config.registry.gradcam_images_per_class)
    _positive("registry.bootstrap_resamples", config.registry.bootstrap_resamples)
    _positive("registry.ensemble", config.registry.ensemble)
    if config.registry.ensemble > 1 and config.dataset.folds > 1:
        raise ConfigError(f"registry.ensemble: {config.registry.ensemble} with dataset.cv_folds "
                          f"{config.dataset.cv_folds}: a cross-validated study's trials keep no "
                          "single model each to average; set registry.ensemble: 1")
    _check_threshold_rule(config.registry.threshold)

    sel = config.selection
    _positive("selection.confirm_top", sel.confirm_top)
    _positive("selection.confirm_seeds", sel.confirm_seeds)
    _positive("selection.z", sel.z, allow_zero=True)
    if sel.confirm_kind == "cv" and sel.confirm_folds < 2:
        raise ConfigError(f"selection.confirm_folds: {sel.confirm_folds} must be >= 2")
    if not 0 <= sel.reserve_fraction < 1:
        raise ConfigError(f"selection.reserve_fraction: {sel.reserve_fraction} must be in "
                          "[0, 1)")


def _check_threshold_rule(rule: Any) -> None:
    """``registry.threshold``: the rules of ``tracking.clinical_metrics.fit_threshold``."""
    if rule is None or rule in ("argmax", "accuracy", "youden"):
        return
    if isinstance(rule, Mapping) and set(rule) == {"sensitivity"}:
        target = rule["sensitivity"]
        if not isinstance(target, bool) and isinstance(target, (int, float)) \
                and 0 < target <= 1:
            return
        raise ConfigError(f"registry.threshold: {{sensitivity: {target!r}}}: the target must "
                          "be a number in (0, 1], e.g. {sensitivity: 0.9}")
    raise ConfigError(f"registry.threshold: {rule!r} is not a rule: use accuracy, youden or "
                      "{sensitivity: 0.9} (or null for 0.5)")


def _extremes(dim: Any) -> list[Any]:
    if isinstance(dim, (IntRange, FloatRange)):
        return [dim.low, dim.high]
    if isinstance(dim, Choice):
        return list(dim.choices)
    return [dim.value]
