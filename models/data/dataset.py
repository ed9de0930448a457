"""Datasets as arrays: images scaled to [0, 1], integer labels, class names, three splits.

``load_dataset`` finds a source (``sources.py``: digits, MedMNIST ``.npz``, CIFAR-10, image
folders, file-name or CSV labels), decodes and checks every image once (``images.py``),
splits it (stratified, seeded, and group-aware with ``group_pattern``) and, given a
``cache_dir``, writes the result there as ``.npy`` files that later calls (every worker
process, every trial) open memory-mapped instead of decoding again. Decoding writes straight
into those files, so a dataset larger than RAM never has to fit in memory.

Order of the splits: a source's own test split is used as is; without one, ``test_fraction``
is carved from the training data first (final evaluation only), then ``validation_fraction``
when the source has no validation split.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .images import DEFAULT_MAX_PIXELS, ImageError, convert, read_image
from .sources import DataError, Part, Source, find_source

__all__ = ["DataError", "Dataset", "Split", "load_dataset", "stratified_holdout"]
CACHE_VERSION = 1
_CHUNK = 512  # images converted or copied at a time: bounds memory for large sources


@dataclass(frozen=True)
class Split:
    x: np.ndarray  # (N, H, W, C) float32 in [0, 1]; may be a read-only memory map
    y: np.ndarray  # (N,) int64 class ids
    groups: np.ndarray | None = None  # (N,) group ids from dataset.group_pattern

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index: np.ndarray) -> Split:
        groups = None if self.groups is None else self.groups[index]
        return Split(np.asarray(self.x[index]), self.y[index], groups)


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

    @property
    def class_index(self) -> dict[str, int]:
        """The class-name -> output-index mapping a model trained on this data uses."""
        return {name: i for i, name in enumerate(self.class_names)}

    def fingerprint(self) -> str:
        """Short content hash of every split: the same data gives the same string."""
        if "fingerprint" in self.info:
            return self.info["fingerprint"]
        return _fingerprint(self)

    def class_counts(self) -> dict[str, dict[str, int]]:
        out = {}
        for split_name in ("train", "val", "test"):
            split = getattr(self, split_name)
            if split is not None:
                counts = np.bincount(split.y, minlength=self.n_classes)
                out[split_name] = {c: int(n) for c, n in zip(self.class_names, counts, strict=True)}
        return out


def _fingerprint(dataset: Dataset) -> str:
    h = hashlib.sha256()
    for split in (dataset.train, dataset.val, dataset.test):
        if split is not None:
            for start in range(0, len(split), _CHUNK):
                h.update(np.ascontiguousarray(split.x[start:start + _CHUNK]).tobytes())
            h.update(np.ascontiguousarray(split.y).tobytes())
    h.update("|".join(dataset.class_names).encode())
    return h.hexdigest()[:16]


def load_dataset(source: str = "digits", *, image_size: int | None = None,
                 color_mode: str = "grayscale", validation_fraction: float = 0.2,
                 test_fraction: float = 0.0, seed: int = 0, label_pattern: str | None = None,
                 labels_csv: str | None = None, group_pattern: str | None = None,
                 skip_bad_images: bool = False, max_image_pixels: int = DEFAULT_MAX_PIXELS,
                 cache_dir: str | Path | None = None, progress: bool = True,
                 class_names: Sequence[str] | None = None) -> Dataset:
    """Find, decode, check and split a source; with ``cache_dir``, decode only once.
    ``class_names`` names a ``.npz``'s class ids 0, 1, ... (``dataset.class_names``)."""
    found = find_source(source, label_pattern=label_pattern, labels_csv=labels_csv,
                        group_pattern=group_pattern, class_names=class_names)
    options = {"image_size": image_size, "color_mode": color_mode,
               "validation_fraction": validation_fraction, "test_fraction": test_fraction,
               "seed": seed, "label_pattern": label_pattern, "group_pattern": group_pattern,
               "skip_bad_images": skip_bad_images, "max_image_pixels": max_image_pixels}
    if class_names is not None:  # only then: existing caches keep their keys
        options["class_names"] = list(class_names)
    name = source if source == "digits" else Path(source).stem
    # digits too: a worker that opens the cache never imports scikit-learn for the split
    if cache_dir is None:
        return _build(found, name, options, None, progress)
    cache_dir = Path(cache_dir)
    final = cache_dir / cache_key(found, options)
    if not (final / "meta.json").is_file():
        created = [p for p in (cache_dir, *cache_dir.parents) if not p.exists()]
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_dir / f"{final.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            _build(found, name, options, tmp, progress)
            try:
                os.replace(tmp, final)
            except OSError:  # another process finished the same cache first
                pass
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            for folder in created:  # bad data leaves no trace in the stores' folder
                try:
                    folder.rmdir()
                except OSError:
                    break
            raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return _open_cached(final)


