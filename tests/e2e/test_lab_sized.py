"""Studies where the labs work: 128x128 grey images from an image folder (AlexNet base 8), and
VGG16 transfer at its 224x224 input size with the frozen-feature cache. The folder is written
at test time from the shared BreastMNIST, upscaled (skipped where the shared data is absent)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED_DATA

import tunelab

BREAST = SHARED_DATA / "breastmnist.npz"


@pytest.fixture(scope="module")
def lab_folder(tmp_path_factory):
    """20 training and 10 validation BreastMNIST images, both classes, as 128x128 PNGs in
    train/<class>/ and val/<class>/, the labs' layout."""
    if not BREAST.exists():
        pytest.skip(f"{BREAST} is not on this machine")
    from PIL import Image

    root = tmp_path_factory.mktemp("lab-sized") / "images"
    npz = np.load(BREAST)
    for split, key, n in (("train", "train", 20), ("val", "val", 10)):
        x, y = npz[f"{key}_images"], npz[f"{key}_labels"].reshape(-1)
        rows = [i for c in (0, 1) for i in np.flatnonzero(y == c)[:n // 2]]
        for i in rows:
            folder = root / split / ("malignant" if y[i] == 0 else "benign")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[i]).resize((128, 128), Image.BILINEAR).save(folder / f"{i}.png")
    return root


def _study(tmp_path, folder, **overrides):
    raw = {"study_name": "lab-sized", "dataset": {"source": str(folder), "image_size": 128,
                                                  "cache_dir": str(tmp_path / "cache"),
                                                  "cv_folds": 1},
           "n_trials": 1, "max_epochs": 1, "pruner": {"kind": "none"}, "tracking": False,
           "storage": str(tmp_path / "optuna.journal")}
    raw.update(overrides)
    return raw


def test_alexnet_base_8_on_128x128_grey_images(tmp_path, lab_folder):
    raw = _study(tmp_path, lab_folder, model="alexnet",
                 space={"n_base": 8, "batch_size": 16, "learning_rate": 1e-3})
    study = tunelab.tune(raw, in_process=True)
    trial = study.trials[0]
    assert trial.state.name == "COMPLETE"
    # conv 8-16-32-32-16 on 128x128x1, pools after blocks 1, 2, 5: 16x16x16 into dense 64, 64
    convs = sum(9 * i * o + o for i, o in zip([1, 8, 16, 32, 32], [8, 16, 32, 32, 16],
                                              strict=True))
    dense = (16 * 16 * 16 * 64 + 64) + (64 * 64 + 64) + (64 + 1)
    assert trial.user_attrs["n_params"] == convs + dense == 286_193
    summary = trial.user_attrs["summary"]
    assert summary["epochs_trained"] == 1 and summary["process_peak_rss_mb"] > 0
    assert len(trial.user_attrs["history"]["val_accuracy"]) == 1


@pytest.mark.slow
def test_vgg16_transfer_at_its_224_input_size_caches_the_features(tmp_path, lab_folder):
    raw = _study(tmp_path, lab_folder, model="vgg16_transfer", n_trials=2,
                 dataset={"source": str(lab_folder), "image_size": 224,
                          "cache_dir": str(tmp_path / "cache"), "cv_folds": 1},
                 space={"weights": None, "dense_units": 16, "batch_size": 16,
                        "learning_rate": [1e-3, 1e-4]}, sampler={"kind": "grid"})
    study = tunelab.tune(raw, in_process=True)
    first, second = sorted(study.trials, key=lambda t: t.number)
    assert [t.state.name for t in (first, second)] == ["COMPLETE", "COMPLETE"]
    assert first.user_attrs["transfer"]["feature_cache"] == "train: computed, val: computed"
    assert "computed" not in second.user_attrs["transfer"]["feature_cache"]  # read back
    assert len(list((tmp_path / "cache" / "features").glob("*224x224*.npy"))) == 2
