"""Bad input fails before any training, names the path or key, and writes nothing."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_study

import tunelab
from tunelab.config import ConfigError
from tunelab.models.data import DataError, load_dataset


def corrupt_jpeg(path):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((32, 32), 128, "uint8")).save(path, quality=90)
    path.write_bytes(path.read_bytes()[:200])  # truncated mid-scan
    return path


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match=r"dataset.source: .*nowhere: no such file or folder"):
        load_dataset(str(tmp_path / "nowhere"))


def test_empty_class_folder(lab_folder):
    empty = lab_folder / "validation" / "malignant"
    for f in empty.iterdir():
        f.unlink()
    (empty / "Thumbs.db").write_bytes(b"x")  # not an image: still empty
    with pytest.raises(DataError, match=rf"{empty}: empty class folder"):
        load_dataset(str(lab_folder))


def test_single_class(tmp_path, gen):
    gen.make_class_folder(tmp_path / "one", {"normal": 0.5}, 4)
    with pytest.raises(DataError, match=r"only one class found \(normal\)"):
        load_dataset(str(tmp_path / "one"))


def test_different_class_sets(lab_folder, gen):
    gen.make_class_folder(lab_folder / "validation", {"melanoma": 0.5}, 2)
    with pytest.raises(DataError, match=r"validation: its classes differ .*only in "
                                        r"validation: \['melanoma'\]"):
        load_dataset(str(lab_folder))


def test_npz_without_train_images(tmp_path):
    np.savez(tmp_path / "bad.npz", images=np.zeros((4, 8, 8)), labels=np.arange(4))
    with pytest.raises(DataError, match=r"bad.npz: needs the keys 'train_images'"):
        load_dataset(str(tmp_path / "bad.npz"))


def test_npz_count_mismatch(tmp_path):
    np.savez(tmp_path / "bad.npz", train_images=np.zeros((4, 8, 8)),
             train_labels=np.array([0, 1, 0]))
    with pytest.raises(DataError, match=r"'train_images' has 4 images but 'train_labels' has 3"):
        load_dataset(str(tmp_path / "bad.npz"))


def test_corrupt_image_is_named(lab_folder):
    bad = corrupt_jpeg(lab_folder / "train" / "benign" / "broken.jpg")
    with pytest.raises(DataError, match=rf"{bad}: .*skip_bad_images"):
        load_dataset(str(lab_folder), image_size=8)


def test_skip_bad_images_warns_with_count(lab_folder):
    corrupt_jpeg(lab_folder / "train" / "benign" / "broken.jpg")
    (lab_folder / "train" / "malignant" / "fake.png").write_text("not a png")
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable image\(s\)") as record:
        data = load_dataset(str(lab_folder), image_size=8, skip_bad_images=True)
    message = str(record[0].message)
    assert "broken.jpg" in message and "fake.png" in message
    assert data.class_counts()["train"] == {"benign": 12, "malignant": 12}
    assert data.info["n_skipped"] == 2


def test_decompression_bomb_refused_with_its_size(tmp_path, gen):
    gen.make_class_folder(tmp_path / "big", {"a": 0.2, "b": 0.8}, 3)
    with pytest.raises(DataError, match=r"12x12 = 144 pixels is above the limit of 100"):
        load_dataset(str(tmp_path / "big"), max_image_pixels=100)


def test_bad_data_writes_nothing_to_the_stores(tmp_path, lab_folder):
    corrupt_jpeg(lab_folder / "validation" / "benign" / "broken.jpg")
    raw = tiny_study(tmp_path / "study", fresh_store=True, **{"dataset.source": str(lab_folder),
                                            "dataset.cache_dir": str(tmp_path / "cache")})
    with pytest.raises(ConfigError, match=r"broken.jpg"):
        tunelab.tune(raw, in_process=True)
    assert not (tmp_path / "study").exists() and not (tmp_path / "cache").exists()


def test_config_rejects_bad_patterns(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset.label_pattern: .* needs a named group"):
        tunelab.tune(tiny_study(tmp_path, fresh_store=True, **{"dataset.label_pattern": r"^C\d"}))
    with pytest.raises(ConfigError, match=r"dataset.group_pattern: '\(' is not a valid"):
        tunelab.tune(tiny_study(tmp_path, fresh_store=True, **{"dataset.group_pattern": "("}))
    with pytest.raises(ConfigError, match=r"dataset.cv_folds: 0 must be >= 2"):
        tunelab.tune(tiny_study(tmp_path, fresh_store=True, **{"dataset.cv_folds": 0}))
    assert not (tmp_path / "mlruns").exists()
