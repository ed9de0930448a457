"""Checks that a figure is readable: every drawn text inside the figure, none overlapping
another, every axis with tick labels named. Shared by the tests of figures."""

import io
import itertools

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text


def drawn_texts(fig):
    """(artist, window extent) of every visible, non-empty text that is drawn: titles, axis
    labels, legend entries, cell annotations, and tick labels of ticks inside the view."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    undrawn = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            span = (hi - lo) * 1e-9
            locs = set(np.round(axis.get_majorticklocs(), 12))
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                inside = lo - span <= tick.get_loc() <= hi + span
                if not inside or (tick in axis.get_major_ticks()
                                  and round(tick.get_loc(), 12) not in locs):
                    undrawn.update((id(tick.label1), id(tick.label2)))
    out = []
    for text in fig.findobj(Text):
        if id(text) in undrawn or not text.get_visible() or not text.get_text().strip():
            continue
        out.append((text, text.get_window_extent(renderer)))
    return out


def assert_readable(fig, must_contain=()):
    texts = drawn_texts(fig)
    everything = " | ".join(t.get_text() for t, _ in texts)
    for phrase in must_contain:
        assert phrase in everything, f"{phrase!r} not in the figure's text: {everything}"
    frame = fig.bbox
    for text, box in texts:
        assert (box.x0 >= frame.x0 - 1 and box.y0 >= frame.y0 - 1 and box.x1 <= frame.x1 + 1
                and box.y1 <= frame.y1 + 1), f"{text.get_text()!r} leaves the figure"
    for (a, box_a), (b, box_b) in itertools.combinations(texts, 2):
        overlap_x = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
        overlap_y = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
        assert overlap_x <= 1 or overlap_y <= 1, (
            f"{a.get_text()!r} overlaps {b.get_text()!r}")
    for ax in fig.axes + [child for parent in fig.axes for child in parent.child_axes]:
        if not ax.axison:  # ax.axis("off"): no ticks drawn (a panel holding a table)
            continue
        # an axis that shows tick labels has a name
        for labels, name, which in ((ax.get_xticklabels(), ax.get_xlabel(), "x"),
                                    (ax.get_yticklabels(), ax.get_ylabel(), "y")):
            if any(t.get_visible() and t.get_text() for t in labels):
                assert name, f"an {which} axis with tick labels but no name"
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n" and len(buffer.getvalue()) > 5000