AUTO_MAX_SIDE = 128


def auto_image_size(source: str, *, label_pattern: str | None = None,
                    labels_csv: str | None = None, sample: int = 400) -> tuple[int | None, str]:
    """``dataset.image_size: auto``: (side, or None for the native size; why). Digits: 16
    (its 8x8 scans upscaled); arrays whose images share one size (.npz, CIFAR-10): native;
    image files: the median side of up to ``sample`` of them (headers only), capped at 128."""
    if source == "digits":
        return 16, "16x16 (digits' 8x8 scans upscaled)"
    found = find_source(source, label_pattern=label_pattern, labels_csv=labels_csv)
    arrays = [p.x for p in found.parts.values() if p.x is not None]
    if arrays and len({a.shape[1:3] for a in arrays}) == 1:
        h, w = arrays[0].shape[1:3]
        return None, f"native {w}x{h} (the arrays' one size)"
    paths = [path for p in found.parts.values() for path in (p.paths or [])]
    step = max(1, len(paths) // sample)
    sides = []
    for path in paths[::step][:sample]:
        try:
            from PIL import Image

            with Image.open(path) as im:
                sides.append(max(im.size))
        except Exception:  # DICOM, unreadable: the loader reports those itself
            continue
    if not sides:
        return 64, "64x64 (no image size could be read from the headers)"
    median = int(np.median(sides))
    side = min(median, AUTO_MAX_SIDE)
    return side, (f"{side}x{side} (median image side {median}"
                  + (f", capped at {AUTO_MAX_SIDE})" if median > AUTO_MAX_SIDE else ")"))


def cache_key(found: Source, options: dict) -> str:
    """Hash of the source's files (path, size, modification time) and every option that
    changes the decoded arrays: a changed file or option gives a new cache entry."""
    h = hashlib.sha256(json.dumps({"v": CACHE_VERSION, "kind": found.kind,
                                   "location": str(Path(found.location).resolve())
                                   if found.kind != "digits" else "digits",
                                   **options}, sort_keys=True, default=str).encode())
    for split, part in sorted(found.parts.items()):
        h.update(split.encode())
        if part.paths is not None:
            files = part.paths
        elif found.kind == "digits":
            files = []
        else:  # an array source: its file, or every file of its folder (CIFAR-10)
            loc = Path(found.location)
            files = sorted(loc.iterdir()) if loc.is_dir() else [loc]
        for p in files:
            st = p.stat()
            h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
        h.update(np.ascontiguousarray(part.y).tobytes())
    return h.hexdigest()[:20]


# -- building ------------------------------------------------------------------------------
def _allocator(folder: Path | None) -> Callable[[str, tuple], np.ndarray]:
    def alloc(name: str, shape: tuple) -> np.ndarray:
        if folder is None:
            return np.empty(shape, dtype="float32")
        return np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype="float32",
                                         shape=shape)
    return alloc


