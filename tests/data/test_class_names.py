"""`dataset.class_names` names a .npz's class ids, and every place a class is shown uses the
names: the dataset, its class counts, the confusion matrix's axes; a wrong list is an error
naming the key, before anything trains."""

import numpy as np
import pytest
from matplotlib.text import Text

from tunelab.config import ConfigError, config_from_dict
from tunelab.tracking.plots import confusion_matrix
from tunelab.wiring import load_data


@pytest.fixture
def npz(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "scans.npz"
    np.savez(path, train_images=rng.integers(0, 256, (24, 8, 8), dtype=np.uint8),
             train_labels=np.arange(24) % 2, val_images=rng.integers(0, 256, (8, 8, 8),
                                                                     dtype=np.uint8),
             val_labels=(np.arange(8) % 2).reshape(-1, 1))
    return path


def config(tmp_path, source, names):
    return config_from_dict({"dataset": {"source": str(source), "image_size": 8,
                                         "class_names": names,
                                         "cache_dir": str(tmp_path / "cache")}})


def test_npz_classes_by_name_everywhere(tmp_path, npz):
    data = load_data(config(tmp_path, npz, ["normal", "pneumonia"]))
    assert data.class_names == ("normal", "pneumonia")
    assert data.class_index == {"normal": 0, "pneumonia": 1}
    assert set(data.class_counts()["val"]) == {"normal", "pneumonia"}
    again = load_data(config(tmp_path, npz, ["normal", "pneumonia"]))  # from the cache
    assert again.class_names == data.class_names
    assert load_data(config(tmp_path, npz, None)).class_names == ("0", "1")  # its own key
    fig = confusion_matrix(data.val.y, data.val.y, data.class_names, "trial 0")
    ticks = {t.get_text() for t in fig.findobj(Text)}
    assert {"normal", "pneumonia"} <= ticks


def test_wrong_class_names_are_config_errors(tmp_path, npz, flat_folder):
    with pytest.raises(ConfigError, match=r"dataset.class_names: 3 name\(s\).*the 2 classes"):
        load_data(config(tmp_path, npz, ["a", "b", "c"]))
    with pytest.raises(ConfigError, match=r"dataset.class_names: .*\(at least two\)"):
        config(tmp_path, npz, ["a"])
    with pytest.raises(ConfigError, match="'a' named twice"):
        config(tmp_path, npz, ["a", "a"])
    with pytest.raises(ConfigError, match="dataset.class_names: expected a list"):
        config(tmp_path, npz, "a,b")
    with pytest.raises(ConfigError, match="only a .npz source takes class names.*folder names"):
        load_data(config(tmp_path, flat_folder, ["a", "b", "c"]))
