"""The registered model: a Keras classifier that carries its own preprocessing.

``mlflow.pyfunc.load_model("models:/NAME@champion").predict(x)`` accepts raw 8-bit images
and returns one row per image: ``label`` (the predicted class name) and ``prob_<class>``
(one float column per class, in the training order, summing to 1).

Probabilities are calibrated: ``tunelab register`` fits temperature (or Platt) scaling on
the validation split's outputs and stores it in the model's ``meta`` (``calibration``: the
dict of ``tracking.evaluation.Calibration.to_dict``). ``predict`` re-applies it here with
numpy alone and decides with the stored operating point: for two classes ``label`` is the
positive class when its calibrated probability is ``>= calibration.threshold.threshold``,
otherwise (or with no threshold, or more classes) the argmax. Only calibrated outputs are
named ``prob_*``: a model logged without a calibration returns ``score_<class>`` columns
(the head's outputs mapped to the simplex, which for a hinge head are not probabilities).

What ``predict`` accepts, exactly:

* a numpy array of integer dtype (uint8, or any integer type whose values lie in 0..255,
  as MLflow's REST server produces from JSON) of shape ``(N, H, W)`` (grey) or
  ``(N, H, W, C)`` with C = 1 (grey), 3 (RGB) or 4 (RGBA, alpha dropped); any H and W;
* a 1-D object array of images ``(H, W)`` / ``(H, W, C)`` whose sizes may differ from one
  image to the next (``a = np.empty(n, object); a[:] = images``); elements may be nested
  lists of integers, which is what the REST server hands over for ``{"inputs": [...]}``.
  A plain Python list is refused by MLflow itself before it reaches this code;
  ``ImageClassifier.predict`` called directly accepts one.

Each image is scaled to [0, 1], converted to the model's channels (RGB -> grey with the
ITU-R 601 luma weights the training data used; grey -> RGB by repetition) and resized to the
training size (bilinear, anti-aliased when shrinking). Anything else (floats, bools, other
ranks, values above 255, an empty batch) raises ``ValueError`` saying what was given.

Why the signature's input is ``Tensor(object, (-1,))``: MLflow enforces one dtype and one
rank per tensor spec, so a spec of ``uint8 (-1, -1, -1, -1)`` would refuse ``(N, H, W)``
batches before they reach this code. The object spec is the one MLflow passes through
unchanged; the checks above are enforced here instead. The output schema is exact.

This module imports nothing from tunelab at load time: it is pickled by value into the
model, so the model loads wherever numpy, pandas, keras/tensorflow, scikit-image and mlflow
are installed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

_LUMA = np.array([0.299, 0.587, 0.114], dtype="float32")


def prepare_images(model_input: Any, input_shape: Sequence[int]) -> np.ndarray:
    """Raw 8-bit images -> float32 ``(N, H, W, C)`` in [0, 1] of the model's input shape."""
    height, width, channels = (int(v) for v in input_shape)
    images = _as_image_list(model_input)
    out = np.empty((len(images), height, width, channels), dtype="float32")
    for i, image in enumerate(images):
        out[i] = _convert(image, height, width, channels, i)
    return out


def _as_image_list(model_input: Any) -> list[np.ndarray]:
    if isinstance(model_input, pd.DataFrame):
        raise ValueError("predict takes a numpy array of raw 8-bit images (N, H, W) or "
                         "(N, H, W, C), or a list of images, not a DataFrame")
    if isinstance(model_input, np.ndarray) and model_input.dtype != object:
        if model_input.ndim not in (3, 4):
            raise ValueError(f"expected a batch of images (N, H, W) or (N, H, W, C); got an "
                             f"array of shape {model_input.shape}")
        images = list(model_input)
    elif isinstance(model_input, (list, tuple, np.ndarray)):
        images = [np.asarray(image) for image in model_input]
    else:
        raise ValueError(f"expected a numpy array or a list of images, got "
                         f"{type(model_input).__name__}")
    if not images:
        raise ValueError("the batch is empty: pass at least one image")
    return images


