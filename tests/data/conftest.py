"""Real image files generated in tmp_path: the layouts the labs use, in several formats."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_image(path: Path, kind: str, value: float, size: int = 12) -> Path:
    """A square image of one ``kind`` whose pixels are ``value`` (in [0, 1]) plus a gradient
    that lets a tiny model tell bright from dark classes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 0.1, size, dtype="float64")[None, :]
    noise = np.random.default_rng(zlib.crc32(path.name.encode())).uniform(-0.03, 0.03,
                                                                        (size, size))
    grey = np.clip(value + ramp - 0.05 + noise, 0, 1)  # unique pixels: no accidental duplicates
    if kind == "png8":
        Image.fromarray((grey * 255).round().astype("uint8"), "L").save(path)
    elif kind == "png16":
        Image.fromarray((grey * 65535).round().astype("uint16")).save(path)
    elif kind == "rgbjpg":
        rgb = np.stack([grey, grey * 0.98, np.clip(grey * 1.05, 0, 1)], axis=-1)  # near grey
        Image.fromarray((rgb * 255).round().astype("uint8"), "RGB").save(path, quality=95)
    elif kind == "rgbapng":
        rgba = np.stack([grey, grey, grey, np.ones_like(grey)], axis=-1)
        Image.fromarray((rgba * 255).round().astype("uint8"), "RGBA").save(path)
    elif kind == "tif16":
        Image.fromarray((grey * 65535).round().astype("uint16")).save(path)
    elif kind == "bmp":
        Image.fromarray((grey * 255).round().astype("uint8"), "L").save(path)
    else:
        raise ValueError(kind)
    return path


KINDS = ("png8", "png16", "rgbjpg", "rgbapng", "tif16", "bmp")
SUFFIX = {"png8": ".png", "png16": ".png", "rgbjpg": ".jpg", "rgbapng": ".png",
          "tif16": ".tif", "bmp": ".bmp"}


def make_class_folder(root: Path, classes: dict[str, float], n: int, start: int = 0) -> None:
    """``root/<class>/img_<i>.<ext>`` cycling through every kind of file."""
    for name, value in classes.items():
        for i in range(start, start + n):
            kind = KINDS[i % len(KINDS)]
            write_image(root / name / f"img_{i:03d}{SUFFIX[kind]}", kind, value)


def add_strays(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (folder / "notes.txt").write_text("scanned on 2026-10-01")


@pytest.fixture
def lab_folder(tmp_path: Path) -> Path:
    """ROOT/train/<class>/*, ROOT/validation/<class>/*, ROOT/test/<class>/* with mixed files."""
    root = tmp_path / "lesions"
    classes = {"benign": 0.2, "malignant": 0.8}
    make_class_folder(root / "train", classes, 12)
    make_class_folder(root / "validation", classes, 4, start=100)
    make_class_folder(root / "test", classes, 3, start=200)
    add_strays(root / "train" / "benign")
    add_strays(root)
    return root


@pytest.fixture
def flat_folder(tmp_path: Path) -> Path:
    """ROOT/<class>/* only: three classes, 10 images each."""
    root = tmp_path / "fractures"
    make_class_folder(root, {"fractured": 0.2, "normal": 0.5, "plate": 0.8}, 10)
    add_strays(root / "normal")
    return root


@pytest.fixture
def gen():
    """The file generators, for tests that build their own layout."""
    from types import SimpleNamespace

    return SimpleNamespace(write_image=write_image, make_class_folder=make_class_folder,
                           add_strays=add_strays)
