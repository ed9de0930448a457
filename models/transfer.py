"""Transfer learning: a ``keras.applications`` backbone as a frozen feature extractor, a small
head (dense 128, dropout 0.5, output, as in the labs' VGG16), and optional fine-tuning.

The model takes tunelab's images as they are (float32 in [0, 1], grey or RGB, any size):
``BackboneInput`` repeats grey to 3 channels, resizes to at least the backbone's smallest
side (32 px for VGG16), scales to 0-255 and applies the backbone's own ``preprocess_input``.

Training (``train_model``) has two phases:

1. the backbone frozen, only the head trains. Its input, the backbone's output, is the same in
   every trial that shares backbone, weights, size and images, so it is computed once and
   cached on disk (``features.py``) and the head trains on the cached array;
2. with ``fine_tune_layers`` > 0, after ``warmup_epochs`` the top layers of the backbone are
   unfrozen (a count, or a fraction of its layers) and the whole model trains on the images
   at ``learning_rate * fine_tune_lr_factor``. Batch-norm layers stay frozen and run in
   inference mode (the backbone is called with ``training=False``), as Keras' transfer
   learning guide recommends.

Weights: ``"imagenet"`` (downloaded by Keras into ``~/.keras/models`` where the internet is
reachable), a local weights file, or ``None`` (random, seeded identically in every trial so
that frozen random features are still cacheable).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import feature_cache
from .backbones import BACKBONES
from .data.dataset import Split
from .data.folds import Fold
from .dense_widths import widths
from .heads import Head
from .layers import dense_stack
from .lazy import keras, layers
from .registry import add_validators, preset, register_model

if TYPE_CHECKING:
    from .training import TrainingSettings, TrainResult


#: Seed of a randomly initialized (``weights=None``) backbone: the same in every trial.
RANDOM_BACKBONE_SEED = 1234


class WeightsUnavailable(RuntimeError):
    """The backbone's weights could not be downloaded or loaded; the message says how to
    supply a local file."""


@dataclass(frozen=True)
class TransferPlan:
    """What ``train_model`` needs to know about a transfer model."""

    backbone: str
    weights: str | None
    size: tuple[int, int]
    backbone_layer: str
    fine_tune_layers: int | float
    warmup_epochs: int
    fine_tune_lr_factor: float

    @property
    def weights_tag(self) -> str:
        if self.weights is None:
            return f"random{RANDOM_BACKBONE_SEED}"
        if self.weights == "imagenet":
            return f"imagenet-keras{keras.__version__}"
        return f"file{feature_cache.file_hash(self.weights)}"


def resized_side(side: int, backbone: str) -> int:
    return max(int(side), BACKBONES[backbone].min_size)


def load_backbone(backbone: str, weights: str | None, input_shape: tuple[int, int, int],
                  ) -> keras.Model:
    """``keras.applications.<backbone>(include_top=False)`` with ImageNet, file or no weights.

    Raises ``WeightsUnavailable`` naming the file to fetch and where to put it when the
    ImageNet weights cannot be downloaded, or when a local file does not fit.
    """
    constructor = getattr(keras.applications, BACKBONES[backbone].constructor)
    if weights is None:
        # Same random backbone in every trial (its frozen features are then cacheable); the
        # draw below keeps the trial's own seed stream going afterwards.
        carry = int(np.random.randint(0, 2**31 - 1))
        keras.utils.set_random_seed(RANDOM_BACKBONE_SEED)
        try:
            return constructor(include_top=False, weights=None, input_shape=input_shape)
        finally:
            keras.utils.set_random_seed(carry)
    if weights == "imagenet":
        try:
            return constructor(include_top=False, weights="imagenet", input_shape=input_shape)
        except Exception as err:
            raise WeightsUnavailable(
                f"the ImageNet weights of {backbone} could not be downloaded "
                f"({type(err).__name__}: {err}). On a machine without internet, download "
                f"the '{backbone}' no-top weights file (the URL is in "
                f"keras/src/applications/{BACKBONES[backbone].module}.py, e.g. "
                "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5) elsewhere and either put it "
                "in ~/.keras/models/ (Keras then finds it offline) or set space.weights to its "
                "path; weights: null trains from random weights") from err
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsUnavailable(f"weights file {weights} not found; give the path of a "
                                 f"{backbone} weights file without the top layers (.h5 or "
                                 ".weights.h5), 'imagenet' or null")
    try:
        return constructor(include_top=False, weights=str(path), input_shape=input_shape)
    except Exception as err:
        raise WeightsUnavailable(
            f"weights file {weights} could not be loaded into {backbone} without its top "
            f"({type(err).__name__}: {err}); it must hold the weights of "
            f"keras.applications.{backbone}(include_top=False)") from err


# -- the transfer family's own hyperparameters ------------------------------------------
def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"hyperparameter {name}={value!r} is invalid: must be an integer >= 0")
    return int(value)


def _count_or_fraction(name: str, value: Any) -> int | float:
    """A number of layers (integer >= 0) or a fraction of them (float in [0, 1])."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 0:
        return int(value)
    if (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value) and 0.0 <= value <= 1.0):
        return float(value)
    raise ValueError(f"hyperparameter {name}={value!r} is invalid: must be a number of layers "
                     "(integer >= 0) or a fraction of them (0.0 to 1.0)")


