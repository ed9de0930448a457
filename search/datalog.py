"""What a trial saw of its data: a grid of augmented training samples, logged as a PNG."""

from __future__ import annotations

from typing import Any

import numpy as np

from tunelab.models.data import Dataset


def augmented_samples(data: Dataset, settings: Any, seed: int, per_class: int = 2,
                      variants: int = 4, max_classes: int = 8,
                      ) -> tuple[np.ndarray, list[str]] | None:
    """``(rows, 1 + variants, H, W, C)``: each row an original training image, then
    ``variants`` augmented copies; None when the trial does not augment."""
    augmentation = settings.augmentation
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


def log_augmented_samples(run: Any, settings: Any, data: Dataset, seed: int) -> None:
    """Log ``augmentation.png`` to the trial's run (originals in the first column)."""
    log = getattr(run, "log_image_grid", None)
    if log is None:
        return
    samples = augmented_samples(data, settings, seed)
    if samples is not None:
        images, labels = samples
        a = settings.augmentation
        title = ", ".join(f"{k}={v}" for k, v in vars(a).items() if v)
        log(images, labels, "augmentation.png", f"augmented training samples ({title})")
