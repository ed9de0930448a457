"""The ablation figure overlays a knob's variants: per variant the train (solid) and validation
(dashed) curves' mean over seeds with a band of one sd, the base in black, epochs from 1, and
the knob's table and stated effects underneath, all readable."""

from __future__ import annotations

import numpy as np
from figure_text import assert_readable
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgb
from matplotlib.text import Text

from tunelab.search.ablation import Variant, figure_series, knob_table, seed_run
from tunelab.tracking.ablation_plots import ablation_figure


def _run(seed, acc, val):
    history = {"accuracy": acc, "val_accuracy": val, "loss": [1 - a for a in acc],
               "val_loss": [1 - v for v in val]}
    return seed_run(seed, history, "val_accuracy", "maximize")


RESULTS = [
    (Variant("base", {}, {"batch_norm": False}),
     [_run(1, [0.5, 0.6, 0.7, 0.8], [0.5, 0.55, 0.6, 0.58]),
      _run(2, [0.4, 0.6, 0.8, 0.8], [0.5, 0.5, 0.62, 0.6]),
      _run(3, [0.45, 0.65, 0.75, 0.85], [0.52, 0.56, 0.61, 0.6])]),
    (Variant("batch_norm=True", {"batch_norm": True}, {"batch_norm": True}),
     [_run(1, [0.7, 0.85, 0.9, 0.95], [0.6, 0.65, 0.64, 0.63]),
      _run(2, [0.6, 0.8, 0.9, 0.9], [0.55, 0.66, 0.6, 0.6]),
      _run(3, [0.65, 0.8, 0.95, 0.97], [0.58, 0.62, 0.66, 0.65])]),
]


def test_each_variant_is_its_mean_curve_with_a_one_sd_band_and_the_table_below():
    table = knob_table("batch_norm", RESULTS, "val_accuracy", "maximize")
    fig = ablation_figure(figure_series(RESULTS), header=table.header(), cells=table.cells(),
                          note="\n".join(table.statement_lines()),
                          title="tiny: batch_norm around trial 0 (seeds 1, 2, 3)")
    accuracy = next(ax for ax in fig.axes if ax.get_ylabel() == "accuracy")
    lines = {line.get_label(): line for line in accuracy.get_lines()}
    bands = [c for c in accuracy.collections if isinstance(c, PolyCollection)]
    assert len(lines) == len(bands) == 4  # 2 variants x (train, validation)
    for variant, runs in RESULTS:
        for key, style, suffix in (("accuracy", "-", "train"), ("val_accuracy", "--",
                                                                 "validation")):
            values = np.array([r.history[key] for r in runs])
            mean, sd = values.mean(axis=0), values.std(axis=0)  # population sd, as curve_band
            line = lines[f"{variant.label} (3 seeds), {suffix}"]
            assert line.get_linestyle() == style
            assert list(line.get_xdata()) == [1, 2, 3, 4]  # epochs from 1
            assert np.allclose(line.get_ydata(), mean)
            assert (line.get_color() == "black") == variant.is_base
            # a band in the curve's colour along mean - sd and mean + sd
            assert any(np.allclose(b.get_facecolor()[0][:3], to_rgb(line.get_color()))
                       and _spans(b, mean - sd, mean + sd) for b in bands), (variant, key)
    assert_readable(fig, must_contain=["batch_norm=True (3 seeds), validation",
                                       table.statement_lines()[0], "mean +-1 sd over seeds"])
    # the table underneath: the knob table's header and cells, inside the figure, clear of
    # the stated effects (matplotlib keeps a table's texts out of findobj)
    (drawn,) = [t for ax in fig.axes for t in ax.tables]
    cells = drawn.get_celld()
    shown = [[cells[r, c].get_text().get_text() for c in range(len(table.header()))]
             for r in range(len(table.rows) + 1)]
    assert shown[0] == table.header()
    assert shown[2][:3] == ["batch_norm=True", "3", f"{table.rows[1].best:.4f}"]
    assert shown[2][8] == f"{table.rows[1].effect:.4f}" and shown[1][8] == ""
    renderer = fig.canvas.get_renderer()
    box = drawn.get_window_extent(renderer)
    note = next(t for t in fig.findobj(Text) if t.get_text().startswith("batch_norm=True: "))
    assert box.y0 > note.get_window_extent(renderer).y1
    assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and box.y0 >= fig.bbox.y0


def _spans(band, low, high) -> bool:
    """The band's polygon runs along ``low`` and ``high`` at epochs 1..n."""
    vertices = np.concatenate([p.vertices for p in band.get_paths()])
    epochs = np.arange(1, len(low) + 1)
    for e, lo, hi in zip(epochs, low, high, strict=True):
        ys = vertices[np.isclose(vertices[:, 0], e), 1]
        if not (np.isclose(ys, lo).any() and np.isclose(ys, hi).any()):
            return False
    return True
