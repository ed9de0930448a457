"""A quiet terminal: the frameworks' own logs, warnings and bars stay off unless ``-v``.

Set here, in one place, before anything imports TensorFlow, absl, MLflow or Optuna: the
environment variables (which every child process inherits: workers, the tracking writer, a
local tracking server), the Python loggers and the warning filters. Imports no framework.

What each knob silences (measured on tensorflow-cpu 2.21, MLflow 3.17, Optuna 5.0):

- ``TF_CPP_MIN_LOG_LEVEL=2``: the C++ lines TensorFlow prints when it loads (absl's
  "All log messages before absl::InitializeLog() is called ...", ``cpu_feature_guard``'s
  instruction set line, oneDNN's "custom operations are on"). ``setdefault`` alone kept
  a value the environment already had (``0`` in some images, or empty), so quiet mode
  raises it to at least 2. ``TF_ENABLE_ONEDNN_OPTS`` is left to the user: it changes
  numerics, not logging.
- ``MLFLOW_LOGGING_LEVEL=ERROR`` and the ``mlflow``/``alembic`` loggers: "Creating initial
  MLflow database tables", "Validating input example", the CloudPickle warning.
- ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false``: the tqdm "Downloading artifacts" bars.
- Warnings: only tunelab's own (raised from its source) are shown, as ``tunelab: warning:``
  lines; the frameworks' (MLflow's type-hint UserWarning with raw ANSI codes, Optuna's
  ExperimentalWarning, Keras') show with ``-v``.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

VERBOSE_ENV = "TUNELAB_VERBOSE"  # "1": children of a `-v` command are verbose too
_ROOTS = tuple(str(Path(__file__).resolve().parents[1] / name) for name in
               ("tunelab", "models", "search", "tracking"))
FRAMEWORK_LOGGERS = ("mlflow", "alembic", "tensorflow", "absl", "optuna", "keras",
                     "urllib3", "matplotlib", "PIL", "h5py", "git", "huey", "uvicorn",
                     "gunicorn", "waitress")


_TF_LEVEL_OURS = False  # TF_CPP_MIN_LOG_LEVEL came from library_defaults, not the user


def library_defaults() -> None:
    """``import tunelab`` (notebooks too): TensorFlow's C++ start-up lines off, unless the
    environment says otherwise."""
    global _TF_LEVEL_OURS
    if "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
        _TF_LEVEL_OURS = True


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


def quiet_environment(environ: dict[str, str] | os._Environ = os.environ) -> None:
    """The environment variables of a quiet process (and of the processes it starts)."""
    try:
        level = int(environ.get("TF_CPP_MIN_LOG_LEVEL") or 0)
    except ValueError:
        level = 0
    environ["TF_CPP_MIN_LOG_LEVEL"] = str(max(level, 2))
    environ["MLFLOW_LOGGING_LEVEL"] = "ERROR"
    environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    environ.setdefault("GRPC_VERBOSITY", "ERROR")


def configure(verbose_flag: bool | None = None) -> bool:
    """Make this process quiet, or verbose (``-v``: everything as the frameworks print it).
    Call before importing a framework. Returns whether the process is verbose."""
    if verbose_flag:
        os.environ[VERBOSE_ENV] = "1"
    if verbose():
        if _TF_LEVEL_OURS and os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "2":
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL")  # TensorFlow's own default: everything
        for name in FRAMEWORK_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)
        warnings.showwarning = _SHOW_WARNING
        return True
    os.environ.pop(VERBOSE_ENV, None)
    quiet_environment()
    for name in FRAMEWORK_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.showwarning = _show_own_warnings
    return False


_SHOW_WARNING = warnings.showwarning


def _show_own_warnings(message, category, filename, lineno, file=None, line=None):
    """tunelab's own warnings as one line; the frameworks' only with ``-v``."""
    own = str(filename).startswith(_ROOTS) and category.__module__ in ("builtins", "tunelab")
    if not own:  # e.g. Optuna's ExperimentalWarning, attributed to tunelab's calling line
        return
    out = file or sys.stderr
    try:
        out.write(f"tunelab: warning: {message}\n")
        out.flush()
    except (OSError, ValueError):
        pass
