"""The study plots are readable at the size they are logged: every figure is drawn at that
size and resolution and no two of its texts overlap (matplotlib's ``get_window_extent`` of
every text actually drawn) or leave the canvas. Pure matplotlib on synthetic studies."""

from __future__ import annotations

import io
import itertools
import math

import optuna
import pytest
from matplotlib.text import Text
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from tunelab.search.study_plots import (
    LOGGED_DPI,
    MAX_WIDTH_IN,
    MIN_TRIALS_FOR_IMPORTANCE,
    interactive_page,
    study_figures,
    top_rows,
)
from tunelab.search.variant_curves import Curves, overfitting_figure
from tunelab.tracking.plots import TRIAL_DPI, learning_curves

# the labs' search, with the long values that used to collide
DISTRIBUTIONS = {
    "learning_rate": FloatDistribution(1e-5, 1e-2, log=True),
    "batch_size": CategoricalDistribution([32, 64, 128]),
    "optimizer": CategoricalDistribution(["adam", "sgd", "rmsprop"]),
    "loss": CategoricalDistribution(["categorical_crossentropy", "categorical_hinge"]),
    "n_base": CategoricalDistribution([8, 16, 32]),
    "dropout": FloatDistribution(0.0, 0.5),
    "spatial_dropout": FloatDistribution(0.0, 0.3),
    "batch_norm": CategoricalDistribution([True, False]),
    "n_blocks": IntDistribution(1, 3),
}
CONFIG = {"objective": {"metric": "val_accuracy", "kind": "metric", "gap_tolerance": 0.05},
          "sampler": {"kind": "tpe"}, "max_epochs": 15, "dataset": {"cv_folds": 1}}


def synthetic_study(n_complete: int, n_pruned: int = 4, n_failed: int = 1,
                    params=DISTRIBUTIONS) -> optuna.Study:
    study = optuna.create_study(direction="maximize", study_name="readable")
    study.set_user_attr("config", CONFIG)
    rng = __import__("random").Random(0)
    for number in range(n_complete + n_pruned + n_failed):
        values = {}
        for name, dist in params.items():
            if isinstance(dist, CategoricalDistribution):
                values[name] = dist.choices[number % len(dist.choices)]
            elif isinstance(dist, IntDistribution):
                values[name] = dist.low + number % (dist.high - dist.low + 1)
            elif dist.log:
                values[name] = 10 ** rng.uniform(math.log10(dist.low), math.log10(dist.high))
            else:
                values[name] = rng.uniform(dist.low, dist.high)
        state = (TrialState.COMPLETE if number < n_complete else
                 TrialState.PRUNED if number < n_complete + n_pruned else TrialState.FAIL)
        epochs = 12 if state == TrialState.COMPLETE else 3
        val = [0.5 + 0.4 * (1 - math.exp(-e / 3)) + 0.01 * rng.random() for e in range(epochs)]
        train = [v + 0.002 * e * (number % 4) for e, v in enumerate(val)]
        history = {"accuracy": train, "val_accuracy": val,
                   "loss": [1.5 - v for v in train], "val_loss": [1.5 - v for v in val]}
        best = max(range(epochs), key=lambda e: val[e])
        summary = {"best_epoch": best + 1, "epochs_trained": epochs,
                   "gap_accuracy": train[best] - val[best]}
        study.add_trial(create_trial(
            state=state, params=values, distributions=params,
            value=max(val) if state == TrialState.COMPLETE else None,
            intermediate_values={e: val[e] for e in range(epochs)}
            if state != TrialState.FAIL else {},
            user_attrs={"history": history, "summary": summary}))
    return study


def drawn_texts(fig, dpi: int):
    """(text, window extent) of every text drawn when the figure is saved at ``dpi``."""
    drawn = {}  # a text drawn twice (a tick label, by its axis and the figure) counts once
    original = Text.draw

    def recording(self, renderer):
        original(self, renderer)
        if self.get_visible() and self.get_text().strip():
            drawn[id(self)] = (self, self.get_window_extent(renderer))

    Text.draw = recording
    try:
        fig.savefig(io.BytesIO(), format="png", dpi=dpi)
    finally:
        Text.draw = original
    return list(drawn.values())


def assert_readable(fig, dpi: int, name: str) -> None:
    width, height = fig.get_size_inches() * dpi
    assert width <= MAX_WIDTH_IN * LOGGED_DPI + 1, f"{name}: {width:.0f} px wide"
    texts = drawn_texts(fig, dpi)
    assert texts, name
    for text, box in texts:  # nothing cut off at the edges
        assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= width + 1 and \
            box.y1 <= height + 1, f"{name}: {text.get_text()!r} leaves the figure ({box})"
    for (a, box_a), (b, box_b) in itertools.combinations(texts, 2):
        across = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
        up = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
        assert not (across > 1 and up > 1), (  # more than a pixel each way
            f"{name}: {a.get_text()!r} overlaps {b.get_text()!r} ({box_a} / {box_b})")


