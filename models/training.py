"""Compile and fit one model: optimizer, learning-rate schedule, early stopping, NaN guard."""

from __future__ import annotations

import dataclasses
import gc
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from .data.augment import Augmentation
from .data.dataset import Dataset
from .data.tf_dataset import make_dataset
from .heads import Head
from .metrics import ValidationMetrics, balanced_class_weights, predict_in_batches
from .timeline import keras_callbacks, mark

OPTIMIZERS = ("adam", "sgd", "rmsprop")


@dataclass(frozen=True)
class TrainingSettings:
    max_epochs: int = 15
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9  # SGD only
    monitor: str = "val_accuracy"
    monitor_mode: str = "max"
    early_stopping: bool = True
    patience: int = 5
    min_delta: float = 0.0
    restore_best_weights: bool = True
    lr_schedule: str = "constant"  # constant, reduce_on_plateau, step, cosine
    lr_factor: float = 0.5
    lr_patience: int = 3
    lr_step_size: int = 10
    min_lr: float = 1e-6
    # "balanced" (n / (k * count_c)), "none", or an explicit {class id: weight}
    class_weight: dict[int, float] | str | None = None
    # augmentation of the training split, in the labs' units (see augment.py)
    rotation: float = 0.0  # degrees
    width_shift: float = 0.0  # fraction of the width
    height_shift: float = 0.0  # fraction of the height
    horizontal_flip: bool = False
    vertical_flip: bool = False
    zoom: float = 0.0  # fraction
    intensity_percentile: float = 0.0  # percent
    memory_limit_mb: int | None = None  # train split cached in RAM below this; else streamed
    seed: int = 0  # shuffling and augmentation

    @property
    def augmentation(self) -> Augmentation:
        return Augmentation.from_params(dataclasses.asdict(self))

    def class_weights(self, y: np.ndarray, n_classes: int) -> dict[int, float] | None:
        if isinstance(self.class_weight, dict):
            return {int(k): float(v) for k, v in self.class_weight.items()}
        if self.class_weight in (None, "none", False):
            return None
        if self.class_weight in ("balanced", True):
            return balanced_class_weights(y, n_classes)
        raise ValueError(f"class_weight: {self.class_weight!r} is not allowed (balanced, none "
                         "or a mapping of class id to weight)")


@dataclass
class TrainResult:
    history: dict[str, list[float]]
    epochs_trained: int
    diverged: bool = False
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


_imports_frozen = False


