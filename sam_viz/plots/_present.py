"""Presenter mode for figures: every font of a figure raised to what reads on a projector from the back row."""

from __future__ import annotations

import re
from typing import Any

from ._common import FONT_SIZE

PRESENTER_SCALE = 1.5  # 14 px ticks → 21 px, 18 px titles → 27 px
_DEFAULT_HEIGHT = 450  # plotly's, which Streamlit keeps for a figure that sets none
_MARGIN_SCALE = 1.25  # room for the larger title, legend and axis titles (the plot itself stays large)
_TRACE_FONT_KEYS = ("textfont", "insidetextfont", "outsidetextfont", "colorbar", "legendgrouptitle")


def presenter_fonts(fig: Any, scale: float = PRESENTER_SCALE) -> Any:
    """``fig`` (changed in place and returned) with every font ``scale`` times larger: title, legend, hover labels,
    ticks and axis titles of every subplot and 3-D scene, annotations, buttons, sliders, colour bars and cell text.

    Sizes a figure does not set are taken as the body size (``FONT_SIZE``) first, so nothing is left at the
    theme's 12 px. Margins grow a little with the text and the 2-D axes take the room their labels need
    (``automargin``); the figure grows as its fonts do (from plotly's 450 px where it sets no height), so that
    buttons and sliders placed at fractions of the plot's height below it stay clear of the larger axis labels and
    a long y-axis title still fits beside the plot; a legend row above the plot moves up with the larger panel
    titles.

    Args:
        fig: a ``go.Figure``.
        scale: the factor (> 0); 1 leaves the sizes as they are.

    Returns:
        ``fig``.

    Raises:
        ValueError: ``scale`` ≤ 0.
    """
    if not (isinstance(scale, (int, float)) and scale > 0):
        raise ValueError(f"Invalid scale: {scale!r} (need > 0)")
    layout = {k: v for k, v in fig.layout.to_plotly_json().items() if k != "template"}
    layout.setdefault("font", {})
    _scale_fonts(layout, scale)
    margin = dict(layout.get("margin") or {})
    for side, default in (("l", 80), ("t", 100), ("b", 80)):
        margin[side] = round(margin.get(side, default) * _MARGIN_SCALE)
    layout["margin"] = margin
    legend = dict(layout.get("legend") or {})
    if legend.get("orientation") == "h" and legend.get("yanchor") == "bottom" and (legend.get("y") or 0) > 1:
        # a legend row above the plot (and above panel titles) sits a font-sized gap higher: the larger panel
        # titles and a wrapped second legend row would overlap otherwise
        legend["y"] = 1 + (legend["y"] - 1) * scale * scale
        layout["legend"] = legend
    # buttons and sliders sit at fractions of the plot's height below it, and a long y-axis title needs the plot's
    # height: the figure grows with its fonts (from plotly's 450 px where it sets none)
    layout["height"] = round((layout.get("height") or _DEFAULT_HEIGHT) * scale)  # as tall as its text grew
    for name in list(layout):  # the larger tick labels and axis titles push the margins out rather than being cut
        if re.fullmatch(r"[xy]axis\d*", name) and isinstance(layout[name], dict):
            layout[name]["automargin"] = True
    fig.update_layout(layout)
    for trace in fig.data:
        spec = trace.to_plotly_json()
        changes = {k: spec[k] for k in _TRACE_FONT_KEYS if isinstance(spec.get(k), dict)}
        if changes:
            _scale_fonts(changes, scale, set_missing=False)
            trace.update(changes)
    return fig


def _scale_fonts(node: Any, scale: float, *, set_missing: bool = True) -> None:
    """Scale, in place, the ``size`` of every font dict (a key ending in "font") under ``node``."""
    if isinstance(node, list):
        for item in node:
            _scale_fonts(item, scale, set_missing=set_missing)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key.endswith("font") and isinstance(value, dict):
            size = value.get("size")
            if isinstance(size, (list, tuple)):  # per-point sizes (cell text)
                value["size"] = [round(v * scale, 1) for v in size]
            elif size is not None or set_missing:
                value["size"] = round((size if size is not None else FONT_SIZE) * scale, 1)
        else:
            _scale_fonts(value, scale, set_missing=set_missing)
