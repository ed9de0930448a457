"""Where a dataset comes from: find its images and labels, check them, decode nothing.

``find_source`` turns ``dataset.source`` into a ``Source``: class names in sorted order (or
the label source's own order for indexed sources) and, per split the source provides
(``train``, optional ``val`` and ``test``), either file paths or arrays plus integer labels.
Layouts:

- ``digits``: scikit-learn's bundled 8x8 digit scans;
- a MedMNIST-style ``.npz`` (``train_images``, ``train_labels``, optional ``val_*``,
  ``test_*``; labels of shape (N,) or (N, 1));
- a local CIFAR-10 in its python-version format (``data_batch_1..5``, ``test_batch``,
  ``batches.meta``);
- an image folder ``ROOT/train/<class>/*``, ``ROOT/validation/<class>/*`` (or ``val/``),
  optional ``ROOT/test/<class>/*``; or a single ``ROOT/<class>/*`` folder;
- a folder whose file names hold the class (``label_pattern``, a regular expression with a
  named group ``label``), or a CSV of ``path,label`` (``labels_csv``, or the source itself).

Anything that is not an image file by its suffix (``.DS_Store``, ``Thumbs.db``, ``.txt``) is
ignored. Every error names the path or key at fault.
"""

from __future__ import annotations

import csv
import pickle
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .images import is_image_file

SPLIT_DIRS = {"train": ("train",), "val": ("validation", "val"), "test": ("test",)}


class DataError(ValueError):
    """A dataset that cannot be used; the message names the file or key."""


@dataclass
class Part:
    """One split as the source provides it: files or an array, integer labels."""

    y: np.ndarray
    paths: list[Path] | None = None
    x: np.ndarray | None = None  # array sources: (N, H, W[, C]), any numeric dtype
    groups: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Source:
    kind: str
    location: str
    class_names: tuple[str, ...]
    parts: dict[str, Part]
    root: Path | None = None


def find_source(source: str, *, label_pattern: str | None = None,
                labels_csv: str | None = None, group_pattern: str | None = None,
                class_names: Sequence[str] | None = None) -> Source:
    if source == "digits":
        found = _digits()
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise DataError(f"dataset.source: {source}: no such file or folder")
        if labels_csv or path.suffix.lower() == ".csv":
            found = _csv_source(path, Path(labels_csv).expanduser() if labels_csv else path)
        elif path.suffix.lower() == ".npz":
            found = _npz(path)
        elif path.is_dir() and (path / "batches.meta").is_file():
            found = _cifar10(path)
        elif path.is_dir() and label_pattern:
            found = _filename_source(path, label_pattern)
        elif path.is_dir():
            found = _folder_source(path)
        else:
            raise DataError(
                f"dataset.source: {source} is not a known source: use 'digits', a .npz file, "
                "an image folder (ROOT/<class>/* or ROOT/train|validation|test/<class>/*), a "
                "CIFAR-10 python folder, or a folder plus dataset.label_pattern / labels_csv")
    if class_names is not None:
        _name_classes(found, class_names)
    if len(found.class_names) < 2:
        raise DataError(f"{found.location}: only one class found "
                        f"({', '.join(found.class_names) or 'none'}); a classifier needs at "
                        "least two")
    if group_pattern:
        _assign_groups(found, group_pattern)
    return found


NAMED_BY = {"digits": "its digits 0-9", "cifar10": "its batches.meta",
            "split_folders": "its folder names", "class_folders": "its folder names",
            "filename": "dataset.label_pattern", "csv": "the labels in its CSV"}


def _name_classes(found: Source, names: Sequence[str]) -> None:
    """``dataset.class_names``: a .npz's class ids 0, 1, ... by name, in id order."""
    if found.kind != "npz":
        raise DataError(f"dataset.class_names: only a .npz source takes class names (its "
                        f"labels are class ids); {found.location} names its classes by "
                        f"{NAMED_BY.get(found.kind, 'itself')}: "
                        f"{', '.join(found.class_names)}")
    if len(names) != len(found.class_names):
        n = len(found.class_names)
        raise DataError(f"dataset.class_names: {len(names)} name(s) {list(names)} for the {n} "
                        f"classes of {found.location} (class ids 0..{n - 1}): give one name "
                        "per class id, in id order")
    found.class_names = tuple(str(n) for n in names)


