"""The data pipeline, Keras-free except ``tf_dataset`` and ``augment``.

``sources`` finds a dataset's files (digits, ``.npz``, CIFAR-10, image folders, CSV or
file-name labels); ``images`` decodes and checks one image; ``dataset`` loads, splits and
caches a whole dataset as arrays; ``folds`` cuts cross-validation folds; ``augment`` is the
training-time augmentation (Keras layers); ``tf_dataset`` feeds a split to ``fit``
(``tf.data``).
"""

from .dataset import Dataset, Split, load_dataset, stratified_holdout
from .sources import DataError

__all__ = ["DataError", "Dataset", "Split", "load_dataset", "stratified_holdout"]
