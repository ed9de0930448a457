"""Everything MLflow: the study's parent run, the trials' nested runs, plots, the store."""

from .runs import StudyTracker, TrialRun
from .server import RunningServer, server_command, start_server
from .store import artifact_root, package_versions, resolve_tracking_uri, ui_command

__all__ = ["RunningServer", "StudyTracker", "TrialRun", "server_command", "start_server",
           "artifact_root", "package_versions", "resolve_tracking_uri", "ui_command"]
