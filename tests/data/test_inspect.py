"""`tunelab data inspect` on generated folders, and a real study on the shared BreastMNIST."""

from __future__ import annotations

import shutil

import pytest
from conftest import SHARED_DATA, tiny_study
from PIL import Image

import tunelab
from tunelab.cli import main


def test_inspect_reports_counts_depths_imbalance_and_leaks(lab_folder, tmp_path, gen, capsys):
    gen.make_class_folder(lab_folder / "train", {"benign": 0.2}, 40, start=300)  # 52 vs 12
    leaked = lab_folder / "train" / "malignant" / "img_000.png"
    shutil.copy(leaked, lab_folder / "validation" / "malignant" / "copy_of_train.png")
    out = tmp_path / "grid.png"
    assert main(["data", "inspect", str(lab_folder), "--image-size", "16", "--out",
                 str(out)]) == 0
    text = capsys.readouterr().out
    assert "0=benign, 1=malignant" in text
    assert "52" in text and "12" in text  # train counts per class
    assert "bit depths: 8 (" in text and "16 (" in text
    assert "warning: class imbalance: 'benign' has 52 training images" in text
    assert "1 image(s) of train also appear in val" in text
    with Image.open(out) as grid:
        assert grid.size[0] > 100 and grid.size[1] > 100


def test_inspect_bad_source_is_a_clear_error(tmp_path, capsys):
    assert main(["data", "inspect", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such file or folder" in capsys.readouterr().err


BREAST = SHARED_DATA / "breastmnist.npz"


@pytest.mark.slow
@pytest.mark.skipif(not BREAST.is_file(), reason=f"{BREAST} is not present (shared data)")
def test_two_trials_on_breastmnist(tmp_path):
    raw = tiny_study(tmp_path, **{"dataset.source": str(BREAST), "dataset.image_size": 16,
                                  "dataset.test_fraction": 0.1,
                                  "dataset.cache_dir": str(tmp_path / "cache"),
                                  "n_trials": 2, "objective.metric": "val_auc",
                                  "space.class_weight": ["none", "balanced"],
                                  "space.rotation": [0, 15], "space.horizontal_flip": True})
    study = tunelab.tune(raw, in_process=True)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    for t in study.trials:
        history = t.user_attrs["history"]
        assert {"val_auc", "val_balanced_accuracy", "val_recall_0", "val_f1_1"} <= set(history)
        assert 0.0 <= t.value <= 1.0
