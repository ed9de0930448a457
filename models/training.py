"""Compile and fit one model: optimizer, learning-rate schedule, early stopping, NaN guard."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from .data import Dataset
from .heads import Head

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
    class_weight: dict[int, float] | None = None


@dataclass
class TrainResult:
    history: dict[str, list[float]]
    epochs_trained: int
    diverged: bool = False
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


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
    if not getattr(model, "compiled", False):
        compile_model(model, head, s)
    cbs: list[keras.callbacks.Callback] = [keras.callbacks.TerminateOnNaN()]
    cbs += schedule_callbacks(s)
    if on_epoch is not None:
        cbs.append(EpochHook(on_epoch))
    if s.early_stopping:
        cbs.append(keras.callbacks.EarlyStopping(
            monitor=s.monitor, mode=s.monitor_mode, patience=s.patience,
            min_delta=s.min_delta, restore_best_weights=s.restore_best_weights, verbose=0))
    cbs += list(callbacks)
    history = model.fit(
        data.train.x, head.encode_labels(data.train.y),
        validation_data=(data.val.x, head.encode_labels(data.val.y)),
        epochs=initial_epoch + s.max_epochs, initial_epoch=initial_epoch,
        batch_size=s.batch_size, class_weight=s.class_weight, callbacks=cbs, verbose=0,
        shuffle=True,
    ).history
    history = {k: [float(v) for v in vs] for k, vs in history.items()}
    losses = history.get("loss", [])
    if any(not math.isfinite(v) for v in losses) or any(
            not math.isfinite(v) for v in history.get("val_loss", [])):
        bad = next(i for i, v in enumerate(losses + [float("nan")]) if not math.isfinite(v))
        return TrainResult(history, len(losses), diverged=True,
                           reason=f"loss became NaN or infinite at epoch {bad + 1}")
    return TrainResult(history, len(losses))


def predict_proba(model: keras.Model, head: Head, x: np.ndarray,
                  batch_size: int = 256) -> np.ndarray:
    return head.probabilities(model.predict(x, batch_size=batch_size, verbose=0))


def model_summary(model: keras.Model) -> str:
    lines: list[str] = []
    model.summary(print_fn=lambda line, *a, **k: lines.append(line), line_length=110)
    return "\n".join(lines)
