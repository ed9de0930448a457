"""Everything MLflow: the study's parent run, the trials' nested runs, plots, the store."""

from .runs import StudyTracker, TrialRun
from .store import artifact_root, package_versions, resolve_tracking_uri, ui_command

__all__ = ["StudyTracker", "TrialRun", "artifact_root", "package_versions",
           "resolve_tracking_uri", "ui_command"]
