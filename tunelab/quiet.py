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
- On a CPU where TensorFlow turns oneDNN on by itself (AVX512-VNNI, AVX-VNNI, AMX: seen on
  tensorflow-cpu 2.21), ``import tensorflow`` prints absl's "All log messages before
  absl::InitializeLog() ..." and oneDNN's "custom operations are on" from a library whose
  logger reads ``TF_CPP_MIN_LOG_LEVEL`` only later, so the variable does not reach them:
  quiet mode runs that import with file descriptor 2 in a temporary file and writes back
  every line but absl's info and warning lines (``quiet_noisy_imports``). Errors stay.
- ``MLFLOW_LOGGING_LEVEL=ERROR`` and the ``mlflow``/``alembic`` loggers: "Creating initial
  MLflow database tables", "Validating input example", the CloudPickle warning.
- ``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false``: the tqdm "Downloading artifacts" bars.
- Warnings: only tunelab's own (raised from its source) are shown, as ``tunelab: warning:``
  lines; the frameworks' (MLflow's type-hint UserWarning with raw ANSI codes, Optuna's
  ExperimentalWarning, Keras') show with ``-v``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
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
    quiet_noisy_imports()
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


#: top-level modules whose import writes C++ log lines that no setting reaches (above)
NOISY_IMPORTS = ["tensorflow"]
#: what quiet mode drops from such an import's stderr: absl's preamble, and its info and
#: warning lines ("I0000 00:00:1796195721.213871    4033 port.cc:153] ..."); errors stay
_NOISE = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\) is called are "
                    r"written to STDERR|[IW]\d{4} \d\d:\d\d:[\d.]+ +\d+ \S+:\d+\] .*")


def held_stderr_path(pid: int) -> Path:
    """Where process ``pid`` holds its noisy import's stderr; left behind only if the process
    died during the import (``tune`` shows a dead worker's)."""
    import tempfile

    return Path(tempfile.gettempdir()) / f"tunelab-import-stderr-{pid}.log"


@contextlib.contextmanager
def stderr_filtered():
    """File descriptor 2 (C++ writes too) goes to a file for the block; then every line but
    ``_NOISE`` is written to the real stderr, in order. Where the file cannot be made (a full
    or read-only temp folder, fd 2 closed), the block runs unfiltered."""
    path = held_stderr_path(os.getpid())
    held = saved = None
    try:
        if sys.stderr is not None:
            sys.stderr.flush()
        held = open(path, "w+b")
        saved = os.dup(2)
    except (OSError, ValueError):
        if held is not None:
            held.close()
            path.unlink(missing_ok=True)
        held = None
    if held is None:
        yield
        return
    os.dup2(held.fileno(), 2)
    try:
        yield
    finally:
        try:
            if sys.stderr is not None:
                sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)
        os.close(saved)
        held.seek(0)
        text = held.read().decode("utf-8", errors="replace")
        held.close()
        path.unlink(missing_ok=True)
        kept = [line for line in text.splitlines(keepends=True)
                if not _NOISE.fullmatch(line.rstrip("\r\n"))]
        if kept:
            try:
                os.write(2, "".join(kept).encode("utf-8"))
            except OSError:  # stderr gone (a closed pipe): nothing to show it on
                pass


class _QuietImportFinder:
    """On ``sys.meta_path``: the first import of a module in ``NOISY_IMPORTS`` runs inside
    ``stderr_filtered``. Finds nothing itself: the module's own loader does the work."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in NOISY_IMPORTS or fullname in sys.modules:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        run = spec.loader.exec_module

        def exec_module(module):
            with stderr_filtered():
                run(module)

        spec.loader.exec_module = exec_module  # this loader object serves this module only
        return spec


def quiet_noisy_imports() -> None:
    """Install ``_QuietImportFinder`` (once) unless every noisy module is imported already."""
    if not any(isinstance(f, _QuietImportFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImportFinder())