def _factor(name: str, value: Any) -> float:
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or not 0.0 < value <= 1.0):
        raise ValueError(f"hyperparameter {name}={value!r} is invalid: must be in (0, 1]")
    return float(value)


def _backbone(name: str, value: Any) -> str:
    if value not in BACKBONES:
        raise ValueError(f"hyperparameter {name}={value!r} is invalid: choose one of "
                         f"{', '.join(BACKBONES)} (keras.applications names)")
    return value


def _weights(name: str, value: Any) -> str | None:
    """'imagenet', None (random weights) or the path of an existing weights file."""
    if value is None or value == "none":
        return None
    if value == "imagenet":
        return value
    if isinstance(value, str) and value:
        path = os.path.expanduser(value)
        if not os.path.isfile(path):
            raise ValueError(f"hyperparameter {name}={value!r} is invalid: no such weights file "
                             "(give 'imagenet', null for random weights, or the path of a "
                             "backbone weights file without the top)")
        return os.path.abspath(path)
    raise ValueError(f"hyperparameter {name}={value!r} is invalid: 'imagenet', null or a "
                     "weights file path")


add_validators(backbone=_backbone, weights=_weights, fine_tune_layers=_count_or_fraction,
               warmup_epochs=_count, fine_tune_lr_factor=_factor)


def _transfer(
    input_shape: tuple[int, int, int],
    n_classes: int,
    *,
    loss: str,
    name: str,
    backbone: str = "VGG16",
    weights: str | None = "imagenet",
    dense_units: int | tuple[int, ...] = 128,
    dropout: float = 0.5,
    activation: str = "relu",
    l1: float = 0.0,
    l2: float = 0.0,
    fine_tune_layers: int | float = 0,
    warmup_epochs: int = 3,
    fine_tune_lr_factor: float = 0.1,
) -> keras.Model:
    height, width, _ = input_shape
    size = (resized_side(height, backbone), resized_side(width, backbone))
    inputs = keras.Input(shape=input_shape, name="image")
    from .custom_objects import BackboneInput

    x = BackboneInput(backbone, size, name="backbone_input")(inputs)
    base = load_backbone(backbone, weights, (*size, 3))
    base.trainable = False
    x = base(x, training=False)  # batch norm stays in inference mode, even when fine-tuned
    x = layers.Flatten(name="flatten")(x)
    x = dense_stack(x, widths(dense_units, 1), activation=activation, dropout=dropout, l1=l1, l2=l2)
    outputs = Head(loss, n_classes).output_layer()(x)
    model = keras.Model(inputs, outputs, name=name)
    model._tunelab_transfer = TransferPlan(  # read by train_model
        backbone=backbone, weights=weights, size=size, backbone_layer=base.name,
        fine_tune_layers=fine_tune_layers, warmup_epochs=warmup_epochs,
        fine_tune_lr_factor=fine_tune_lr_factor)
    return model


