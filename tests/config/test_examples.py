"""Every recipe in examples/ is a valid study: `tunelab tune examples/X.yaml --print-config`
exits 0, and where the shared data is present its space fits the data and the models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tunelab.cli import main
from tunelab.config import load_config
from tunelab.validation import validate_against_data
from tunelab.wiring import load_data

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def test_there_is_a_recipe_per_kind_of_lab_experiment():
    names = {p.stem for p in EXAMPLES}
    assert {"lenet_optimizer_loss", "alexnet_bn_dropout_lr", "vgg16_base",
            "transfer_vgg16_xray", "family_search", "user_model"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_print_config_exits_0(path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert main(["tune", str(path.relative_to(ROOT)), "--print-config"]) == 0
    assert "study_name: lab-" in capsys.readouterr().out


def test_the_real_command():
    result = subprocess.run([sys.executable, "-m", "tunelab", "tune",
                             "examples/family_search.yaml", "--print-config"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_space_fits_the_data_and_models(path, monkeypatch, tmp_path_factory):
    monkeypatch.chdir(ROOT)
    cache = tmp_path_factory.getbasetemp() / "examples-cache"
    config = load_config(path, {"dataset.cache_dir": str(cache)})
    source = Path(config.dataset.source)
    if not source.exists() and source.parent == Path("../shared/data"):  # TUNELAB_SHARED_DATA
        from conftest import SHARED_DATA

        config = load_config(path, {"dataset.cache_dir": str(cache),
                                    "dataset.source": str(SHARED_DATA / source.name)})
    if not Path(config.dataset.source).exists():
        pytest.skip(f"{config.dataset.source} is not on this machine")
    validate_against_data(config, load_data(config))