# -- array sources -------------------------------------------------------------------------
def _digits() -> Source:
    """scikit-learn's digits, read from the file it ships (what ``load_digits`` reads)
    without importing scikit-learn: that import took 0.65 s of a worker's start-up."""
    import gzip
    from importlib.util import find_spec

    spec = find_spec("sklearn")  # locates the package, runs none of it
    path = (Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
            if spec is not None and spec.submodule_search_locations else None)
    if path is not None and path.is_file():
        with gzip.open(path, "rt") as f:  # 1797 rows of 64 pixels and the label
            text = f.read().strip()
        rows = text.splitlines()
        table = np.array(",".join(rows).split(","), dtype=np.float64).reshape(len(rows), -1)
        images, target = table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype("int64")
    else:  # another layout: the loader itself
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images, target = bunch.images, bunch.target.astype("int64")
    x = (images / 16.0).astype("float32")
    return Source("digits", "digits", tuple(str(n) for n in range(10)),
                  {"train": Part(y=target, x=x)})


def _npz(path: Path) -> Source:
    if not path.is_file():
        raise DataError(f"dataset.source: {path}: not a file")
    try:
        arrays = np.load(path, allow_pickle=False)  # an object array would unpickle code
        keys = set(arrays.files)
    except Exception as err:  # numpy raises several kinds for a damaged archive
        raise DataError(f"{path}: not a readable .npz archive ({err})") from None
    if "train_images" not in keys or "train_labels" not in keys:
        raise DataError(f"{path}: needs the keys 'train_images' and 'train_labels'; "
                        f"found {sorted(keys)}")
    parts = {}
    for prefix in ("train", "val", "test"):
        if f"{prefix}_images" not in keys:
            continue
        if f"{prefix}_labels" not in keys:
            raise DataError(f"{path}: has '{prefix}_images' but no '{prefix}_labels'")
        try:
            x, y = arrays[f"{prefix}_images"], arrays[f"{prefix}_labels"]
        except ValueError as err:  # "Object arrays cannot be loaded when allow_pickle=False"
            raise DataError(f"{path}: '{prefix}_images' or '{prefix}_labels' holds Python "
                            f"objects, not numbers; refused, since loading them could run "
                            f"code ({err})") from None
        if y.ndim == 2 and y.shape[1] != 1:
            raise DataError(f"{path}: '{prefix}_labels' has shape {y.shape}; expected (N,) or "
                            "(N, 1) integer class ids (multi-label data is not supported)")
        y = y.reshape(-1)
        if len(x) != len(y):
            raise DataError(f"{path}: '{prefix}_images' has {len(x)} images but "
                            f"'{prefix}_labels' has {len(y)} labels")
        if x.dtype.kind not in "uifb":
            raise DataError(f"{path}: '{prefix}_images' has dtype {x.dtype}; expected numbers")
        if x.ndim not in (3, 4) or (x.ndim == 4 and x.shape[-1] not in (1, 3)):
            raise DataError(f"{path}: '{prefix}_images' has shape {x.shape}; expected (N, H, W) "
                            "or (N, H, W, 1 or 3)")
        if len(y) and (y.min() < 0 or not np.all(np.equal(np.mod(y, 1), 0))):
            raise DataError(f"{path}: '{prefix}_labels' must hold class ids 0, 1, 2, ...")
        parts[prefix] = Part(y=y.astype("int64"), x=x)
    n_classes = int(max(p.y.max() for p in parts.values() if len(p))) + 1
    return Source("npz", str(path), tuple(str(i) for i in range(n_classes)), parts)


#: what a CIFAR-10 python batch may reference: numpy's array and dtype reconstructors (under
#: numpy 1's ``numpy.core`` and numpy 2's ``numpy._core``) and ``_codecs.encode``, which
#: protocol-2 pickles written by Python 3 use for bytes. Nothing else can be called.
_CIFAR_GLOBALS = frozenset({
    *((core, name) for core in ("numpy.core.multiarray", "numpy._core.multiarray")
      for name in ("_reconstruct", "scalar")),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})


