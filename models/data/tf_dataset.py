"""``tf.data`` input pipelines over a split's arrays, in memory or streamed from disk.

A split whose images fit under the memory limit is cached in RAM once, then shuffled,
batched and prefetched. A larger one (a memory-mapped ``.npy`` of the decode cache) is
streamed: shuffled indices, batches gathered from the memory map, prefetched, so memory use
stays at a few batches whatever the dataset's size. Augmentation runs on training batches
only; per-sample weights carry the class weights.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def default_memory_limit_mb() -> int:
    import psutil

    return int(psutil.virtual_memory().available / 2**20 / 4)


def fits_in_memory(x: np.ndarray, memory_limit_mb: int | None) -> bool:
    limit = memory_limit_mb if memory_limit_mb is not None else default_memory_limit_mb()
    return x.nbytes <= limit * 2**20


def _gather(x: np.ndarray):
    def read(index):
        order = np.sort(index.numpy())  # sorted reads are sequential on disk
        return np.asarray(x[order], dtype="float32"), order

    return read


def make_dataset(x: np.ndarray, targets: np.ndarray, *, batch_size: int,
                 sample_weight: np.ndarray | None = None, shuffle: bool = False,
                 augment=None, seed: int = 0, memory_limit_mb: int | None = None,
                 ) -> tf.data.Dataset:
    """Batches of ``(x, target[, weight])``; ``augment`` is a Keras layer applied to training
    batches."""
    n = len(targets)
    targets = np.asarray(targets, dtype="float32")
    weights = None if sample_weight is None else np.asarray(sample_weight, dtype="float32")
    if fits_in_memory(x, memory_limit_mb):
        tensors = (np.asarray(x, dtype="float32"), targets) + (
            (weights,) if weights is not None else ())
        ds = tf.data.Dataset.from_tensor_slices(tensors).cache()
        if shuffle:
            ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size)
    else:
        image_shape = tuple(x.shape[1:])
        read = _gather(x)
        t_const = tf.constant(targets)
        w_const = None if weights is None else tf.constant(weights)
        ds = tf.data.Dataset.range(n)
        if shuffle:
            ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size)

        def load(index):
            images, order = tf.py_function(read, [index], (tf.float32, tf.int64))
            images.set_shape((None,) + image_shape)
            order.set_shape((None,))
            out = (images, tf.gather(t_const, order))
            return out + ((tf.gather(w_const, order),) if w_const is not None else ())

        ds = ds.map(load, num_parallel_calls=1)
    if augment is not None:
        ds = ds.map(lambda *batch: (augment(batch[0], training=True),) + tuple(batch[1:]),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