def _convert(image: np.ndarray, height: int, width: int, channels: int, i: int) -> np.ndarray:
    if image.dtype == object:  # nested lists from JSON (REST serving) arrive as objects
        try:
            image = np.asarray(image.tolist())
        except ValueError:
            pass
    if image.dtype == object or not np.issubdtype(image.dtype, np.integer):
        raise ValueError(f"image {i}: dtype {image.dtype} is not raw 8-bit; pass integers "
                         "0..255 (uint8). Images scaled to [0, 1]: (x * 255).round()"
                         ".astype('uint8')")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4) or min(image.shape[:2]) < 1:
        raise ValueError(f"image {i}: shape {image.shape} is not (H, W) or (H, W, C) with "
                         "C = 1, 3 or 4")
    if image.size and (image.min() < 0 or image.max() > 255):
        raise ValueError(f"image {i}: values {image.min()}..{image.max()} are outside 0..255; "
                         "pass 8-bit images")
    x = image.astype("float32") / 255.0
    if x.shape[-1] == 4:
        x = x[..., :3]
    if x.shape[-1] == 3 and channels == 1:
        x = (x @ _LUMA)[..., None]
    elif x.shape[-1] == 1 and channels == 3:
        x = np.repeat(x, 3, axis=-1)
    if x.shape[:2] != (height, width):
        from skimage.transform import resize

        shrink = height < x.shape[0] or width < x.shape[1]
        x = resize(x, (height, width, channels), order=1, anti_aliasing=shrink,
                   preserve_range=True)
    return np.clip(x, 0.0, 1.0)


def probabilities(outputs: np.ndarray, loss: str) -> np.ndarray:
    """Head outputs -> (N, n_classes) probabilities; mirrors ``tunelab.models.Head``."""
    outputs = np.asarray(outputs, dtype="float64")
    if loss == "binary_crossentropy":
        p1 = outputs.reshape(-1)
    elif loss == "hinge":
        p1 = (np.clip(outputs.reshape(-1), -1.0, 1.0) + 1.0) / 2.0
    elif loss == "categorical_hinge":
        exp = np.exp(outputs - outputs.max(axis=1, keepdims=True))
        return exp / exp.sum(axis=1, keepdims=True)
    else:
        return outputs
    return np.stack([1.0 - p1, p1], axis=1)


def probability_columns(class_names: Sequence[str], calibrated: bool = True) -> list[str]:
    prefix = "prob" if calibrated else "score"
    return [f"{prefix}_{name}" for name in class_names]


def _logits(outputs: np.ndarray, loss: str | None) -> np.ndarray:
    """Mirrors ``tracking.clinical_metrics.logits_from_outputs`` (numpy only, no checks)."""
    out = np.asarray(outputs, dtype="float64")
    eps = 1e-12
    if loss in ("binary_crossentropy", "hinge"):
        out = out.reshape(-1)
        if loss == "binary_crossentropy":
            q = np.clip(out, eps, 1 - eps)
            out = np.log(q) - np.log1p(-q)
        return np.stack([np.zeros_like(out), out], axis=1)
    if loss == "categorical_hinge":
        return out
    return np.log(np.clip(out, eps, 1.0))