class _CifarUnpickler(pickle.Unpickler):
    """``pickle.load`` runs whatever a file names (``os.system`` included); a CIFAR-10 batch
    holds only dicts, lists, bytes, numbers and numpy arrays, so only those load."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"it references {module}.{name}, which a CIFAR-10 "
                                         "batch never holds (refused: loading it could run "
                                         "code)")
        return super().find_class(module, name)


def _unpickle_cifar(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            batch = _CifarUnpickler(f, encoding="bytes").load()
    except Exception as err:
        raise DataError(f"{path}: not a CIFAR-10 python batch ({err})") from None
    if not isinstance(batch, dict):
        raise DataError(f"{path}: not a CIFAR-10 python batch (holds a "
                        f"{type(batch).__name__}, not a dict)")
    return batch


def _cifar10(root: Path) -> Source:
    unpickle = _unpickle_cifar
    meta = unpickle(root / "batches.meta")
    names = meta.get(b"label_names", [])
    if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
        raise DataError(f"{root / 'batches.meta'}: 'label_names' must be a list of names")
    names = tuple(n.decode() if isinstance(n, bytes) else n for n in names)
    batches = sorted(root.glob("data_batch_*"))
    if not batches:
        raise DataError(f"{root}: a CIFAR-10 folder needs data_batch_1 ... data_batch_5")

    def part(files: list[Path]) -> Part:
        xs, ys = [], []
        for f in files:
            batch = unpickle(f)
            if b"data" not in batch or b"labels" not in batch:
                raise DataError(f"{f}: a CIFAR-10 batch needs the keys 'data' and 'labels'")
            try:
                xs.append(np.asarray(batch[b"data"], dtype="uint8").reshape(-1, 3, 32, 32))
                ys.append(np.asarray(batch[b"labels"], dtype="int64").reshape(-1))
            except (TypeError, ValueError) as err:
                raise DataError(f"{f}: 'data' must be N x 3072 bytes and 'labels' N class ids "
                                f"({err})") from None
        return Part(y=np.concatenate(ys), x=np.concatenate(xs).transpose(0, 2, 3, 1))

    parts = {"train": part(batches)}
    if (root / "test_batch").is_file():
        parts["test"] = part([root / "test_batch"])
    return Source("cifar10", str(root), names, parts)


# -- file sources --------------------------------------------------------------------------
def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted; other files are ignored."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _class_folders(folder: Path) -> dict[str, list[Path]]:
    classes = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    stray = [p for p in folder.iterdir() if p.is_file() and is_image_file(p)]
    if not classes:
        hint = (" (it holds images directly: set dataset.label_pattern or dataset.labels_csv "
                "if the class is in the file name)") if stray else ""
        raise DataError(f"{folder}: no class folders found; expected {folder}/<class>/*{hint}")
    if stray:
        raise DataError(f"{folder}: holds {len(stray)} image(s) outside any class folder "
                        f"(e.g. {stray[0].name}); put every image in {folder}/<class>/")
    out = {}
    for d in classes:
        files = list_images(d)
        if not files:
            raise DataError(f"{d}: empty class folder (no image files)")
        out[d.name] = files
    return out


def _split_dirs(root: Path) -> dict[str, Path]:
    found = {}
    for split, names in SPLIT_DIRS.items():
        present = [root / n for n in names if (root / n).is_dir()]
        if len(present) > 1:
            raise DataError(f"{root}: has both {present[0].name}/ and {present[1].name}/; keep "
                            "one validation folder")
        if present:
            found[split] = present[0]
    if found and "train" not in found:
        raise DataError(f"{root}: has {', '.join(p.name + '/' for p in found.values())} but no "
                        "train/ folder")
    return found


def _folder_source(root: Path) -> Source:
    splits = _split_dirs(root)
    if not splits:
        by_split = {"train": _class_folders(root)}
    else:
        by_split = {s: _class_folders(d) for s, d in splits.items()}
        train_classes = set(by_split["train"])
        for s in ("val", "test"):
            if s in by_split and set(by_split[s]) != train_classes:
                only_train = sorted(train_classes - set(by_split[s]))
                only_here = sorted(set(by_split[s]) - train_classes)
                raise DataError(
                    f"{splits[s]}: its classes differ from {splits['train']}: "
                    f"only in train: {only_train or 'none'}; only in {splits[s].name}: "
                    f"{only_here or 'none'}")
    names = tuple(sorted(by_split["train"]))
    index = {n: i for i, n in enumerate(names)}
    parts = {}
    for s, classes in by_split.items():
        paths = [p for n in names for p in classes[n]]
        y = np.array([index[n] for n in names for _ in classes[n]], dtype="int64")
        parts[s] = Part(y=y, paths=paths)
    kind = "split_folders" if splits else "class_folders"
    return Source(kind, str(root), names, parts, root=root)


def _filename_source(root: Path, pattern: str) -> Source:
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise DataError(f"dataset.label_pattern: {pattern!r} is not a valid regular expression "
                        f"({err})") from None
    if "label" not in regex.groupindex:
        raise DataError(f"dataset.label_pattern: {pattern!r} needs a named group for the class, "
                        r"e.g. '^(?P<label>C\d+) '")
    splits = _split_dirs(root) or {"train": root}
    pairs_by_split = {}
    for s, folder in splits.items():
        files = list_images(folder)
        if not files:
            raise DataError(f"{folder}: no image files found")
        pairs, unmatched = [], []
        for p in files:
            m = regex.search(p.name)
            (pairs.append((p, m.group("label"))) if m and m.group("label")
             else unmatched.append(p))
        if unmatched:
            raise DataError(f"dataset.label_pattern: {pattern!r} does not match {len(unmatched)} "
                            f"of {len(files)} file names in {folder} (e.g. "
                            f"{unmatched[0].name!r})")
        pairs_by_split[s] = pairs
    return _pairs_source("filename", str(root), pairs_by_split, root)


def _pairs_source(kind: str, location: str, pairs_by_split: dict, root: Path) -> Source:
    names = tuple(sorted({lab for pairs in pairs_by_split.values() for _, lab in pairs}))
    train_names = {lab for _, lab in pairs_by_split["train"]}
    for s, pairs in pairs_by_split.items():
        if s != "train" and {lab for _, lab in pairs} != train_names:
            raise DataError(f"{location}: the classes of the {s} split "
                            f"{sorted({lab for _, lab in pairs})} differ from the train split's "
                            f"{sorted(train_names)}")
    index = {n: i for i, n in enumerate(names)}
    parts = {s: Part(y=np.array([index[lab] for _, lab in pairs], dtype="int64"),
                     paths=[p for p, _ in pairs]) for s, pairs in pairs_by_split.items()}
    return Source(kind, location, names, parts, root=root)


def _csv_source(source: Path, csv_path: Path) -> Source:
    if not csv_path.is_file():
        raise DataError(f"dataset.labels_csv: {csv_path}: no such file")
    root = source if source.is_dir() else csv_path.parent
    pairs: list[tuple[Path, str]] = []
    with open(csv_path, newline="") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if not row or not "".join(row).strip():
                continue
            if line_no == 1 and [c.strip().lower() for c in row[:2]] == ["path", "label"]:
                continue
            if len(row) < 2:
                raise DataError(f"{csv_path}:{line_no}: expected 'path,label', got {row!r}")
            path = Path(row[0].strip())
            path = path if path.is_absolute() else root / path
            if not path.is_file():
                raise DataError(f"{csv_path}:{line_no}: {path}: no such file")
            if is_image_file(path):
                pairs.append((path, row[1].strip()))
    if not pairs:
        raise DataError(f"{csv_path}: lists no image files")
    return _pairs_source("csv", str(csv_path), {"train": pairs}, root)


# -- groups --------------------------------------------------------------------------------
def _assign_groups(source: Source, pattern: str) -> None:
    """Give every file a group id from ``group_pattern`` (the named group ``group``, else the
    first group, else the whole match) so that a group never straddles two splits."""
    if source.root is None:
        raise DataError(f"dataset.group_pattern: needs a source of image files; "
                        f"{source.location} ({source.kind}) has no file paths")
    try:
        regex = re.compile(pattern)
    except re.error as err:
        raise DataError(f"dataset.group_pattern: {pattern!r} is not a valid regular expression "
                        f"({err})") from None
    total, unmatched = 0, 0
    for part in source.parts.values():
        groups = []
        for p in part.paths or []:
            rel = p.relative_to(source.root).as_posix() if p.is_relative_to(source.root) else \
                p.as_posix()
            m = regex.search(rel)
            if m is None:
                unmatched += 1
                groups.append(f"<file>{rel}")  # its own group
            elif "group" in regex.groupindex:
                groups.append(m.group("group"))
            else:
                groups.append(m.group(1) if regex.groups else m.group(0))
            total += 1
        part.groups = np.array(groups, dtype=object)
    if unmatched == total:
        raise DataError(f"dataset.group_pattern: {pattern!r} matches none of the {total} file "
                        f"paths (e.g. {source.parts['train'].paths[0]})")
    if unmatched:
        warnings.warn(f"dataset.group_pattern: {pattern!r} does not match {unmatched} of "
                      f"{total} files; each of those is its own group", stacklevel=2)
