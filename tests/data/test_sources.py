"""Every source layout, decoded from real files generated in tmp_path."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from tunelab.models.data import DataError, load_dataset
from tunelab.models.data.images import read_image


def test_split_folders_mixed_formats(lab_folder):
    data = load_dataset(str(lab_folder), image_size=8, color_mode="grayscale")
    assert data.class_names == ("benign", "malignant")
    assert data.class_counts() == {"train": {"benign": 12, "malignant": 12},
                                   "val": {"benign": 4, "malignant": 4},
                                   "test": {"benign": 3, "malignant": 3}}
    assert data.train.x.shape == (24, 8, 8, 1) and data.train.x.dtype == np.float32
    assert 0.0 <= data.train.x.min() and data.train.x.max() <= 1.0
    # whatever the format and bit depth, a class's images land at the same brightness
    benign = data.train.x[data.train.y == 0].mean(axis=(1, 2, 3))
    malignant = data.train.x[data.train.y == 1].mean(axis=(1, 2, 3))
    assert benign.max() < 0.3 < 0.7 < malignant.min()
    # every file of every split was decoded once: 8-bit PNG/JPEG/BMP, 16-bit PNG and TIFF
    assert set(data.info["bit_depths"]) == {"8", "16"}
    assert sum(data.info["bit_depths"].values()) == 38
    assert set(data.info["formats"]) == {"PNG", "JPEG", "TIFF", "BMP"}
    assert set(data.info["channels"]) == {"1", "3"}


def test_rgb_mode_repeats_grey(lab_folder):
    data = load_dataset(str(lab_folder), image_size=6, color_mode="rgb")
    assert data.input_shape == (6, 6, 3)


def test_val_folder_is_accepted(tmp_path, gen):
    gen.make_class_folder(tmp_path / "train", {"a": 0.1, "b": 0.9}, 6)
    gen.make_class_folder(tmp_path / "val", {"a": 0.1, "b": 0.9}, 2)
    data = load_dataset(str(tmp_path), image_size=8)
    assert len(data.val) == 4 and data.test is None


def test_16bit_png_scaled_by_its_depth(tmp_path):
    path = tmp_path / "x.png"
    Image.fromarray(np.array([[0, 32768], [65535, 65535]], dtype="uint16")).save(path)
    image, info = read_image(path)
    assert info.bit_depth == 16
    np.testing.assert_allclose(image[..., 0], [[0, 32768 / 65535], [1, 1]], atol=1e-6)


def test_single_folder_stratified_seeded_split(flat_folder):
    a = load_dataset(str(flat_folder), image_size=8, validation_fraction=0.3, seed=1)
    b = load_dataset(str(flat_folder), image_size=8, validation_fraction=0.3, seed=1)
    c = load_dataset(str(flat_folder), image_size=8, validation_fraction=0.3, seed=2)
    assert a.class_names == ("fractured", "normal", "plate")
    assert a.class_counts()["val"] == {"fractured": 3, "normal": 3, "plate": 3}
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_test_fraction_is_carved_first(flat_folder):
    data = load_dataset(str(flat_folder), image_size=8, validation_fraction=0.25,
                        test_fraction=0.2)
    counts = data.class_counts()
    assert counts["test"] == {"fractured": 2, "normal": 2, "plate": 2}
    assert sum(counts["val"].values()) == 6 and sum(counts["train"].values()) == 18


def test_class_in_file_name(tmp_path, gen):
    for i in range(6):
        gen.write_image(tmp_path / "xray" / f"C4 {4660 + i}.jpg", "rgbjpg", 0.2)
        gen.write_image(tmp_path / "xray" / f"C7 {5000 + i}.jpg", "png8", 0.8).rename(
            tmp_path / "xray" / f"C7 {5000 + i}.png")
    gen.add_strays(tmp_path / "xray")
    data = load_dataset(str(tmp_path / "xray"), image_size=8,
                        label_pattern=r"^(?P<label>C\d+) ", validation_fraction=0.34)
    assert data.class_names == ("C4", "C7")
    assert len(data.train) + len(data.val) == 12
    with pytest.raises(DataError, match=r"does not match 12 of 12 file names"):
        load_dataset(str(tmp_path / "xray"), label_pattern=r"^(?P<label>X\d) ")


def test_labels_csv(tmp_path, gen):
    lines = ["path,label"]
    for i in range(8):
        label = "effusion" if i % 2 else "normal"
        gen.write_image(tmp_path / "imgs" / f"{i}.png", "png8", 0.2 if i % 2 else 0.8)
        lines.append(f"imgs/{i}.png,{label}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    data = load_dataset(str(tmp_path), labels_csv=str(tmp_path / "labels.csv"), image_size=8,
                        validation_fraction=0.5)
    assert data.class_names == ("effusion", "normal")
    assert data.class_counts()["val"] == {"effusion": 2, "normal": 2}
    (tmp_path / "labels.csv").write_text("path,label\nimgs/missing.png,normal\n")
    with pytest.raises(DataError, match=r"labels.csv:2: .*missing.png: no such file"):
        load_dataset(str(tmp_path / "labels.csv"))


def test_npz_with_column_labels(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "organ.npz"
    np.savez(path, train_images=rng.integers(0, 256, (30, 10, 10), dtype="uint8"),
             train_labels=np.repeat([0, 1, 2], 10).reshape(-1, 1),
             val_images=rng.integers(0, 256, (6, 10, 10), dtype="uint8"),
             val_labels=np.repeat([0, 1, 2], 2).reshape(-1, 1))
    data = load_dataset(str(path), image_size=8)
    assert data.input_shape == (8, 8, 1) and data.n_classes == 3 and len(data.val) == 6


def test_cifar10_python_folder(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    names = [b"airplane", b"automobile", b"bird"]
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names}, f)
    rng = np.random.default_rng(0)
    for name, n in (("data_batch_1", 12), ("data_batch_2", 6), ("test_batch", 6)):
        with open(root / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (n, 3072), dtype="uint8"),
                         b"labels": [i % 3 for i in range(n)]}, f)
    data = load_dataset(str(root), image_size=8, color_mode="rgb")
    assert data.class_names == ("airplane", "automobile", "bird")
    assert len(data.train) + len(data.val) == 18 and len(data.test) == 6
    assert data.input_shape == (8, 8, 3)


def test_dicom_files(tmp_path):
    pydicom = pytest.importorskip("pydicom", reason="DICOM needs the optional pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    def write_dicom(path, value):
        meta = FileMetaDataset()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        meta.MediaStorageSOPInstanceUID = generate_uid()
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.Rows, ds.Columns = 10, 10
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = np.full((10, 10), value, dtype="uint16").tobytes()
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)

    for i in range(4):
        write_dicom(tmp_path / "ct" / "normal" / f"{i}.dcm", 4095)
        write_dicom(tmp_path / "ct" / "lesion" / f"{i}.dcm", 1024)
    data = load_dataset(str(tmp_path / "ct"), image_size=8, validation_fraction=0.5)
    bright = data.train.x[data.train.y == data.class_names.index("normal")]
    np.testing.assert_allclose(bright, 1.0, atol=1e-6)  # 12-bit 4095 is full scale
    assert data.info["bit_depths"] == {"12": 8}


def test_group_pattern_keeps_patients_together(tmp_path, gen):
    for patient in range(12):
        for view in range(3):
            label = "pneumonia" if patient % 2 else "normal"
            gen.write_image(tmp_path / "cxr" / label / f"p{patient:02d}_view{view}.png", "png8",
                        0.2 if patient % 2 else 0.8)
    data = load_dataset(str(tmp_path / "cxr"), image_size=8, validation_fraction=0.25,
                        test_fraction=0.2, group_pattern=r"(?P<group>p\d+)_")
    sets = [set(s.groups.tolist()) for s in (data.train, data.val, data.test)]
    assert sum(len(s) for s in sets) == 12
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert all(len(s.y) % 3 == 0 for s in (data.train, data.val, data.test))


def test_decoded_once_then_memory_mapped(lab_folder, tmp_path, gen):
    cache = tmp_path / "cache"
    first = load_dataset(str(lab_folder), image_size=8, cache_dir=cache)
    (entry,) = [p for p in cache.iterdir()]
    assert isinstance(first.train.x, np.memmap) and first.info["cache"] == str(entry)
    # scribble on the cached pixels: a second load must read them, not decode the files
    cached = np.load(entry / "train_x.npy", mmap_mode="r+")
    cached[:] = 0.0
    cached.flush()
    again = load_dataset(str(lab_folder), image_size=8, cache_dir=cache)
    assert isinstance(again.train.x, np.memmap) and float(again.train.x.max()) == 0.0
    # a changed file or option is a new entry, decoded afresh
    gen.write_image(lab_folder / "train" / "benign" / "img_999.png", "png8", 0.2)
    changed = load_dataset(str(lab_folder), image_size=8, cache_dir=cache)
    assert len(changed.train) == 25 and float(changed.train.x.max()) > 0.5
    assert len(list(cache.iterdir())) == 2
