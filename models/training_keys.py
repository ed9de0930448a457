"""Names of the searchable knobs that shape training rather than the model.

Keras-free, so the config, the search space and the validation can share them without
loading TensorFlow. Augmentation keys are in augment.py's units (rotation in degrees, shifts
and zoom as fractions, intensity_percentile in percent).
"""

from .data.augment import AUGMENT_KEYS

TRAINING_KEYS = ("learning_rate", "batch_size", "optimizer", "momentum", "loss",
                 "class_weight", *AUGMENT_KEYS)
