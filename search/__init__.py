"""Everything Optuna: the search space, the objective, the study, pruning and its plots."""

from .objective import (
    BudgetReached,
    Objective,
    TrialDiverged,
    TrialFailed,
    current_rss_mb,
    run_trials,
)
from .progress import Progress
from .space import Choice, Fixed, FloatRange, IntRange, SearchSpace
from .study import (
    best_trial,
    counted_trials,
    make_pruner,
    make_sampler,
    open_storage,
    open_study,
    over_budget,
)
from .summary import summarize
from .visualize import close_all, study_figures

__all__ = [
    "BudgetReached", "Choice", "Fixed", "FloatRange", "IntRange", "Objective", "Progress",
    "SearchSpace", "TrialDiverged", "TrialFailed", "best_trial", "close_all", "counted_trials",
    "current_rss_mb", "make_pruner", "make_sampler", "open_storage", "open_study",
    "over_budget", "run_trials", "study_figures", "summarize",
]
