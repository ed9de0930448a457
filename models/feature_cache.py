"""Frozen-backbone features computed once per dataset and kept on disk.

A frozen feature extractor gives the same output for the same images every time, so every
trial that shares the backbone, its weights, the input size and the images can train its head
on features computed once. Trials run in worker processes that are recycled every few trials,
so the cache lives on disk (``features/`` under the dataset cache, ``dataset.cache_dir``, by
default ``~/.cache/tunelab/datasets/features/``) rather than in memory:
``features-<backbone>-<weights>-<data hash>-<H>x<W>.npy``, written atomically so that two
workers computing the same file at once both leave a valid one.

``STATS`` counts extractor runs and cache reads in this process (tests and benchmarks use it
to prove the extractor ran once).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .lazy import keras

#: Bump when the preprocessing inside the model changes, so old feature files are not reused.
FEATURES_VERSION = 1
_CHUNK = 1024

#: "computed": extractor runs; "loaded": arrays read from the disk cache; "memory": reused in
#: this process without touching the disk.
STATS: Counter = Counter()
_MEMORY: dict[str, np.ndarray] = {}


def array_hash(x: np.ndarray) -> str:
    """Content hash of an image array (shape, dtype and every pixel), 16 hex digits."""
    h = hashlib.blake2b(digest_size=8)
    h.update(f"{x.shape}|{x.dtype}|v{FEATURES_VERSION}|keras{keras.__version__}".encode())
    for start in range(0, len(x), _CHUNK):
        h.update(np.ascontiguousarray(x[start:start + _CHUNK]).tobytes())
    return h.hexdigest()


def file_hash(path: str | Path) -> str:
    """Short content hash of a weights file (so a replaced file never reuses old features)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def cache_name(backbone: str, weights_tag: str, data_hash: str, size: tuple[int, int]) -> str:
    return f"features-{backbone.lower()}-{weights_tag}-{data_hash}-{size[0]}x{size[1]}.npy"


def cached_features(extract: Callable[[np.ndarray], np.ndarray], x: np.ndarray, *,
                    backbone: str, weights_tag: str, size: tuple[int, int],
                    cache_dir: str | Path | None) -> tuple[np.ndarray, str]:
    """Features of ``x``: from this process' memory, from ``cache_dir``, or computed (and
    then written there). Returns the array and where it came from: memory, disk or computed.
    """
    name = cache_name(backbone, weights_tag, array_hash(x), size)
    if name in _MEMORY:
        STATS["memory"] += 1
        return _MEMORY[name], "memory"
    path = Path(cache_dir) / name if cache_dir is not None else None
    if path is not None and path.is_file():
        try:
            features = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError):  # a truncated file from a killed process: recompute
            features = None
        if features is not None and len(features) == len(x):
            STATS["loaded"] += 1
            _MEMORY[name] = features
            return features, "disk"
    features = np.asarray(extract(x), dtype="float32")
    STATS["computed"] += 1
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, features)
        os.replace(tmp, path)
    _MEMORY[name] = features
    return features, "computed"


def clear_memory() -> None:
    """Forget the in-process copies (tests use this to simulate a fresh worker process)."""
    _MEMORY.clear()
