"""Training-split augmentation in the labs' units, built from Keras 3 preprocessing layers.

The labs used ``ImageDataGenerator`` (rotation in degrees, shifts and zoom as fractions) and
``skimage.exposure.rescale_intensity`` between percentiles. Keras 3 layers take a rotation as
a fraction of a full turn, so degrees are converted here (``degrees / 360``). Searchable keys
(the ``space:`` section), all off by default:

    rotation: degrees, images turn by up to +-rotation
    width_shift, height_shift: fractions of the width / height, shifted by up to +-shift
    horizontal_flip, vertical_flip: true or false
    zoom: fraction, each axis zoomed in or out by up to +-zoom (as ImageDataGenerator)
    intensity_percentile: percent p; each image's intensities are stretched to [0, 1] from
        its q_lo-th to q_hi-th percentile, q_lo drawn in [0, p] and q_hi in [100 - p, 100]

Only the training split is augmented; validation and test images are never changed.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

AUGMENT_KEYS = ("rotation", "width_shift", "height_shift", "horizontal_flip", "vertical_flip",
                "zoom", "intensity_percentile")
AUGMENT_ALLOWED = {
    "rotation": "degrees in [0, 180]",
    "width_shift": "a fraction of the width in [0, 1)",
    "height_shift": "a fraction of the height in [0, 1)",
    "horizontal_flip": "true or false",
    "vertical_flip": "true or false",
    "zoom": "a fraction in [0, 1)",
    "intensity_percentile": "percent in [0, 50)",
}


def check_augment_value(name: str, value: Any) -> str | None:
    """What is allowed for ``name`` if ``value`` is not, else None."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = {
        "rotation": number and 0 <= value <= 180,
        "width_shift": number and 0 <= value < 1,
        "height_shift": number and 0 <= value < 1,
        "horizontal_flip": isinstance(value, bool),
        "vertical_flip": isinstance(value, bool),
        "zoom": number and 0 <= value < 1,
        "intensity_percentile": number and 0 <= value < 50,
    }[name]
    return None if ok else AUGMENT_ALLOWED[name]


@dataclass(frozen=True)
class Augmentation:
    rotation: float = 0.0  # degrees
    width_shift: float = 0.0  # fraction of the width
    height_shift: float = 0.0  # fraction of the height
    horizontal_flip: bool = False
    vertical_flip: bool = False
    zoom: float = 0.0  # fraction
    intensity_percentile: float = 0.0  # percent

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Augmentation:
        return cls(**{f.name: params[f.name] for f in fields(cls) if f.name in params})

    @property
    def enabled(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def layer(self, seed: int | None = None):
        """A ``keras.Sequential`` of random layers, to map over training batches."""
        import keras

        steps: list[Any] = []
        flips = "_and_".join(m for m, on in (("horizontal", self.horizontal_flip),
                                             ("vertical", self.vertical_flip)) if on)
        if flips:
            steps.append(keras.layers.RandomFlip(flips, seed=seed))
        if self.rotation:
            steps.append(keras.layers.RandomRotation(self.rotation / 360.0, fill_mode="nearest",
                                                     seed=seed))
        if self.width_shift or self.height_shift:
            steps.append(keras.layers.RandomTranslation(self.height_shift, self.width_shift,
                                                        fill_mode="nearest", seed=seed))
        if self.zoom:
            steps.append(keras.layers.RandomZoom((-self.zoom, self.zoom),
                                                 (-self.zoom, self.zoom),
                                                 fill_mode="nearest", seed=seed))
        if self.intensity_percentile:
            steps.append(percentile_rescale_class()(self.intensity_percentile, seed=seed))
        return keras.Sequential(steps, name="augmentation")

    def apply(self, images: np.ndarray, seed: int = 0) -> np.ndarray:
        """Augment a batch of images outside training (for the logged sample grid)."""
        import keras

        out = self.layer(seed)(np.asarray(images, dtype="float32"), training=True)
        return np.clip(keras.ops.convert_to_numpy(out), 0.0, 1.0)


def _percentile_rescale_layer():
    import keras

    @keras.saving.register_keras_serializable(package="tunelab")
    class RandomPercentileRescale(keras.layers.Layer):
        """Per image, stretch intensities from random low/high percentiles to [0, 1] (as
        ``exposure.rescale_intensity(img, in_range=(p_lo, p_hi))``), clipping outside."""

        def __init__(self, percent: float, seed: int | None = None, **kwargs):
            super().__init__(**kwargs)
            self.percent = float(percent)
            self.seed = seed
            self.generator = keras.random.SeedGenerator(seed)

        def call(self, images, training=True):
            ops = keras.ops
            if not training:
                return images
            shape = ops.shape(images)
            flat = ops.reshape(images, (shape[0], -1))
            ordered = ops.sort(flat, axis=-1)
            n = ops.cast(ops.shape(flat)[1] - 1, "float32")
            lo_q = keras.random.uniform((shape[0], 1), 0.0, self.percent / 100.0,
                                        seed=self.generator)
            hi_q = keras.random.uniform((shape[0], 1), 1.0 - self.percent / 100.0, 1.0,
                                        seed=self.generator)
            lo = ops.take_along_axis(ordered, ops.cast(ops.round(lo_q * n), "int32"), axis=-1)
            hi = ops.take_along_axis(ordered, ops.cast(ops.round(hi_q * n), "int32"), axis=-1)
            scaled = (flat - lo) / ops.maximum(hi - lo, 1e-6)
            return ops.reshape(ops.clip(scaled, 0.0, 1.0), shape)

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self):
            return {**super().get_config(), "percent": self.percent, "seed": self.seed}

    return RandomPercentileRescale


_LAYER_CLASS: list = []


def percentile_rescale_class():
    """The ``RandomPercentileRescale`` layer class, built once on first use (keras is imported
    only when augmentation is used)."""
    if not _LAYER_CLASS:
        _LAYER_CLASS.append(_percentile_rescale_layer())
    return _LAYER_CLASS[0]


def augmented_samples(data: Any, augmentation: Augmentation, seed: int, per_class: int = 2,
                      variants: int = 4, max_classes: int = 8,
                      ) -> tuple[np.ndarray, list[str]] | None:
    """What a trial saw of its data: ``(rows, 1 + variants, H, W, C)``, each row an original
    training image of ``data`` (a ``Dataset``) then ``variants`` augmented copies; None when
    the trial does not augment."""
    if not augmentation.enabled:
        return None
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for c, name in enumerate(data.class_names[:max_classes]):
        members = np.flatnonzero(data.train.y == c)
        for i in rng.choice(members, size=min(per_class, len(members)), replace=False):
            image = np.asarray(data.train.x[int(i)], dtype="float32")
            batch = np.repeat(image[None], variants, axis=0)
            rows.append(np.concatenate([image[None], augmentation.apply(batch, seed)]))
            labels.append(name)
    return np.stack(rows), labels