def _build(found: Source, name: str, options: dict, folder: Path | None,
           progress: bool) -> Dataset:
    alloc = _allocator(folder)
    channels = 3 if options["color_mode"] == "rgb" else 1
    decoded: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # split -> (x, kept indices)
    stats: dict[str, Counter] = {"sizes": Counter(), "channels": Counter(), "bits": Counter(),
                                 "formats": Counter()}
    skipped: list[str] = []
    for split, part in found.parts.items():
        if part.x is not None:
            decoded[split] = (_convert_array(part.x, options["image_size"], channels,
                                             alloc, f"source_{split}"),
                              np.arange(len(part)))
            stats["sizes"][f"{part.x.shape[2]}x{part.x.shape[1]}"] += len(part)
            stats["channels"][part.x.shape[3] if part.x.ndim == 4 else 1] += len(part)
            stats["bits"][part.x.dtype.itemsize * 8 if part.x.dtype.kind in "ui" else 32] += \
                len(part)
        else:
            decoded[split] = _decode_files(part, options, channels, alloc, f"source_{split}",
                                           stats, skipped, progress)
    if skipped:
        shown = "\n  ".join(skipped[:20]) + ("\n  ..." if len(skipped) > 20 else "")
        message = (f"{found.location}: skipped {len(skipped)} unreadable image(s) "
                   f"(dataset.skip_bad_images is true):\n  {shown}")
        warnings.warn(message, stacklevel=3)
        print(f"tunelab: warning: {message}", file=sys.stderr, flush=True)
    index = _split_indices(found, decoded, options)
    splits: dict[str, Split] = {}
    for split, (source_split, rows) in index.items():
        x_src = decoded[source_split][0]
        x = alloc(split + "_x", (len(rows),) + x_src.shape[1:])
        for start in range(0, len(rows), _CHUNK):
            x[start:start + _CHUNK] = x_src[rows[start:start + _CHUNK]]
        part = found.parts[source_split]
        groups = None if part.groups is None else part.groups[rows]
        splits[split] = Split(x, part.y[rows].copy(), groups)
    for split in found.parts:
        if folder is not None:
            del decoded[split]
            (folder / f"source_{split}.npy").unlink(missing_ok=True)
    info = {"source": found.location, "kind": found.kind, "options": options,
            "n_skipped": len(skipped), "skipped": skipped[:1000],
            "image_sizes": dict(stats["sizes"].most_common(20)),
            "channels": {str(k): v for k, v in stats["channels"].items()},
            "bit_depths": {str(k): v for k, v in stats["bits"].items()},
            "formats": dict(stats["formats"])}
    dataset = Dataset(name=name, class_names=found.class_names, train=splits["train"],
                      val=splits["val"], test=splits.get("test"), info=info)
    _check(dataset, found.location)
    info["fingerprint"] = _fingerprint(dataset)
    if folder is not None:
        for split_name, split in splits.items():
            x = split.x
            if isinstance(x, np.memmap):
                x.flush()
            np.save(folder / f"{split_name}_y.npy", split.y)
            if split.groups is not None:
                np.save(folder / f"{split_name}_groups.npy", split.groups.astype(str))
        meta = {"name": name, "class_names": list(found.class_names), "info": info,
                "splits": sorted(splits)}
        (folder / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
    return dataset


def _open_cached(folder: Path) -> Dataset:
    meta = json.loads((folder / "meta.json").read_text())
    splits = {}
    for s in meta["splits"]:
        groups_file = folder / f"{s}_groups.npy"
        splits[s] = Split(np.load(folder / f"{s}_x.npy", mmap_mode="r", allow_pickle=False),
                          np.load(folder / f"{s}_y.npy", allow_pickle=False),
                          np.load(groups_file, allow_pickle=False) if groups_file.is_file()
                          else None)
    info = {**meta["info"], "cache": str(folder)}
    return Dataset(name=meta["name"], class_names=tuple(meta["class_names"]),
                   train=splits["train"], val=splits["val"], test=splits.get("test"),
                   info=info)


def _to_unit(x: np.ndarray) -> np.ndarray:
    if np.issubdtype(x.dtype, np.integer):
        return x.astype("float32") / float(np.iinfo(x.dtype).max)
    return x.astype("float32")


def _convert_array(x: np.ndarray, image_size: int | None, channels: int, alloc,
                   name: str) -> np.ndarray:
    sample = convert(_to_unit(x[:1])[0] if x.ndim == 4 else _to_unit(x[:1])[0][..., None],
                     image_size, channels)
    out = alloc(name, (len(x),) + sample.shape)
    for start in range(0, len(x), _CHUNK):
        chunk = _to_unit(x[start:start + _CHUNK])
        if chunk.ndim == 3:
            chunk = chunk[..., None]
        for i, image in enumerate(chunk):
            out[start + i] = convert(image, image_size, channels)
    return out


class _Progress:
    """One line on stderr every few seconds while many images are decoded."""

    def __init__(self, total: int, what: str, enabled: bool):
        self.total, self.what, self.enabled = total, what, enabled and total >= 200
        self.started = self.last = time.time()

    def update(self, done: int) -> None:
        now = time.time()
        if self.enabled and (now - self.last > 2 or done == self.total):
            rate = done / max(now - self.started, 1e-9)
            print(f"tunelab: decoding {self.what}: {done}/{self.total} images "
                  f"({rate:.0f}/s)", file=sys.stderr, flush=True)
            self.last = now


def _decode_files(part: Part, options: dict, channels: int, alloc, name: str,
                  stats: dict[str, Counter], skipped: list[str], progress: bool):
    paths = part.paths or []
    image_size = options["image_size"]
    out = None
    kept: list[int] = []
    shown = _Progress(len(paths), name.removeprefix("source_"), progress)
    for i, path in enumerate(paths):
        try:
            image, info = read_image(path, max_pixels=options["max_image_pixels"])
            image = convert(image, image_size, channels)
            if out is None:
                out = alloc(name, (len(paths),) + image.shape)
            elif image.shape != out.shape[1:]:
                raise ImageError(f"is {image.shape[1]}x{image.shape[0]} but earlier images are "
                                 f"{out.shape[2]}x{out.shape[1]}; set dataset.image_size to "
                                 "resize them all")
        except ImageError as err:
            if not options["skip_bad_images"]:
                raise DataError(f"{path}: {err} (set dataset.skip_bad_images: true to skip "
                                "unreadable images with a warning)") from None
            skipped.append(f"{path}: {err}")
            continue
        out[len(kept)] = image
        kept.append(i)
        stats["sizes"][f"{info.width}x{info.height}"] += 1
        stats["channels"][info.channels] += 1
        stats["bits"][info.bit_depth] += 1
        stats["formats"][info.format] += 1
        shown.update(i + 1)
    if out is None:
        raise DataError(f"{paths[0].parent if paths else '?'}: none of the {len(paths)} images "
                        "could be read")
    # rows [0, len(kept)) of ``out`` hold the kept images; labels are indexed by ``kept``
    return out, np.array(kept, dtype="int64")


def stratified_holdout(y: np.ndarray, fraction: float, seed: int,
                       groups: np.ndarray | None = None, what: str = "split",
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Positions (keep, hold) with about ``fraction`` of every class held out; with groups,
    no group is on both sides (fractions are then approximate)."""
    positions = np.arange(len(y))
    if groups is not None:
        from sklearn.model_selection import StratifiedGroupKFold

        n_splits = max(2, round(1 / fraction))
        if len(set(groups.tolist())) < n_splits:
            raise DataError(f"{what}: only {len(set(groups.tolist()))} groups from "
                            f"dataset.group_pattern; cannot hold out {fraction:.0%} by group")
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        keep, hold = next(splitter.split(positions, y, groups))
        return np.sort(keep), np.sort(hold)
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    if counts[counts > 0].min() < 2:
        rare = [i for i, c in enumerate(counts) if c == 1]
        raise DataError(f"{what}: class id(s) {rare} have a single image; a stratified split "
                        "needs at least two per class")
    try:
        keep, hold = train_test_split(positions, test_size=fraction, stratify=y,
                                      random_state=seed)
    except ValueError as err:
        raise DataError(f"{what}: cannot split {len(y)} images ({err})") from None
    return np.sort(keep), np.sort(hold)


def _split_indices(found: Source, decoded: dict, options: dict,
                   ) -> dict[str, tuple[str, np.ndarray]]:
    """split -> (source split, rows of that source split's decoded array)."""
    def labels_of(split: str, rows: np.ndarray) -> np.ndarray:
        return found.parts[split].y[decoded[split][1][rows]]

    def groups_of(split: str, rows: np.ndarray):
        g = found.parts[split].groups
        return None if g is None else g[decoded[split][1][rows]]

    # rows index the decoded arrays; labels and groups are found through the kept indices
    out: dict[str, tuple[str, np.ndarray]] = {}
    train_rows = np.arange(len(decoded["train"][1]))
    seed = options["seed"]
    if "test" in found.parts:
        out["test"] = ("test", np.arange(len(decoded["test"][1])))
    elif options["test_fraction"] > 0:
        keep, hold = stratified_holdout(labels_of("train", train_rows), options["test_fraction"],
                                        seed, groups_of("train", train_rows),
                                        "dataset.test_fraction")
        out["test"] = ("train", train_rows[hold])
        train_rows = train_rows[keep]
    if "val" in found.parts:
        out["val"] = ("val", np.arange(len(decoded["val"][1])))
    else:
        keep, hold = stratified_holdout(labels_of("train", train_rows),
                                        options["validation_fraction"], seed + 1,
                                        groups_of("train", train_rows),
                                        "dataset.validation_fraction")
        out["val"] = ("train", train_rows[hold])
        train_rows = train_rows[keep]
    out["train"] = ("train", train_rows)
    _remember_label_rows(found, decoded)
    return out


def _remember_label_rows(found: Source, decoded: dict) -> None:
    """After decoding, a source split's labels and groups are re-indexed to the kept rows, so
    that row r of the decoded array and label r agree (skipped files drop out)."""
    for split, (_, kept) in decoded.items():
        part = found.parts[split]
        if len(kept) != len(part.y) or not np.array_equal(kept, np.arange(len(part.y))):
            part.y = part.y[kept]
            if part.groups is not None:
                part.groups = part.groups[kept]
            if part.paths is not None:
                part.paths = [part.paths[i] for i in kept]


def _check(dataset: Dataset, source: str) -> None:
    if dataset.n_classes < 2:
        raise DataError(f"{source}: only one class found; a classifier needs at least two")
    present = set(np.unique(dataset.train.y).tolist())
    missing = set(range(dataset.n_classes)) - present
    if missing:
        raise DataError(f"{source}: the train split has no images of class(es) "
                        f"{sorted(dataset.class_names[i] for i in missing)}")
    if len(present) < 2:
        raise DataError(f"{source}: the train split holds a single class")
    val_missing = set(range(dataset.n_classes)) - set(np.unique(dataset.val.y).tolist())
    if val_missing:
        warnings.warn(f"{source}: the validation split has no images of class(es) "
                      f"{sorted(dataset.class_names[i] for i in val_missing)}", stacklevel=3)
    if dataset.train.groups is not None:
        train_groups = set(dataset.train.groups.tolist())
        for name in ("val", "test"):
            split = getattr(dataset, name)
            if split is not None and split.groups is not None:
                shared = train_groups & set(split.groups.tolist())
                if shared:
                    warnings.warn(f"{source}: {len(shared)} group(s) of dataset.group_pattern "
                                  f"appear in both train and {name} as the source splits them "
                                  f"(e.g. {sorted(shared)[0]!r}): a leak between splits",
                                  stacklevel=3)
