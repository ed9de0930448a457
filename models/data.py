"""Datasets as arrays in memory: images scaled to [0, 1], integer labels, sorted class names.

Sources here: scikit-learn's bundled ``digits`` (real 8x8 scans, no download) and
MedMNIST-style ``.npz`` files (``train_images``, ``train_labels``, optional ``val_*`` and
``test_*``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split


class DataError(ValueError):
    """A dataset that cannot be used; the message names the file or key."""


@dataclass(frozen=True)
class Split:
    x: np.ndarray  # (N, H, W, C) float32 in [0, 1]
    y: np.ndarray  # (N,) int64 class ids

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Dataset:
    name: str
    class_names: tuple[str, ...]
    train: Split
    val: Split
    test: Split | None = None
    info: dict = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])  # type: ignore[return-value]

    def fingerprint(self) -> str:
        """Short content hash of every split: the same data gives the same string."""
        h = hashlib.sha256()
        for split in (self.train, self.val, self.test):
            if split is not None:
                h.update(np.ascontiguousarray(split.x).tobytes())
                h.update(np.ascontiguousarray(split.y).tobytes())
        h.update("|".join(self.class_names).encode())
        return h.hexdigest()[:16]

    def class_counts(self) -> dict[str, dict[str, int]]:
        out = {}
        for split_name in ("train", "val", "test"):
            split = getattr(self, split_name)
            if split is not None:
                counts = np.bincount(split.y, minlength=self.n_classes)
                out[split_name] = {c: int(n) for c, n in zip(self.class_names, counts)}
        return out


def load_dataset(source: str = "digits", *, image_size: int | None = None,
                 color_mode: str = "grayscale", validation_fraction: float = 0.2,
                 test_fraction: float = 0.0, seed: int = 0) -> Dataset:
    """Load a source by name or path, resize, and split (stratified, seeded)."""
    if source == "digits":
        train_x, train_y, names, val, test = *_digits(), None, None
    elif source.endswith(".npz"):
        train_x, train_y, names, val, test = _npz(Path(source))
    else:
        raise DataError(
            f"dataset.source: {source!r} is not a known source; use 'digits' or a path to a "
            "MedMNIST-style .npz file"
        )
    channels = 3 if color_mode == "rgb" else 1
    prep = lambda x: _prepare(x, image_size, channels)  # noqa: E731
    train_x = prep(train_x)
    if test is None and test_fraction > 0:
        train_x, test_x, train_y, test_y = train_test_split(
            train_x, train_y, test_size=test_fraction, stratify=train_y, random_state=seed)
        test = Split(test_x, test_y)
    elif test is not None:
        test = Split(prep(test[0]), test[1])
    if val is None:
        train_x, val_x, train_y, val_y = train_test_split(
            train_x, train_y, test_size=validation_fraction, stratify=train_y,
            random_state=seed)
        val = Split(val_x, val_y)
    else:
        val = Split(prep(val[0]), val[1])
    dataset = Dataset(name=source if source == "digits" else Path(source).stem,
                      class_names=names, train=Split(train_x, train_y), val=val, test=test,
                      info={"source": source})
    _check(dataset, source)
    return dataset


def _digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype("float32")
    return images, bunch.target.astype("int64"), tuple(str(n) for n in bunch.target_names)


def _npz(path: Path):
    if not path.is_file():
        raise DataError(f"dataset.source: {path}: no such file")
    try:
        arrays = np.load(path)
    except Exception as err:  # numpy raises several kinds for a damaged archive
        raise DataError(f"{path}: not a readable .npz archive ({err})") from None
    keys = set(arrays.files)
    if "train_images" not in keys or "train_labels" not in keys:
        raise DataError(f"{path}: needs the keys 'train_images' and 'train_labels'; "
                        f"found {sorted(keys)}")

    def pair(prefix: str):
        if f"{prefix}_images" not in keys:
            return None
        x = arrays[f"{prefix}_images"]
        y = arrays[f"{prefix}_labels"].reshape(-1).astype("int64")
        if len(x) != len(y):
            raise DataError(f"{path}: {prefix}_images has {len(x)} images but "
                            f"{prefix}_labels has {len(y)} labels")
        return _to_unit(x), y

    train_x, train_y = pair("train")
    n_classes = int(train_y.max()) + 1
    names = tuple(str(i) for i in range(n_classes))
    return train_x, train_y, names, pair("val"), pair("test")


def _to_unit(x: np.ndarray) -> np.ndarray:
    if np.issubdtype(x.dtype, np.integer):
        return (x.astype("float32") / float(np.iinfo(x.dtype).max)).astype("float32")
    return x.astype("float32")


def _prepare(x: np.ndarray, image_size: int | None, channels: int) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[-1] == 3 and channels == 1:
        x = x @ np.array([0.299, 0.587, 0.114], dtype="float32")[:, None]
    elif x.shape[-1] == 1 and channels == 3:
        x = np.repeat(x, 3, axis=-1)
    if image_size is not None and x.shape[1:3] != (image_size, image_size):
        from skimage.transform import resize

        x = resize(x, (len(x), image_size, image_size, x.shape[-1]), order=1,
                   anti_aliasing=image_size < x.shape[1], preserve_range=True)
    return np.clip(x, 0.0, 1.0).astype("float32")


def _check(dataset: Dataset, source: str) -> None:
    if dataset.n_classes < 2:
        raise DataError(f"{source}: only one class found; a classifier needs at least two")
    for name in ("train", "val"):
        split = getattr(dataset, name)
        missing = set(range(dataset.n_classes)) - set(np.unique(split.y).tolist())
        if missing and name == "train":
            raise DataError(f"{source}: the {name} split has no images of class(es) "
                            f"{sorted(dataset.class_names[i] for i in missing)}")