register_model(
    "transfer",
    min_input_size=1,
    description="keras.applications backbone (any of BACKBONES, frozen, optionally "
                "fine-tuned) - flatten - dense - dropout - head",
)(preset(_transfer))

register_model(
    "vgg16_transfer",
    min_input_size=1,
    description="the labs' ImageNet VGG16 without its top, frozen, optionally fine-tuned - "
                "flatten - dense(128) - dropout(0.5) - head",
)(preset(_transfer, backbone="VGG16"))


# --------------------------------------------------------------------------- training


def transfer_plan(model: keras.Model) -> TransferPlan | None:
    return getattr(model, "_tunelab_transfer", None)


def attach_plan(model: keras.Model, plan: dict[str, Any]) -> None:
    """Give a loaded transfer model back its plan (``model_files`` stores it beside it)."""
    model._tunelab_transfer = TransferPlan(**{**plan, "size": tuple(plan["size"])})


def backbone_of(model: keras.Model) -> keras.Model:
    plan = transfer_plan(model)
    if plan is None:
        raise ValueError(f"model {model.name!r} is not a transfer model")
    return model.get_layer(plan.backbone_layer)


def head_model(model: keras.Model) -> keras.Model:
    """The layers after the backbone as a model of the backbone's output; it shares its
    layers (and weights) with ``model``, so training it trains ``model``'s head."""
    base = backbone_of(model)
    index = model.layers.index(base)
    features = keras.Input(shape=tuple(base.output.shape[1:]), name="features")
    x = features
    for layer in model.layers[index + 1:]:
        x = layer(x)
    return keras.Model(features, x, name=f"{model.name}_head")


def extractor_model(model: keras.Model) -> keras.Model:
    """Images -> backbone output (preprocessing included), sharing ``model``'s layers."""
    base = backbone_of(model)
    images = keras.Input(shape=tuple(model.input.shape[1:]), name="image")
    x = model.get_layer("backbone_input")(images)
    return keras.Model(images, base(x, training=False), name=f"{model.name}_extractor")


def fine_tune_count(plan: TransferPlan, n_layers: int) -> int:
    """Layers (from the top of the backbone) to unfreeze: a count, or a fraction of them."""
    amount = plan.fine_tune_layers
    if isinstance(amount, float):
        return min(n_layers, math.ceil(amount * n_layers)) if amount > 0 else 0
    return min(n_layers, int(amount))


def unfreeze_top(model: keras.Model) -> int:
    """Make the top layers of the backbone trainable (batch norm stays frozen); returns how
    many layers were unfrozen."""
    plan = transfer_plan(model)
    base = backbone_of(model)
    count = fine_tune_count(plan, len(base.layers))
    if count == 0:
        return 0
    base.trainable = True
    for i, layer in enumerate(base.layers):
        top = i >= len(base.layers) - count
        layer.trainable = top and not isinstance(layer, layers.BatchNormalization)
    return count


def _augments(settings: TrainingSettings) -> bool:
    """Whether training changes the images on the fly (then cached features would be wrong)."""
    return bool(getattr(getattr(settings, "augmentation", None), "enabled", False))


