"""tunelab: Optuna hyperparameter search over Keras image classifiers, tracked in MLflow.

    import tunelab
    study = tunelab.tune("study.yaml", n_trials=5)      # or tunelab.tune() for the default

The framework rooms install inside this package: ``tunelab.models`` (Keras),
``tunelab.search`` (Optuna) and ``tunelab.tracking`` (MLflow). They are imported lazily so
that ``import tunelab`` stays fast.
"""

from __future__ import annotations

from tunelab import quiet

quiet.library_defaults()  # before anything loads TensorFlow
import sys  # noqa: E402

if __import__("os").path.basename(sys.argv[0] if sys.argv else "") in ("-m", "tunelab"):
    from tunelab.signals import quiet_interrupts_at_startup, stop_handlers_early  # noqa: E402

    quiet_interrupts_at_startup()  # Ctrl-C while the CLI imports: exit 130, no traceback
    stop_handlers_early(sys.argv[1:])  # tune / worker: before the imports, not after them

from tunelab.config import ConfigError, StudyConfig, load_config  # noqa: E402

__version__ = "0.1.0"
__all__ = ["ConfigError", "StudyConfig", "load_config", "run_worker", "tune"]


def tune(*args, **kwargs):
    from tunelab.tuning import tune as _tune

    return _tune(*args, **kwargs)


tune.__doc__ = "Run or resume a study; see tunelab.tuning.tune."


def run_worker(**kwargs):
    from tunelab.tuning import run_worker as _run_worker

    return _run_worker(**kwargs)
