"""Bad input that used to get past the checks now stops at the door: exit 2 before anything
is written, naming the key or the file; and no code runs from a data file."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from conftest import tiny_study
from PIL import Image

import tunelab
from tunelab.config import ConfigError
from tunelab.models.data import DataError, load_dataset
from tunelab.models.data.images import ImageError, read_image

PILLOW_LIMIT = 89_478_485


def write_study(tmp_path, text: str):
    (tmp_path / "study.yaml").write_text(text)
    return "study.yaml"


def assert_refused(result, *words):
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    for word in words:
        assert word in result.stderr, f"{word!r} not in {result.stderr!r}"


# -- the study file -----------------------------------------------------------------------
def test_an_unknown_objective_metric_exits_2_listing_the_metrics(tmp_path, tools):
    raw = tiny_study(tmp_path, fresh_store=True, **{"objective.metric": "val_acc"})
    result = tools.run_cli("tune", write_study(tmp_path, yaml.safe_dump(raw)), cwd=tmp_path)
    assert_refused(result, "objective.metric: 'val_acc' is not logged", "val_accuracy",
                   "val_balanced_accuracy", "val_recall_<class>")
    assert not (tmp_path / "mlruns").exists()


def test_a_monitor_the_data_does_not_log_is_refused_with_the_data_s_metrics(tmp_path):
    raw = tiny_study(tmp_path, fresh_store=True,
                     **{"early_stopping.monitor": "val_recall_pneumonia"})
    with pytest.raises(ConfigError, match=r"early_stopping.monitor: 'val_recall_pneumonia' is "
                                          r"not logged for digits \(10 classes: 0, 1, .*\); "
                                          r"choose one of val_loss, val_accuracy, .*val_recall_9"):
        tunelab.tune(raw, in_process=True)
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.parametrize(("text", "words"), [
    ("", ["study.yaml: the study file is empty"]),
    ("# n_trials: 5\n", ["study.yaml: the study file is empty"]),
    ("n_trials: 3\nmodel: lenet\nn_trials: 30\n",
     ["study.yaml: line 3: duplicate key 'n_trials' (first on line 1)"]),
    ("dataset:\n  source: digits\n  image_size: 8\n  image_size: 64\n",
     ["line 4: duplicate key 'image_size' (first on line 3)"]),
], ids=["empty", "comments-only", "duplicate", "duplicate-nested"])
def test_empty_files_and_duplicate_keys_exit_2(tmp_path, tools, text, words):
    result = tools.run_cli("tune", write_study(tmp_path, text), cwd=tmp_path)
    assert_refused(result, *words)
    assert not (tmp_path / "mlruns").exists()


# -- images above the pixel limit ---------------------------------------------------------
@pytest.mark.parametrize("factor", [1.5, 3.0])
def test_images_over_the_pixel_limit_by_any_factor_are_refused_by_size(tmp_path, tools, factor):
    side = int((PILLOW_LIMIT * factor) ** 0.5) + 1
    bomb = tools.png_header(tmp_path / "bomb.png", side, side)
    with pytest.raises(ImageError, match=rf"{side}x{side} = {side * side} pixels is above the "
                                         rf"limit of {PILLOW_LIMIT}"):
        read_image(bomb)


def test_a_raised_limit_is_honoured_above_pillow_s(tmp_path, monkeypatch):
    """A 20x20 image with Pillow's limit lowered to 100 pixels stands for a radiograph above
    twice Pillow's real limit: Pillow alone raises DecompressionBombError in Image.open."""
    path = tmp_path / "large.png"
    Image.fromarray(np.full((20, 20), 200, "uint8")).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)
    image, info = read_image(path, max_pixels=1000)
    assert (info.width, info.height) == (20, 20) and float(image.max()) > 0.7
    assert Image.MAX_IMAGE_PIXELS == 100  # Pillow's own setting is left as it was
    with pytest.raises(ImageError, match="400 pixels is above the limit of 300"):
        read_image(path, max_pixels=300)