def reset_session(seed: int) -> None:
    """A fresh Keras session with Python, NumPy and backend generators seeded: the same seed
    trains the same model (trials, retraining for registration, cross-validation folds).

    ``clear_session`` runs a full garbage collection, which walked the half-million objects
    TensorFlow, Keras and MLflow leave from their imports on every trial (0.3 to 0.5 s a
    trial, measured). The first call freezes what the process holds then (``gc.freeze``:
    imports and long-lived state), so each later collection walks only what the trials made
    and still frees the previous model."""
    global _imports_frozen
    if not _imports_frozen:
        gc.collect()
        gc.freeze()
        _imports_frozen = True
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and the backend without clearing the session."""
    keras.utils.set_random_seed(seed)


def tensorboard_callback(log_dir: str) -> keras.callbacks.Callback:
    """Per-epoch TensorBoard logs under ``log_dir`` (logged as run artifacts afterwards)."""
    return keras.callbacks.TensorBoard(log_dir=log_dir)


def make_optimizer(name: str, learning_rate: float, momentum: float = 0.9):
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate=learning_rate)
    raise ValueError(f"unknown optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")


def schedule_callbacks(s: TrainingSettings) -> list[keras.callbacks.Callback]:
    if s.lr_schedule == "constant":
        return []
    if s.lr_schedule == "reduce_on_plateau":
        return [keras.callbacks.ReduceLROnPlateau(
            monitor=s.monitor, mode=s.monitor_mode, factor=s.lr_factor,
            patience=s.lr_patience, min_lr=s.min_lr, verbose=0)]
    base = s.learning_rate
    if s.lr_schedule == "step":
        def rate(epoch: int, lr: float) -> float:
            return max(s.min_lr, base * s.lr_factor ** (epoch // s.lr_step_size))
    elif s.lr_schedule == "cosine":
        def rate(epoch: int, lr: float) -> float:
            progress = epoch / max(1, s.max_epochs - 1)
            return s.min_lr + 0.5 * (base - s.min_lr) * (1 + math.cos(math.pi * progress))
    else:
        raise ValueError(f"unknown lr_schedule {s.lr_schedule!r}")
    return [keras.callbacks.LearningRateScheduler(rate, verbose=0)]


class BatchCheck(keras.callbacks.Callback):
    """Calls ``check()`` after every training batch (it raises to stop training: the shell's
    stop check, so a Ctrl-C swallowed where Python cannot raise still stops the fit)."""

    def __init__(self, check: Callable[[], None]):
        super().__init__()
        self._check = check

    def on_train_batch_end(self, batch, logs=None):
        self._check()

    def on_test_batch_end(self, batch, logs=None):  # a large validation split, each epoch
        self._check()

    def on_predict_batch_end(self, batch, logs=None):
        self._check()


class EpochHook(keras.callbacks.Callback):
    """Adds the learning rate to the epoch logs, then hands them to a plain function."""

    def __init__(self, on_epoch: Callable[[int, dict[str, float]], None]):
        super().__init__()
        self._on_epoch = on_epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        lr = self.model.optimizer.learning_rate
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(lr))
        self._on_epoch(epoch, {k: float(v) for k, v in logs.items()})


def compile_model(model: keras.Model, head: Head, s: TrainingSettings) -> None:
    model.compile(optimizer=make_optimizer(s.optimizer, s.learning_rate, s.momentum),
                  loss=head.loss, metrics=[head.accuracy_metric()])


def train(model: keras.Model, head: Head, data: Dataset, s: TrainingSettings, *,
          callbacks: Sequence[keras.callbacks.Callback] = (),
          on_epoch: Callable[[int, dict[str, float]], None] | None = None,
          initial_epoch: int = 0) -> TrainResult:
    """Fit on the train split, validate on the val split; never raises on divergence."""
    mark("train_start")
    if not getattr(model, "compiled", False):
        compile_model(model, head, s)
    mark("compiled")
    # per-class metrics first: early stopping and pruning may monitor them
    cbs: list[keras.callbacks.Callback] = [
        keras.callbacks.TerminateOnNaN(),
        ValidationMetrics(data.val.x, data.val.y, head.probabilities, data.class_names)]
    cbs[:0] = keras_callbacks()  # first: its epoch_end precedes the others' work
    cbs += schedule_callbacks(s)
    if on_epoch is not None:
        cbs.append(EpochHook(on_epoch))
    if s.early_stopping:
        cbs.append(keras.callbacks.EarlyStopping(
            monitor=s.monitor, mode=s.monitor_mode, patience=s.patience,
            min_delta=s.min_delta, restore_best_weights=s.restore_best_weights, verbose=0))
    cbs += list(callbacks)
    train_ds, val_ds = input_pipelines(data, head, s)
    history = model.fit(
        train_ds, validation_data=val_ds,
        epochs=initial_epoch + s.max_epochs, initial_epoch=initial_epoch,
        callbacks=cbs, verbose=0, shuffle=False,  # the pipeline shuffles
    ).history
    mark("fit_end")
    history = {k: [float(v) for v in vs] for k, vs in history.items()}
    losses = history.get("loss", [])
    if any(not math.isfinite(v) for v in losses) or any(
            not math.isfinite(v) for v in history.get("val_loss", [])):
        bad = next(i for i, v in enumerate(losses + [float("nan")]) if not math.isfinite(v))
        return TrainResult(history, len(losses), diverged=True,
                           reason=f"loss became NaN or infinite at epoch {bad + 1}")
    return TrainResult(history, len(losses))


def input_pipelines(data: Dataset, head: Head, s: TrainingSettings):
    """Training batches (shuffled, augmented, class-weighted) and validation batches.

    Class weights travel as per-sample weights: Keras' ``class_weight`` cannot index the
    {-1, 1} targets of a hinge head."""
    weights = s.class_weights(data.train.y, data.n_classes)
    sample_weight = (None if weights is None else
                     np.array([weights[int(c)] for c in data.train.y], dtype="float32"))
    augmentation = s.augmentation
    augment = augmentation.layer(seed=s.seed) if augmentation.enabled else None
    train_ds = make_dataset(data.train.x, head.encode_labels(data.train.y),
                            batch_size=s.batch_size, sample_weight=sample_weight, shuffle=True,
                            augment=augment, seed=s.seed, memory_limit_mb=s.memory_limit_mb)
    val_ds = make_dataset(data.val.x, head.encode_labels(data.val.y),
                          batch_size=max(s.batch_size, 256), memory_limit_mb=s.memory_limit_mb)
    return train_ds, val_ds


def predict_proba(model: keras.Model, head: Head, x: np.ndarray,
                  batch_size: int = 256) -> np.ndarray:
    # not model.predict: its per-call set-up cost several times the compute of a validation
    # split (models/metrics.py), once per trial and per confirmation run
    return head.probabilities(predict_in_batches(model, x, batch_size))


def model_summary(model: keras.Model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, *a, **k: lines.append(line), line_length=110)
    return "\n".join(lines)