@pytest.fixture(scope="module")
def figures():
    figs, notes = study_figures(synthetic_study(MIN_TRIALS_FOR_IMPORTANCE + 2))
    return figs, notes


def test_every_study_figure_is_readable_at_its_logged_size(figures):
    figs, notes = figures
    assert set(figs) == {"optimization_history", "intermediate_values", "parallel_coordinate",
                         "slice", "param_importances", "overfitting"}, notes
    for name, fig in figs.items():
        assert_readable(fig, LOGGED_DPI, name)


def test_axes_are_named_by_the_metric_and_epochs_count_from_1(figures):
    figs, _ = figures
    for name in ("optimization_history", "intermediate_values"):
        ax = figs[name].axes[0]
        assert "val_accuracy" in ax.get_ylabel() and "Objective" not in ax.get_ylabel()
    steps = figs["intermediate_values"].axes[0]
    assert steps.get_xlabel() == "epoch"
    assert min(min(line.get_xdata()) for line in steps.lines) == 1  # Optuna's step 0
    texts = [t.get_text() for t in figs["param_importances"].findobj(Text)]
    assert f"parameter importances over {MIN_TRIALS_FOR_IMPORTANCE + 2} complete trials" \
        in texts


def test_pruned_trials_are_shown(figures):
    figs, _ = figures
    legend = [t.get_text() for t in figs["optimization_history"].axes[0].get_legend().texts]
    assert "pruned trial (value when pruned)" in legend
    dashed = [line for line in figs["intermediate_values"].axes[0].lines
              if line.get_linestyle() == "--"]
    assert len(dashed) == 4  # the four pruned trials, as far as they got
    assert any("4 pruned" in t.get_text() for t in figs["parallel_coordinate"].findobj(Text))


def test_importances_need_20_complete_trials():
    figs, notes = study_figures(synthetic_study(MIN_TRIALS_FOR_IMPORTANCE - 1))
    assert "param_importances" not in figs
    assert any("at least 20 complete trials" in n for n in notes)
    for name, fig in figs.items():  # a smaller study is as readable
        assert_readable(fig, LOGGED_DPI, name)


def test_overfitting_figure_overlays_train_and_validation_with_each_gap():
    study = synthetic_study(8, n_pruned=0, n_failed=0)
    figs, _ = study_figures(study)
    fig = figs["overfitting"]
    accuracy, loss, gaps = fig.axes[:3]
    assert len(accuracy.lines) == 2 * 6  # the top 6: train solid, validation dashed
    assert {line.get_linestyle() for line in accuracy.lines} == {"-", "--"}
    assert accuracy.get_xlim()[0] < 1 < accuracy.get_xlim()[1]
    labels = [t.get_text() for t in fig.legends[0].texts]
    assert len(labels) == 6 and all(s.startswith("#") and "learning_rate=" in s
                                    for s in labels)
    assert len(gaps.patches) == 6  # one bar per trial
    top = [row["number"] for row in top_rows(study, 6)]
    assert [s.split(" ")[0] for s in labels] == [f"#{n}" for n in top]  # best first
    # plain curves (a registration report's) draw the same way
    plain = overfitting_figure([Curves("a", {"loss": [1, 0.5], "val_loss": [1, 0.7]}, 0.1, 2)])
    assert plain is not None and len(plain.axes[0].lines) == 2


def test_per_trial_learning_curves_name_the_parameters_and_share_accuracy_limits():
    history = {"loss": [1.2, 0.6, 0.5], "val_loss": [1.0, 0.8, 0.9],
               "accuracy": [0.6, 0.8, 0.9], "val_accuracy": [0.62, 0.7, 0.68]}
    params = ", ".join(f"{k}=value_{i}" for i, k in enumerate(DISTRIBUTIONS))
    fig = learning_curves(history, "trial 4 (pruned at epoch 3)", 2, params=params)
    assert_readable(fig, TRIAL_DPI, "learning_curves")
    texts = " ".join(t.get_text() for t in fig.findobj(Text))
    assert "learning_rate=value_0" in texts and "trial 4 (pruned at epoch 3)" in texts
    accuracy = [ax for ax in fig.axes if ax.get_ylabel() == "accuracy"][0]
    assert accuracy.get_ylim() == (0.0, 1.02)
    other = learning_curves({k: [v * 0.5 for v in vs] for k, vs in history.items()}, "t", 1)
    assert [ax for ax in other.axes if ax.get_ylabel() == "accuracy"][0].get_ylim() == \
        (0.0, 1.02)


def test_interactive_page_is_self_contained():
    pytest.importorskip("plotly", reason="pip install plotly")
    page, notes = interactive_page(synthetic_study(6))
    assert page is not None, notes
    assert page.count("<h2>") >= 4 and "parallel coordinates" in page
    assert "<script src=" not in page  # plotly.js is inlined, not fetched: opens offline
    assert page.count("Plotly.newPlot") >= 4