def calibrated_probabilities(outputs: np.ndarray, calibration: Mapping[str, Any]) -> np.ndarray:
    """Raw head outputs -> calibrated ``(N, k)`` probabilities, from the stored dict."""
    z = _logits(outputs, calibration.get("loss"))
    cal = calibration["calibrator"]
    if cal["kind"] == "temperature":
        s = z / float(cal["temperature"])
        e = np.exp(s - s.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if cal["kind"] == "platt":
        pos = int(cal.get("positive", 1))
        x = z[:, pos] - z[:, 1 - pos]
        p = np.exp(-np.logaddexp(0.0, -(float(cal["a"]) * x + float(cal["b"]))))
        return np.stack([1 - p, p] if pos == 1 else [p, 1 - p], axis=1)
    raise ValueError(f"unknown calibrator kind {cal['kind']!r}")


def decide(probs: np.ndarray, calibration: Mapping[str, Any] | None) -> np.ndarray:
    """Class ids: the stored threshold on P(positive) (two classes), else argmax."""
    threshold = (calibration or {}).get("threshold")
    if threshold is None or probs.shape[1] != 2:
        return probs.argmax(axis=1)
    pos = int(calibration.get("positive", 1))
    return np.where(probs[:, pos] >= float(threshold["threshold"]), pos, 1 - pos)


class ImageClassifier(mlflow.pyfunc.PythonModel):
    """Artifacts: ``model`` (a .keras file) and ``meta`` (JSON: loss, class_names,
    input_shape, and for binary tasks ``threshold``, the decision threshold ``predict``
    applies to ``prob_<class 1>``)."""

    # MLflow wraps a subclass's untyped ``predict`` and warns, in yellow, at every definition
    # of the class: on import and again in every process that loads the model (the class is
    # pickled by value). The input is checked here (see the module's docstring), not by
    # MLflow's type-hint validation, so it is turned off, warning and all, with the switch
    # MLflow's own ChatModel uses (private: tests/tracking/test_pyfunc_quiet.py fails if a
    # later MLflow drops it). tunelab's commands hid the warning already (tunelab/quiet.py);
    # this is for `tunelab -v` and a user's own `mlflow.pyfunc.load_model`.
    _skip_type_hint_validation = True

    def __init__(self, model: Any = None, meta: Mapping[str, Any] | None = None):
        self.model, self.meta = model, dict(meta or {})

    def load_context(self, context) -> None:
        import keras

        self.model = keras.saving.load_model(context.artifacts["model"], compile=False,
                                             safe_mode=True)
        with open(context.artifacts["meta"]) as f:
            self.meta = json.load(f)

    def outputs(self, model_input) -> np.ndarray:
        """The head's raw outputs (margins for a hinge head) of raw 8-bit images."""
        x = prepare_images(model_input, self.meta["input_shape"])
        return np.asarray(self.model.predict(x, batch_size=256, verbose=0))

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        outputs = self.outputs(model_input)
        calibration = self.meta.get("calibration")
        if calibration:
            probs = calibrated_probabilities(outputs, calibration)
        else:
            probs = probabilities(outputs, self.meta["loss"])
        names = list(self.meta["class_names"])
        frame = pd.DataFrame(probs, columns=probability_columns(names, bool(calibration)))
        frame.insert(0, "label", [names[i] for i in decide(probs, calibration)])
        return frame


class EnsembleClassifier(ImageClassifier):
    """Several members' averaged probabilities as one model (``tunelab register --ensemble
    K``: the top K confirmed candidates). Artifacts: ``model_0``, ``model_1``, ... (.keras
    files) and ``meta`` (as ``ImageClassifier``'s, with ``losses``: each member's loss).

    Its *outputs* are the mean of the members' probabilities, so everything downstream
    treats it as one softmax model (``meta["loss"]`` is ``categorical_crossentropy``): the
    stored calibration is fitted on those outputs (temperature on their logarithm) and the
    stored threshold applies to the calibrated mean; without a calibration the columns are
    the raw mean, named ``score_<class>``."""

    def __init__(self, models: Sequence[Any] = (), meta: Mapping[str, Any] | None = None):
        super().__init__(None, meta)
        self.models = list(models)

    def load_context(self, context) -> None:
        import keras

        with open(context.artifacts["meta"]) as f:
            self.meta = json.load(f)
        names = sorted((k for k in context.artifacts if k.startswith("model_")),
                       key=lambda k: int(k.split("_")[1]))
        self.models = [keras.saving.load_model(context.artifacts[k], compile=False,
                                               safe_mode=True) for k in names]

    def member_probabilities(self, x: np.ndarray) -> np.ndarray:
        losses = self.meta.get("losses") or [self.meta["loss"]] * len(self.models)
        return np.stack([probabilities(m.predict(x, batch_size=256, verbose=0), loss)
                         for m, loss in zip(self.models, losses, strict=True)])

    def outputs(self, model_input) -> np.ndarray:
        """The mean of the members' probabilities of raw 8-bit images."""
        x = prepare_images(model_input, self.meta["input_shape"])
        return self.member_probabilities(x).mean(axis=0)

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        mean = self.outputs(model_input)
        calibration = self.meta.get("calibration") or {}
        calibrated = "calibrator" in calibration
        probs = calibrated_probabilities(mean, calibration) if calibrated else mean
        names = list(self.meta["class_names"])
        frame = pd.DataFrame(probs, columns=probability_columns(names, calibrated))
        frame.insert(0, "label", [names[i] for i in decide(probs, calibration or None)])
        return frame


def signature(class_names: Sequence[str], calibrated: bool = True):
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema, TensorSpec

    inputs = Schema([TensorSpec(np.dtype(object), (-1,))])
    outputs = Schema([ColSpec("string", "label")]
                     + [ColSpec("double", c)
                        for c in probability_columns(class_names, calibrated)])
    return ModelSignature(inputs=inputs, outputs=outputs)
