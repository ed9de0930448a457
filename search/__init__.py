"""Everything Optuna: the search space, the objective, the study, pruning and its plots.

Names load on first use, so ``tunelab.config`` (which needs only the space) and the MLflow
writer process do not import Keras and TensorFlow through ``search.objective``.
"""

from importlib import import_module

_WHERE = {
    "BudgetReached": "trial", "Objective": "objective", "TrialDiverged": "trial",
    "TrialFailed": "trial", "current_rss_mb": "trial", "run_trials": "objective",
    "TrialLifecycle": "trial", "TrialHooks": "trial", "plan_trial": "trial",
    "EventWriter": "progress", "ProgressHooks": "progress",
    "Choice": "space", "Fixed": "space", "FloatRange": "space", "IntRange": "space",
    "SearchSpace": "space",
    "best_trial": "study", "counted_trials": "study", "make_pruner": "study",
    "make_sampler": "study", "open_storage": "study", "open_study": "study",
    "over_budget": "study",
    "summarize": "summary",
    "close_all": "study_plots", "study_figures": "study_plots",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
