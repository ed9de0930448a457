"""A trial's model on disk: the ``.keras`` file (architecture, weights, optimizer state) plus
a JSON sidecar with what is needed to use it again (loss/head, classes, input shape, history).

Pure Keras: which trials keep a checkpoint is decided in ``tunelab.search.top_checkpoints``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras

from . import (
    custom_objects,  # noqa: F401  (registers SignAccuracy and BackboneInput: loading needs them)
    transfer,
)


class CheckpointError(ValueError):
    """A checkpoint that is missing or unreadable; the message names the file."""


def meta_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def save_checkpoint(model: keras.Model, path: str | Path, meta: Mapping[str, Any]) -> Path:
    """Write the model and its sidecar atomically (a crash leaves the old pair or none)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    model.save(tmp)  # includes the optimizer state, so training can continue
    tmp_meta = tmp.with_suffix(".json")
    plan = transfer.transfer_plan(model)  # not part of the .keras file: kept beside it
    meta = {**meta, "transfer_plan": dataclasses.asdict(plan)} if plan else dict(meta)
    tmp_meta.write_text(json.dumps(meta, indent=1, default=_jsonable))
    os.replace(tmp, path)
    os.replace(tmp_meta, meta_path(path))
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def load_checkpoint(path: str | Path, compile: bool = True) -> tuple[keras.Model, dict]:
    """The model (with its optimizer state when ``compile``) and its sidecar."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        # safe_mode: a Lambda layer's pickled Python code is refused, never run
        model = keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as err:  # Keras raises several kinds for a damaged archive
        raise CheckpointError(f"{path}: not a loadable Keras model ({type(err).__name__}: "
                              f"{err}); delete it to retrain the trial") from None
    meta = json.loads(meta_path(path).read_text()) if meta_path(path).is_file() else {}
    if meta.get("transfer_plan"):  # a transfer model goes on with its training plan
        transfer.attach_plan(model, meta["transfer_plan"])
    return model, meta


def remove_checkpoint(path: str | Path) -> None:
    for p in (Path(path), meta_path(path)):
        p.unlink(missing_ok=True)