def train_model(model: keras.Model, head: Head, data: Any, settings: TrainingSettings, *,
                callbacks: Sequence[keras.callbacks.Callback] = (),
                on_epoch: Callable[[int, dict[str, float]], None] | None = None,
                feature_cache_dir: str | Path | None = None,
                cache_features: bool = True, fold: Fold | None = None,
                initial_epoch: int = 0) -> TrainResult:
    """The one training entry point for every model: ``training.train`` for most, and the two
    phases above for transfer models.

    ``feature_cache_dir``: where frozen-backbone features are cached on disk (None: only in
    this process). ``cache_features=False`` trains the frozen phase on the images (the
    backbone then runs in every epoch of every trial; benchmarks compare the two).
    ``fold``: ``data`` is this cross-validation fold; the frozen features are then computed
    (or read from the cache) once for the fold's whole pool and sliced to its rows, so every
    fold of every trial shares one feature file.
    ``initial_epoch``: epochs the model has already trained (``tunelab continue``, KerasTuner's
    Hyperband); a transfer model goes on in the phase it reached, so a continued fine-tuning
    keeps its unfrozen layers and reduced learning rate.
    ``TrainResult.extra`` says where the features came from and how many layers were unfrozen.
    """
    from .training import TrainResult, make_optimizer, train

    plan = transfer_plan(model)
    if plan is None:
        return train(model, head, data, settings, callbacks=callbacks, on_epoch=on_epoch,
                     initial_epoch=initial_epoch)
    base = backbone_of(model)
    fine_tune = fine_tune_count(plan, len(base.layers)) > 0
    total = initial_epoch + settings.max_epochs  # epochs trained once this call ends
    frozen_until = min(plan.warmup_epochs, total) if fine_tune else total
    frozen_epochs = max(0, frozen_until - initial_epoch)
    history: dict[str, list[float]] = {}
    extra: dict[str, Any] = {"backbone": plan.backbone, "frozen_epochs": frozen_epochs}
    if frozen_epochs > 0:
        phase1 = dataclasses.replace(settings, max_epochs=frozen_epochs)
        if cache_features and not _augments(settings):
            extract = extractor_model(model)

            def run(x: np.ndarray) -> np.ndarray:
                return extract.predict(x, batch_size=256, verbose=0)

            kw = dict(backbone=plan.backbone, weights_tag=plan.weights_tag, size=plan.size,
                      cache_dir=feature_cache_dir)
            if fold is not None:
                f_pool, src = feature_cache.cached_features(run, fold.pool_x, **kw)
                f_train, f_val = f_pool[fold.train_rows], f_pool[fold.val_rows]
                extra["feature_cache"] = f"cross-validation pool: {src}"
            else:
                f_train, src_train = feature_cache.cached_features(run, data.train.x, **kw)
                f_val, src_val = feature_cache.cached_features(run, data.val.x, **kw)
                extra["feature_cache"] = f"train: {src_train}, val: {src_val}"
            features = dataclasses.replace(data, train=Split(f_train, data.train.y),
                                           val=Split(f_val, data.val.y), test=None)
            result = train(head_model(model), head, features, phase1, callbacks=callbacks,
                           on_epoch=on_epoch, initial_epoch=initial_epoch)
        else:
            extra["feature_cache"] = "off"
            result = train(model, head, data, phase1, callbacks=callbacks, on_epoch=on_epoch,
                           initial_epoch=initial_epoch)
        if result.diverged:
            result.extra.update(extra)
            return result
        history = result.history
    done = initial_epoch + len(history.get("loss", []))
    remaining = settings.max_epochs - frozen_epochs
    if fine_tune and remaining > 0:
        extra["unfrozen_layers"] = unfreeze_top(model)
        rate = settings.learning_rate * plan.fine_tune_lr_factor
        phase2 = dataclasses.replace(settings, max_epochs=remaining, learning_rate=rate)
        model.compile(optimizer=make_optimizer(phase2.optimizer, rate, phase2.momentum),
                      loss=head.loss, metrics=[head.accuracy_metric()])
        result = train(model, head, data, phase2, callbacks=callbacks, on_epoch=on_epoch,
                       initial_epoch=done)
        for key, values in result.history.items():
            history.setdefault(key, []).extend(values)
        if result.diverged:
            return TrainResult(history, len(history.get("loss", [])), True, result.reason,
                               extra)
    return TrainResult(history, len(history.get("loss", [])), extra=extra)


def __getattr__(name: str):
    if name == "BackboneInput":  # where Keras looks for a saved model's class by its module
        from .custom_objects import BackboneInput

        return BackboneInput
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
