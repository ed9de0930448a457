"""The study's figures: PNGs drawn here with matplotlib, and Optuna's interactive Plotly
figures as one self-contained HTML page.

Drawn here rather than by ``optuna.visualization.matplotlib`` so that they stay readable at
the size they are logged (no label over another, no figure wider than ``MAX_WIDTH_IN``),
name their axes by the study's metric, count epochs from 1 as the learning curves do, and
show pruned trials (at the value they had when pruned) beside the complete ones.
``tests/search/test_study_plots.py`` renders each one and checks its text boxes.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402
from optuna.distributions import (  # noqa: E402
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState  # noqa: E402

from .variant_curves import (  # noqa: E402
    MAX_VARIANTS,
    TOP_TRIALS,
    overfitting_figure,
    trial_curves,
)

MIN_TRIALS_FOR_IMPORTANCE = 20  # fewer complete trials rank parameters by noise
MAX_WIDTH_IN = 14.5  # 1,600 px at the 110 dpi the figures are logged with
LOGGED_DPI = 110  # tracking logs study figures at this resolution
TICK_CHARS = 20  # a categorical value's label is cut here (in the middle)
PRUNED = {"color": "grey", "alpha": 0.7}
PRUNED_BAND = -0.12  # where pruned trials (no final value) sit below a 0..1 value axis


@dataclass(frozen=True)
class StudyView:
    """What every figure needs to know about the study, read once."""

    complete: list[FrozenTrial]
    pruned: list[FrozenTrial]  # pruned trials that reported at least one value
    n_failed: int
    searched: list[str]  # parameters that took two values among complete trials
    metric: str  # the validation metric, as the study file names it
    label: str  # the objective's axis label
    direction: str  # of the first objective
    multi: bool
    cv_folds: int
    max_epochs: int | None
    gap_tolerance: float | None
    grid: bool

    def value(self, trial: FrozenTrial) -> float:
        return trial.values[0]


def view_of(study: optuna.Study) -> StudyView:
    config = study.user_attrs.get("config", {})
    objective = config.get("objective") or {}
    metric = objective.get("metric") or "objective"
    kind = objective.get("kind") or "metric"
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.values]
    pruned = [t for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
              if t.intermediate_values]
    failed = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
    searched = list(dict.fromkeys(p for t in complete for p in t.distributions
                                  if len({str(t2.params.get(p)) for t2 in complete}) > 1))
    label = {"penalized": f"objective: {metric} minus the gap penalty"}.get(
        kind, f"best-epoch {metric}")
    direction = ("maximize" if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
                 else "minimize")
    dataset = config.get("dataset") or {}
    return StudyView(complete, pruned, failed, searched, metric, label, direction,
                     len(study.directions) > 1, int(dataset.get("cv_folds") or 1),
                     config.get("max_epochs"), objective.get("gap_tolerance"),
                     (config.get("sampler") or {}).get("kind") == "grid")


#: drawn by the tracking writer at a study's end while ``tune`` draws the others
#: (``study_outputs_of``); the writer also draws the Plotly page and the last trial's
#: figures then, so two small figures balance the two (measured on 10 BreastMNIST trials:
#: the overfitting figure 0.22 s, parallel coordinates 0.10 s, optimization history and
#: intermediate values 0.07 s each, the slice 0.11 s, the page 0.07 s without its contour;
#: the overfitting figure there made ``tune`` wait 0.4 to 0.9 s for the writer)
WRITER_FIGURES = ("slice", "intermediate_values")


def _plan(study: optuna.Study, view: StudyView) -> tuple[dict[str, Callable[[], Figure | None]],
                                                         list[str]]:
    """The figures this study gets, by name and in their logged order, and notes on the
    ones skipped and why."""
    notes: list[str] = []
    plots: dict[str, Callable[[], Figure | None]] = {
        "optimization_history": lambda: optimization_history(view),
        "overfitting": lambda: overfitting(view)}
    if view.multi:
        notes.append("multi-objective study: no intermediate values (Optuna cannot prune it)")
    else:
        plots["intermediate_values"] = lambda: intermediate_values(view)
    if view.searched:
        plots["parallel_coordinate"] = lambda: parallel_coordinate(view)
        plots["slice"] = lambda: slice_plot(view)
    else:
        notes.append("no parameter took two values among complete trials: no slice or "
                     "parallel-coordinate plot")
    if len(view.complete) >= MIN_TRIALS_FOR_IMPORTANCE and len(view.searched) >= 2:
        plots["param_importances"] = lambda: param_importances(study, view)
    else:
        notes.append(f"parameter importances need at least {MIN_TRIALS_FOR_IMPORTANCE} "
                     f"complete trials and two varied parameters (have {len(view.complete)} "
                     f"and {len(view.searched)}): skipped, fewer trials rank them by noise")
    return plots, notes


def _draw(plots: Mapping[str, Callable[[], Figure | None]]) -> tuple[dict[str, Figure],
                                                                    list[str]]:
    figures: dict[str, Figure] = {}
    notes: list[str] = []
    for name, make in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig = make()
            if fig is not None:
                figures[name] = fig
        except Exception as err:  # a plot that cannot be drawn must not fail the study
            notes.append(f"{name}: not drawn ({type(err).__name__}: {err})")
    return figures, notes


def study_figures(study: optuna.Study, *, skip: Sequence[str] = ()
                  ) -> tuple[dict[str, Any], list[str]]:
    """Figures by name (but those in ``skip``), and notes on the ones skipped and why."""
    view = view_of(study)
    if not view.complete:
        return {}, ["no complete trial: no study plots"]
    plots, notes = _plan(study, view)
    figures, failed = _draw({n: make for n, make in plots.items() if n not in skip})
    return figures, notes + failed


def figure_order(study: optuna.Study) -> list[str]:
    """The names ``study_figures`` draws, in order (where the writer's PNGs slot in)."""
    view = view_of(study)
    return list(_plan(study, view)[0]) if view.complete else []


def png_bytes(fig: Figure, dpi: int = LOGGED_DPI) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def study_outputs_of(study_name: str, trials: Sequence[FrozenTrial],
                     directions: Sequence[optuna.study.StudyDirection],
                     config: Mapping[str, Any], figures: Sequence[str] = WRITER_FIGURES,
                     dpi: int = LOGGED_DPI) -> tuple[dict[str, bytes], list[str], str | None,
                                                     list[str]]:
    """What another process (the tracking writer) draws at a study's end while ``tune``
    draws the other figures, from the study's trials and config rebuilt in memory: the
    ``figures`` named as PNG bytes and the notes on any not drawn, then the interactive page
    and its notes. Drawn one after the other in ``tune`` they took 1.0 s (measured): on the
    writer's core the two halves overlap."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line
    try:
        study = optuna.create_study(storage=optuna.storages.InMemoryStorage(),
                                    study_name=study_name, directions=list(directions))
    finally:
        optuna.logging.set_verbosity(verbosity)
    study.set_user_attr("config", dict(config))
    study.add_trials(trials)
    view = view_of(study)
    pngs: dict[str, bytes] = {}
    notes: list[str] = []
    if view.complete:
        plots, _ = _plan(study, view)
        drawn, notes = _draw({n: make for n, make in plots.items() if n in figures})
        pngs = {name: png_bytes(fig, dpi) for name, fig in drawn.items()}
    page, page_notes = interactive_page(study)
    return pngs, notes, page, page_notes


# -- the figures ---------------------------------------------------------------------------
def _last_value(trial: FrozenTrial) -> float:
    return trial.intermediate_values[max(trial.intermediate_values)]


def _better(view: StudyView) -> str:
    return "higher" if view.direction == "maximize" else "lower"


def optimization_history(view: StudyView) -> Figure:
    fig = Figure(figsize=(8, 4.8))
    ax = fig.subplots()
    xs = [t.number for t in view.complete]
    ys = [view.value(t) for t in view.complete]
    ax.scatter(xs, ys, color="tab:blue", s=22, zorder=3, label="complete trial")
    if view.pruned:
        ax.scatter([t.number for t in view.pruned], [_last_value(t) for t in view.pruned],
                   marker="x", s=28, zorder=2, label="pruned trial (value when pruned)",
                   **PRUNED)
    best = np.maximum.accumulate(ys) if view.direction == "maximize" else (
        np.minimum.accumulate(ys))
    ax.step(xs, best, where="post", color="tab:red", lw=1.2, label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{view.label} ({_better(view)} is better)", fontsize=9)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(f"optimization history: {len(view.complete)} complete, "
                 f"{len(view.pruned)} pruned, {view.n_failed} failed trials", fontsize=10)
    _fixed_margins(fig, ax)
    return fig


def _fixed_margins(fig: Figure, ax) -> None:
    """Margins for one axes with a title, an x label and a y label, from the widest y tick
    label: ``tight_layout`` measured every text for that (0.03 s a figure, a third of its
    drawing) and left a layout engine that makes ``savefig`` lay the figure out again."""
    width, height = fig.get_size_inches()
    chars = max([len(t.get_text()) for t in ax.get_yticklabels()] + [3])
    left = 0.45 + 0.075 * chars
    fig.subplots_adjust(left=left / width, right=1 - 0.15 / width, bottom=0.6 / height,
                        top=1 - 0.36 / height)


def intermediate_values(view: StudyView) -> Figure:
    fig = Figure(figsize=(8, 4.8))
    ax = fig.subplots()
    for t in view.complete:
        steps = sorted(t.intermediate_values)
        ax.plot([s + 1 for s in steps], [t.intermediate_values[s] for s in steps],
                color="tab:blue", lw=1, alpha=0.7)
    for t in view.pruned:
        steps = sorted(t.intermediate_values)
        ax.plot([s + 1 for s in steps], [t.intermediate_values[s] for s in steps], "--",
                lw=1, **PRUNED)
        ax.plot([steps[-1] + 1], [t.intermediate_values[steps[-1]]], "x", ms=6, **PRUNED)
    ax.legend(handles=[Line2D([], [], color="tab:blue", label="complete trials"),
                       Line2D([], [], ls="--", marker="x", label="pruned trials (x: pruned)",
                              **PRUNED)], fontsize=8, loc="best")
    if view.cv_folds > 1 and view.max_epochs:
        ax.set_xlabel(f"epoch across folds: fold k's epoch e is (k - 1) x {view.max_epochs}"
                      " + e")
    else:
        ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"{view.metric} ({_better(view)} is better)")
    ax.grid(alpha=0.3)
    ax.set_title(f"{view.metric} per epoch, as the pruner saw it", fontsize=10)
    _fixed_margins(fig, ax)
    return fig


def overfitting(view: StudyView) -> Figure | None:
    if view.grid and len(view.complete) <= MAX_VARIANTS:
        trials = sorted(view.complete, key=lambda t: t.number)
        what = f"all {len(trials)} variants of the grid"
    else:
        reverse = view.direction == "maximize"
        trials = sorted(view.complete, key=view.value, reverse=reverse)[:TOP_TRIALS]
        what = (f"the top {len(trials)} of {len(view.complete)} complete trials by "
                f"{view.metric}")
    return overfitting_figure(trial_curves(trials), gap_tolerance=view.gap_tolerance,
                              title=f"Which model overfits? {what}")


def _cut(text: str, chars: int = TICK_CHARS) -> str:
    """``text`` in at most ``chars`` characters, cut in the middle: choices often differ
    only at the end (categorical_crossentropy, categorical_hinge)."""
    if len(text) <= chars:
        return text
    head = (chars - 1) // 2
    return text[:head] + "\u2026" + text[len(text) - (chars - 1 - head):]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return _cut(str(value))


class _Axis:
    """One parameter on a 0..1 scale: linear, log or evenly spaced choices."""

    def __init__(self, name: str, trials: Sequence[FrozenTrial]):
        self.name = name
        dists = [t.distributions[name] for t in trials if name in t.distributions]
        dist = dists[0] if dists else None
        values = [t.params[name] for t in trials if name in t.params]
        self.categorical = isinstance(dist, CategoricalDistribution) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        self.log = bool(getattr(dist, "log", False))
        self.integer = isinstance(dist, IntDistribution)
        if self.categorical:
            choices = list(dist.choices) if isinstance(dist, CategoricalDistribution) else []
            seen = [v for v in dict.fromkeys(map(str, values))]
            self.choices = [str(c) for c in choices] or seen
        elif isinstance(dist, (FloatDistribution, IntDistribution)):
            self.low, self.high = float(dist.low), float(dist.high)
        else:
            self.low, self.high = float(min(values)), float(max(values))

    def _t(self, v: float) -> float:
        return math.log10(v) if self.log else v

    def scale(self, value: Any) -> float:
        if self.categorical:
            i = self.choices.index(str(value)) if str(value) in self.choices else 0
            return 0.5 if len(self.choices) == 1 else i / (len(self.choices) - 1)
        low, high = self._t(self.low), self._t(self.high)
        return 0.5 if high == low else (self._t(float(value)) - low) / (high - low)

    def ticks(self) -> list[tuple[float, str]]:
        if self.categorical:
            step = max(1, math.ceil(len(self.choices) / 10))
            return [(self.scale(c), _cut(c)) for c in self.choices[::step]]
        if self.integer and self.high - self.low <= 6:
            return [(self.scale(v), str(v)) for v in range(int(self.low), int(self.high) + 1)]
        out = []
        for f in np.linspace(0, 1, 5):
            raw = self._t(self.low) + f * (self._t(self.high) - self._t(self.low))
            out.append((f, f"{10 ** raw if self.log else raw:.3g}"))
        return out


def parallel_coordinate(view: StudyView) -> Figure:
    names = view.searched
    trials = view.complete + view.pruned
    axes_ = [_Axis(n, trials) for n in names]
    n = len(names)
    per_axis = min(1.5, (MAX_WIDTH_IN - 2.0) / (n + 1))
    width = min(MAX_WIDTH_IN, max(7.0, per_axis * (n + 1) + 2.0))
    fig = Figure(figsize=(width, 5.2))
    ax = fig.subplots()
    values = [view.value(t) for t in view.complete]
    low, high = min(values), max(values)

    def obj(v: float) -> float:
        return 0.5 if high == low else (v - low) / (high - low)

    cmap = plt.get_cmap("viridis" if view.direction == "maximize" else "viridis_r")
    norm = Normalize(low, high if high > low else low + 1e-9)
    xs = list(range(n + 1))
    for t in view.pruned:  # no final value: they end in the "pruned" band below the axis
        ax.plot(xs, [a.scale(t.params.get(a.name)) for a in axes_] + [PRUNED_BAND], "--",
                lw=0.8, color="grey", alpha=0.45)
    for t in sorted(view.complete, key=view.value, reverse=view.direction == "minimize"):
        v = view.value(t)
        ax.plot(xs, [a.scale(t.params.get(a.name)) for a in axes_] + [obj(v)], lw=1.3,
                color=cmap(norm(v)), alpha=0.9)
    ticks = [a.ticks() for a in axes_]
    ticks.append([(obj(y), f"{y:.3g}") for y in np.linspace(low, high, 5)]
                 + ([(PRUNED_BAND, "pruned")] if view.pruned else []))
    titles = [_cut(a.name, 22) + (" (log)" if getattr(a, "log", False) and not a.categorical
                                  else "") for a in axes_] + [view.metric]
    for x, (tick_list, title) in enumerate(zip(ticks, titles, strict=True)):
        ax.axvline(x, color="black", lw=0.8)
        for y, text in tick_list:
            ax.plot([x - 0.03, x], [y, y], color="black", lw=0.8)
            ax.text(x + 0.04, y, text, fontsize=7, va="center", ha="left", zorder=5,
                    bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none",
                          "pad": 0.6})
        # names alternate between two heights, so long neighbours never touch
        ax.text(x, 1.05 + 0.07 * (x % 2), title, fontsize=8, ha="center", va="bottom",
                fontweight="bold" if x == n else "normal")
    ax.set_xlim(-0.15, n + 0.75)
    ax.set_ylim(PRUNED_BAND - 0.04 if view.pruned else -0.04, 1.04)
    ax.axis("off")
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, pad=0.01, fraction=0.03,
                 label=f"{view.metric} (complete trials)")
    ax.set_title(f"parallel coordinates: {len(view.complete)} complete trials coloured by "
                 f"{view.metric}, {len(view.pruned)} pruned (grey, dashed)", fontsize=9,
                 pad=36)
    fig.subplots_adjust(left=0.03, right=0.95, bottom=0.04, top=0.8)
    return fig


def slice_plot(view: StudyView) -> Figure:
    """The objective against each parameter; pruned trials (no final value) in a band below
    the complete trials' range, so they never squash it."""
    names = view.searched
    n = len(names)
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    width = min(MAX_WIDTH_IN, 3.1 * ncols + 1.6)
    height = 2.7 * nrows + 0.9
    fig = Figure(figsize=(width, height))
    grid = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    numbers = [t.number for t in view.complete]
    norm = Normalize(min(numbers), max(numbers) if max(numbers) > min(numbers) else
                     min(numbers) + 1)
    values = [view.value(t) for t in view.complete]
    low, high = min(values), max(values)
    span = (high - low) or max(abs(high) * 0.05, 1e-3)
    band = low - 0.25 * span  # the pruned trials' row
    trials = view.complete + view.pruned
    scatter = None
    for i, name in enumerate(names):
        ax = grid[i // ncols][i % ncols]
        axis = _Axis(name, trials)
        done = [t for t in view.complete if name in t.params]
        cut = [t for t in view.pruned if name in t.params]
        if axis.categorical:
            def pos(t: FrozenTrial, axis: _Axis = axis) -> float:
                return axis.choices.index(str(t.params[axis.name]))
            long = max(map(len, axis.choices)) > 5
            ax.set_xticks(range(len(axis.choices)), [_cut(c, 12) for c in axis.choices],
                          fontsize=7, rotation=25 if long else 0,
                          ha="right" if long else "center")
            ax.set_xlim(-0.5, len(axis.choices) - 0.5)
        else:
            def pos(t: FrozenTrial, axis: _Axis = axis) -> float:
                return float(t.params[axis.name])
            if axis.log:
                ax.set_xscale("log")
                ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 3.0), numticks=4))
                ax.xaxis.set_minor_formatter(NullFormatter())
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))
            else:
                ax.xaxis.set_major_locator(MaxNLocator(4, integer=axis.integer))
            ax.tick_params(axis="x", labelsize=7)
        scatter = ax.scatter([pos(t) for t in done], [view.value(t) for t in done],
                             c=[t.number for t in done], cmap="Blues", norm=norm, s=22,
                             edgecolors="grey", linewidths=0.4, zorder=3)
        if cut:
            ax.scatter([pos(t) for t in cut], [band] * len(cut), marker="x", s=22, zorder=2,
                       **PRUNED)
            ax.axhline(band + 0.12 * span, color="grey", lw=0.5, ls=":")
        ax.set_xlabel(_cut(name, 28) + (" (log)" if axis.log else ""), fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(axis="y", labelsize=7)
        if i % ncols == 0:
            ax.set_ylabel(view.metric, fontsize=8)
    first = grid[0][0]
    first.set_ylim((band if view.pruned else low) - 0.1 * span, high + 0.1 * span)
    ticks = [y for y in MaxNLocator(5).tick_values(low, high) if low - 0.05 * span <= y
             <= high + 0.05 * span]
    first.set_yticks(ticks + ([band] if view.pruned else []),
                     [f"{y:.3g}" for y in ticks] + (["pruned"] if view.pruned else []))
    for j in range(n, nrows * ncols):
        grid[j // ncols][j % ncols].remove()
    fig.suptitle(f"slice: {view.label} against each parameter ({_better(view)} is better); "
                 "dots: complete trials, shaded by trial number; x: pruned", fontsize=9)
    # fixed margins (the size is fixed); tight_layout took seconds on a 3 x 4 grid
    fig.subplots_adjust(left=0.75 / width, right=1 - 1.25 / width, top=1 - 0.55 / height,
                        bottom=0.75 / height, wspace=0.12, hspace=0.75 / 2.0)
    cax = fig.add_axes((1 - 1.05 / width, 0.75 / height, 0.16 / width,
                        1 - 1.3 / height))
    fig.colorbar(scatter, cax=cax)
    cax.tick_params(labelsize=7)
    cax.set_ylabel("trial number", fontsize=8)
    return fig


def param_importances(study: optuna.Study, view: StudyView) -> Figure:
    target = (lambda t: t.values[0]) if view.multi else None
    importances = optuna.importance.get_param_importances(study, params=view.searched,
                                                          target=target)
    names = list(importances)[::-1]  # the most important at the top
    fig = Figure(figsize=(8, 1.6 + 0.42 * len(names)))
    ax = fig.subplots()
    values = [importances[n] for n in names]
    ax.barh(range(len(names)), values, color="tab:blue", height=0.6)
    for y, v in enumerate(values):
        ax.text(v + 0.01, y, f"{v:.2f}", va="center", fontsize=8)
    ax.set_yticks(range(len(names)), [_cut(n, 28) for n in names], fontsize=8)
    ax.set_xlim(0, max(values + [0.01]) * 1.2)
    ax.set_xlabel(f"importance for {view.metric} (fANOVA; sums to 1)")
    ax.set_title(f"parameter importances over {len(view.complete)} complete trials",
                 fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


# -- interactive pages and the parent run's table ------------------------------------------
def interactive_page(study: optuna.Study) -> tuple[str | None, list[str]]:
    """Optuna's Plotly figures in one self-contained HTML page (plotly.js embedded once, so
    it opens offline, in MLflow's artifact viewer too); None without plotly or trials."""
    view = view_of(study)
    if not view.complete:
        return None, []
    try:
        import plotly  # noqa: F401
    except ImportError:
        return None, ["interactive study plots need plotly (pip install plotly): skipped"]
    from optuna import visualization as ov

    target = {"target_name": view.label}
    notes: list[str] = []
    if view.multi:
        target["target"] = lambda t: t.values[0]
    makers: dict[str, Callable[[], Any]] = {
        "optimization history": lambda: ov.plot_optimization_history(study, **target)}
    if not view.multi:
        makers["intermediate values (steps counted from 0)"] = (
            lambda: ov.plot_intermediate_values(study))
    if view.searched:
        makers["parallel coordinates"] = lambda: ov.plot_parallel_coordinate(
            study, params=view.searched, **target)
        makers["slice"] = lambda: ov.plot_slice(study, params=view.searched, **target)
        if len(view.searched) >= 2 and len(view.complete) >= MIN_TRIALS_FOR_IMPORTANCE:
            makers["contour"] = lambda: ov.plot_contour(study, params=view.searched[:4],
                                                        **target)
        elif len(view.searched) >= 2:
            # the costliest figure of the page (0.16 s of a study end), and with fewer trials
            # its interpolated surface is mostly guesswork between a handful of points
            notes.append(f"interactive contour needs at least {MIN_TRIALS_FOR_IMPORTANCE} "
                         f"complete trials (have {len(view.complete)}): skipped")
    if len(view.complete) >= MIN_TRIALS_FOR_IMPORTANCE and len(view.searched) >= 2:
        makers[f"parameter importances ({len(view.complete)} complete trials)"] = (
            lambda: ov.plot_param_importances(study, params=view.searched, **target))
    parts: list[str] = []
    for title, make in makers.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig = make()
            parts.append(f"<h2>{title}</h2>\n" + fig.to_html(
                full_html=False, include_plotlyjs=not parts, default_width="100%"))
        except Exception as err:
            notes.append(f"interactive {title}: not drawn ({type(err).__name__}: {err})")
    if not parts:
        return None, notes
    page = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>study {study.study_name}: interactive plots</title>"
            "<style>body{font-family:sans-serif;margin:16px}h2{font-size:16px;"
            "margin:28px 0 4px}</style></head><body>\n"
            f"<h1>Study {study.study_name}</h1>\n<p>{len(view.complete)} complete, "
            f"{len(view.pruned)} pruned trials; objective: {view.label} ({_better(view)} is "
            "better). Hover for values, drag to zoom, double-click to reset.</p>\n"
            + "\n".join(parts) + "\n</body></html>\n")
    return page, notes


def top_rows(study: optuna.Study, k: int = 5) -> list[dict[str, Any]]:
    """The ``k`` best complete trials as plain rows (the parent run's note)."""
    view = view_of(study)
    reverse = view.direction == "maximize"
    rows = []
    for t in sorted(view.complete, key=view.value, reverse=reverse)[:k]:
        s = t.user_attrs.get("summary") or {}
        rows.append({"number": t.number, "value": view.value(t), "gap": s.get("gap_accuracy"),
                     "best_epoch": s.get("best_epoch") and int(s["best_epoch"]),
                     "epochs": s.get("epochs_trained") and int(s["epochs_trained"]),
                     "state": t.state.name, "params": dict(t.params)})
    return rows


def close_all() -> None:
    plt.close("all")


__all__ = ["LOGGED_DPI", "MIN_TRIALS_FOR_IMPORTANCE", "WRITER_FIGURES", "close_all",
           "figure_order", "interactive_page", "png_bytes", "study_figures",
           "study_outputs_of", "top_rows", "view_of"]
