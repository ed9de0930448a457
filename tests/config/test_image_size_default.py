"""dataset.image_size: auto keeps an .npz's native size, keeps digits at 16, takes the
median of an image folder capped at 128; --image-size overrides it."""

import numpy as np
import pytest
from PIL import Image

from tunelab.cli import TUNE_FLAGS
from tunelab.config import ConfigError, load_config
from tunelab.wiring import image_size, load_data


def test_default_config_on_an_npz_keeps_its_native_size(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(path, train_images=rng.integers(0, 255, (40, 12, 12), dtype="uint8"),
             train_labels=np.arange(40) % 2,
             val_images=rng.integers(0, 255, (10, 12, 12), dtype="uint8"),
             val_labels=np.arange(10) % 2)
    config = load_config(None, {"dataset": {"source": str(path),
                                            "cache_dir": str(tmp_path / "cache")}})
    assert config.dataset.image_size == "auto"
    data = load_data(config)
    assert data.input_shape[:2] == (12, 12)
    assert "native 12x12" in data.info["image_size_rule"]


def test_digits_stays_at_16_and_explicit_sizes_win():
    assert image_size(load_config(None, {}))[0] == 16
    assert image_size(load_config(None, {"dataset.image_size": 8}))[0] == 8
    assert image_size(load_config(None, {"dataset.image_size": "native"}))[0] is None
    assert image_size(load_config(None, {"dataset": {"image_size": None}}))[0] is None
    with pytest.raises(ConfigError, match="image_size"):
        load_config(None, {"dataset.image_size": "large"})


def test_image_folder_median_size_capped_at_128(tmp_path):
    for cls, sides in {"a": [100, 300, 300], "b": [300, 300, 40]}.items():
        (tmp_path / cls).mkdir()
        for i, side in enumerate(sides):
            Image.new("L", (side, side)).save(tmp_path / cls / f"{i}.png")
    side, why = image_size(load_config(None, {"dataset.source": str(tmp_path)}))
    assert side == 128 and "median image side 300, capped at 128" in why


def test_image_size_flag():
    key, kind, _ = TUNE_FLAGS["--image-size"]
    assert key == "dataset.image_size"
    assert kind("28") == 28 and kind("native") == "native" and kind("auto") == "auto"
