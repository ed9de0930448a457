"""Study-level figures made with ``optuna.visualization.matplotlib`` (no browser needed)."""

from __future__ import annotations

import warnings
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from .variant_curves import MAX_VARIANTS, comparison_figure  # noqa: E402

MIN_TRIALS_FOR_IMPORTANCE = 4


def study_figures(study: optuna.Study) -> tuple[dict[str, Any], list[str]]:
    """Figures by name, and notes on the ones skipped and why."""
    from optuna.visualization import matplotlib as ovm

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    figures: dict[str, Any] = {}
    notes: list[str] = []
    if not complete:
        return figures, ["no complete trial: no study plots"]
    searched = sorted({p for t in complete for p in t.distributions
                       if len({str(t2.params.get(p)) for t2 in complete}) > 1})
    # a multi-objective study is plotted by its first objective, the metric (the Pareto
    # front itself is drawn by the shell, with the selection rule's pick)
    target: dict[str, Any] = {}
    if len(study.directions) > 1:
        metric = study.user_attrs.get("config", {}).get("objective", {}).get("metric")
        target = {"target": lambda t: t.values[0], "target_name": metric or "objective 0"}
    plots = {"optimization_history": lambda: ovm.plot_optimization_history(study, **target)}
    if target:
        notes.append("multi-objective study: no intermediate values (Optuna cannot prune it)")
    else:
        plots["intermediate_values"] = lambda: ovm.plot_intermediate_values(study)
    if searched:
        plots["parallel_coordinate"] = lambda: ovm.plot_parallel_coordinate(
            study, params=searched, **target)
        plots["slice"] = lambda: ovm.plot_slice(study, params=searched, **target)
    else:
        notes.append("no parameter took two values among complete trials: no slice or "
                     "parallel-coordinate plot")
    if len(complete) >= MIN_TRIALS_FOR_IMPORTANCE and len(searched) >= 2:
        plots["param_importances"] = lambda: ovm.plot_param_importances(study, params=searched,
                                                                        **target)
    else:
        notes.append(f"parameter importances need at least {MIN_TRIALS_FOR_IMPORTANCE} complete "
                     f"trials and two varied parameters (have {len(complete)} and "
                     f"{len(searched)}): skipped")
    if (study.user_attrs.get("config", {}).get("sampler", {}).get("kind") == "grid"
            and len(complete) <= MAX_VARIANTS):  # the labs' side-by-side curves (compare.py)
        plots["variant_curves"] = lambda: comparison_figure(complete)
    for name, make in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = make()
            fig = _figure_of(axes)
            fig.set_size_inches(max(fig.get_size_inches()[0], 8), max(fig.get_size_inches()[1], 5))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig.tight_layout()
            figures[name] = fig
        except Exception as err:  # a plot that cannot be drawn must not fail the study
            notes.append(f"{name}: not drawn ({type(err).__name__}: {err})")
    return figures, notes


def _figure_of(axes: Any):
    if hasattr(axes, "figure"):
        return axes.figure
    first = axes.flat[0] if hasattr(axes, "flat") else axes[0]
    return first.figure


def close_all() -> None:
    plt.close("all")
