"""Everything MLflow: the study's parent run, the trials' nested runs, plots, the store.

The names below load MLflow on first use, not at ``import tunelab.tracking``: a worker
process imports only ``tracking.remote`` and ``tracking.writer`` (MLflow-free), and its
writer process does the MLflow work on another core.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"StudyTracker": "runs", "TrialRun": "runs", "RunningServer": "server",
            "server_command": "server", "start_server": "server",
            "artifact_root": "store", "package_versions": "store",
            "resolve_tracking_uri": "store", "ui_command": "store"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
