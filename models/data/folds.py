"""k-fold cross-validation splits of a dataset's training data.

The pool is the train split followed by the validation split (the test split, if any, stays
aside untouched). Folds are stratified and seeded; with group ids (``dataset.group_pattern``)
no group is ever on both sides of a fold. The pool's decoded images are read once; each fold
only indexes them, and folds are made one at a time, so at most one fold's copy is in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np

from .dataset import Dataset, Split
from .sources import DataError


@dataclass(frozen=True)
class Fold:
    index: int
    data: Dataset  # train and val are this fold's parts of the pool; test as in the source
    pool_x: np.ndarray  # every image of the pool, train split then validation split
    train_rows: np.ndarray  # rows of pool_x in this fold's train part
    val_rows: np.ndarray  # rows of pool_x in this fold's validation part


def pool_labels(data: Dataset) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels and group ids (or None) of the train + validation pool, without its images."""
    groups = None
    if data.train.groups is not None and data.val.groups is not None:
        groups = np.concatenate([data.train.groups, data.val.groups])
    return np.concatenate([data.train.y, data.val.y]), groups


def pool_of(data: Dataset) -> Split:
    """Train and validation splits as one split (train rows first)."""
    return Split(np.concatenate([np.asarray(data.train.x), np.asarray(data.val.x)]),
                 *pool_labels(data))


def fold_rows(y: np.ndarray, n_folds: int, seed: int, groups: np.ndarray | None = None,
              ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, validation rows) of each fold: every row is in exactly one validation part;
    every class spreads over the folds; with groups, a group sits in one validation part."""
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    counts = np.bincount(y)
    present = counts[counts > 0]
    if present.min() < n_folds:
        rare = [i for i, c in enumerate(counts) if 0 < c < n_folds]
        raise DataError(f"dataset.cv_folds: {n_folds} folds need at least {n_folds} images of "
                        f"every class, but class id(s) {rare} have only "
                        f"{', '.join(str(counts[i]) for i in rare)} in train + validation; "
                        "lower dataset.cv_folds or add images of those classes")
    rows = np.arange(len(y))
    if groups is not None:
        from sklearn.model_selection import StratifiedGroupKFold

        n_groups = len(set(groups.tolist()))
        if n_groups < n_folds:
            raise DataError(f"dataset.cv_folds: {n_folds} folds need at least {n_folds} groups "
                            f"but dataset.group_pattern finds {n_groups} in train + "
                            "validation; lower dataset.cv_folds or check the pattern")
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(rows, y, groups)
    else:
        from sklearn.model_selection import StratifiedKFold

        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        splits = splitter.split(rows, y)
    return [(np.sort(train), np.sort(val)) for train, val in splits]


def k_folds(data: Dataset, n_folds: int, seed: int) -> Iterator[Fold]:
    """The folds of ``data``'s train + validation pool, one at a time (see ``fold_rows``)."""
    pool = pool_of(data)
    for i, (train_rows, val_rows) in enumerate(fold_rows(pool.y, n_folds, seed, pool.groups)):
        fold_data = replace(data, train=pool.take(train_rows), val=pool.take(val_rows),
                            info={**data.info, "fold": i, "n_folds": n_folds})
        fold_data.info.pop("fingerprint", None)
        yield Fold(i, fold_data, pool.x, train_rows, val_rows)
