"""Click to set θ₀: an invisible grid of points over a 2-D map, the marker of the start, and the click read back.

Streamlit delivers no selection events for contour (or heatmap) traces, so the map gets a scatter layer of nearly
transparent markers on a regular grid: a click selects the nearest one, and ``picked_start`` turns Streamlit's
selection event into its coordinates. The layer is not data (``meta.export`` is False): CSV exports and alt text
leave it out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from ._common import fmt, selected_points

PICKER_KEY = "start picker"  # meta.key of the picker layer: what ``picked_start`` reads
PICKER_OPACITY = 0.01  # invisible, still hit by clicks and hover (opacity 0 would be left out by some renderers)
START_DECIMALS = 3  # a picked start is rounded to this many decimals: a short link that reproduces it exactly


def picker_points(xlim: Sequence[float], ylim: Sequence[float], *, n: int = 41, marker_px: float = 8.0) -> go.Scatter:
    """An ``n`` × ``n`` grid of clickable, invisible markers over the box ``xlim`` × ``ylim``.

    Args:
        xlim: (low, high) of the first coordinate (the map's x axis).
        ylim: (low, high) of the second coordinate.
        n: grid points per axis (≥ 2); the spacing is what a click snaps to.
        marker_px: marker size in pixels, well under the grid spacing on screen: plotly takes a point whose
            marker covers the cursor at distance 0, so overlapping markers would tie and the first (not the
            nearest) would win; a click between points goes to the nearest within plotly's 20 px hover distance.

    Returns:
        A ``go.Scatter`` whose points carry their own (x, y) as customdata, rounded to ``START_DECIMALS``.

    Raises:
        ValueError: a box that is not finite with low < high, or ``n`` < 2.
    """
    (x0, x1), (y0, y1) = (float(v) for v in xlim), (float(v) for v in ylim)
    if not all(np.isfinite([x0, x1, y0, y1])) or not (x0 < x1 and y0 < y1):
        raise ValueError(f"Invalid picker box: {xlim!r} × {ylim!r} (need finite low < high on both axes)")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"Invalid n: {n!r} (need an integer ≥ 2)")
    xs = np.round(np.linspace(x0, x1, n), START_DECIMALS)
    ys = np.round(np.linspace(y0, y1, n), START_DECIMALS)
    gx, gy = (a.ravel() for a in np.meshgrid(xs, ys))
    invisible = {"marker": {"opacity": PICKER_OPACITY}}
    return go.Scatter(x=gx, y=gy, mode="markers", name="click: start here", showlegend=False,
                      customdata=np.column_stack([gx, gy]),
                      marker={"symbol": "square", "size": marker_px, "color": "#000000", "opacity": PICKER_OPACITY,
                              "line": {"width": 0}},
                      selected=invisible, unselected=invisible,
                      hovertemplate="w₁ %{x:.3~f}, w₂ %{y:.3~f}<br><i>click: every run starts here</i><extra></extra>",
                      meta={"key": PICKER_KEY, "export": False})


def start_marker(x: float, y: float, *, picked: bool = False) -> go.Scatter:
    """The start point θ₀ of every run, as a large white cross outlined in black (clear on any colour of the map
    and in the legend).

    Args:
        x, y: θ₀.
        picked: θ₀ was set by a click (or a link) rather than being the task's default: said in the legend.
    """
    name = "θ₀ (clicked)" if picked else "θ₀ (click the map to move it)"
    return go.Scatter(x=[float(x)], y=[float(y)], mode="markers", name=name, showlegend=True,
                      marker={"symbol": "x", "size": 17, "color": "#FFFFFF", "line": {"width": 1.5, "color": "#000000"}},
                      hovertemplate=f"θ₀ = ({fmt(x, 4)}, {fmt(y, 4)})<extra></extra>",
                      meta={"key": "start", "x": "w1", "y": "w2"})


def picked_start(event: Any) -> tuple[float, float] | None:
    """The (w₁, w₂) of the picker point a Streamlit selection event holds, or None (no pick: another trace's
    point, an empty selection, no event).

    ``event`` is what ``st.plotly_chart(..., on_select=..., selection_mode="points")`` returns or keeps in
    ``st.session_state[key]``: ``{"selection": {"points": [{"customdata": [x, y], ...}]}}``. Only the picker's
    points carry two-number customdata under its ``meta.key``; the curve number is not used (it shifts with the
    traces a figure holds), so a point of a path, whose customdata has another length, is never taken for a pick.
    """
    for point, custom in selected_points(event):
        try:
            values = [float(v) for v in custom]
        except (TypeError, ValueError):
            continue
        if len(values) == 2 and all(np.isfinite(values)) and _on_grid(point, values):
            return round(values[0], START_DECIMALS), round(values[1], START_DECIMALS)
    return None


def _on_grid(point: dict, values: list[float]) -> bool:
    """The point is where its customdata says (a picker point's customdata is its position): True when x and y
    are missing, as in an event built by hand."""
    x, y = point.get("x"), point.get("y")
    if x is None or y is None:
        return True
    try:
        return abs(float(x) - values[0]) < 1e-9 and abs(float(y) - values[1]) < 1e-9
    except (TypeError, ValueError):
        return False