@pytest.fixture
def bomb_folder(tmp_path, tools):
    root = tmp_path / "scans"
    tools.image_folder(root, {"normal": 0.2, "lesion": 0.8}, 6)
    tools.png_header(root / "lesion" / "huge.png", 20000, 14000)  # 3.1x Pillow's limit
    return root


def test_tune_and_data_inspect_refuse_the_image_by_name_or_skip_it(tmp_path, bomb_folder,
                                                                   tools):
    raw = tiny_study(tmp_path / "study", fresh_store=True, **{"dataset.source": str(bomb_folder),
                                            "dataset.cache_dir": str(tmp_path / "cache")})
    with pytest.raises(ConfigError, match=r"lesion/huge.png: 20000x14000 = 280000000 pixels is "
                                          r"above the limit"):
        tunelab.tune(raw, in_process=True)
    assert not (tmp_path / "study").exists()
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\)"):
        skipped = load_dataset(str(bomb_folder), image_size=8, skip_bad_images=True)
    assert skipped.info["n_skipped"] == 1 and "huge.png" in skipped.info["skipped"][0]
    result = tools.run_cli("data", "inspect", str(bomb_folder), cwd=tmp_path)
    assert_refused(result, "huge.png: 20000x14000 = 280000000 pixels is above the limit")
    result = tools.run_cli("data", "inspect", str(bomb_folder), "--skip-bad-images",
                           "--out", str(tmp_path / "grid.png"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "huge.png: 20000x14000" in result.stderr and "1 unreadable image(s) skipped" in \
        result.stdout


def test_predict_refuses_the_image_by_name_before_loading_any_model(tmp_path, bomb_folder,
                                                                    tools):
    huge = bomb_folder / "lesion" / "huge.png"
    result = tools.run_cli("predict", "models:/nothing@champion", str(huge), cwd=tmp_path)
    assert_refused(result, f"{huge}: not a readable image (20000x14000", "--skip-bad-images")
    result = tools.run_cli("predict", "models:/nothing@champion", str(huge),
                           "--skip-bad-images", cwd=tmp_path)
    assert_refused(result, f"tunelab: skipped {huge}: 20000x14000",
                   "none of the 1 file(s) is a readable image")
    assert not (tmp_path / "mlruns").exists()


# -- no code from data --------------------------------------------------------------------
def test_a_crafted_cifar10_folder_is_refused_by_name_and_runs_no_code(tmp_path, tools):
    marker = tmp_path / "marker"
    root = tools.cifar_folder(tmp_path / "cifar-10-batches-py", marker=marker)
    result = tools.run_cli("data", "inspect", str(root), cwd=tmp_path)
    assert_refused(result, f"{root / 'batches.meta'}: not a CIFAR-10 python batch",
                   "posix.system")
    assert not marker.exists(), "the payload ran"
    raw = tiny_study(tmp_path / "study", fresh_store=True, **{"dataset.source": str(root)})
    with pytest.raises(ConfigError, match="batches.meta: not a CIFAR-10 python batch"):
        tunelab.tune(raw, in_process=True)
    assert not marker.exists() and not (tmp_path / "study").exists()


@pytest.mark.parametrize("protocol", [2, 5])
def test_a_real_cifar10_layout_still_loads(tmp_path, tools, protocol):
    root = tools.cifar_folder(tmp_path / "cifar-10-batches-py", protocol=protocol)
    data = load_dataset(str(root), image_size=8, color_mode="rgb")
    assert data.class_names == ("cat", "dog") and len(data.test) == 6


def test_an_npz_of_python_objects_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, train_images=np.array([object()] * 4, dtype=object),
             train_labels=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match=r"objects.npz: 'train_images' or 'train_labels' holds "
                                        r"Python objects"):
        load_dataset(str(path))
