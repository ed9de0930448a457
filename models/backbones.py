"""The ``keras.applications`` backbones a transfer model may use, and each one's own input
preprocessing. Keras loads on the first ``preprocess_fn`` call, not at import."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .lazy import keras


@dataclass(frozen=True)
class Backbone:
    constructor: str  # attribute of keras.applications
    module: str  # keras.applications.<module>.preprocess_input
    min_size: int  # smallest image side the backbone accepts without its top


#: Backbones by the name of their ``keras.applications`` constructor.
BACKBONES: dict[str, Backbone] = {
    "VGG16": Backbone("VGG16", "vgg16", 32),
    "VGG19": Backbone("VGG19", "vgg19", 32),
    "ResNet50": Backbone("ResNet50", "resnet", 32),
    "ResNet101": Backbone("ResNet101", "resnet", 32),
    "ResNet50V2": Backbone("ResNet50V2", "resnet_v2", 32),
    "MobileNet": Backbone("MobileNet", "mobilenet", 32),
    "MobileNetV2": Backbone("MobileNetV2", "mobilenet_v2", 32),
    "EfficientNetB0": Backbone("EfficientNetB0", "efficientnet", 32),
    "EfficientNetV2B0": Backbone("EfficientNetV2B0", "efficientnet_v2", 32),
    "DenseNet121": Backbone("DenseNet121", "densenet", 32),
    "InceptionV3": Backbone("InceptionV3", "inception_v3", 75),
    "Xception": Backbone("Xception", "xception", 71),
}


def preprocess_fn(backbone: str) -> Callable[[Any], Any]:
    return getattr(keras.applications, BACKBONES[backbone].module).preprocess_input
