"""The data behind a figure as tables (the app's CSV downloads) and a one-sentence alt text."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ._common import as_mapping


def _array(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    return np.asarray(value)


def _columns(meta: dict[str, Any], name: str, count: int) -> list[str]:
    given = list(meta.get(name) or [])
    return [given[k] if k < len(given) else f"{name}_{k}" for k in range(count)]


def _grid_frame(trace: Any, meta: dict[str, Any], z: np.ndarray) -> pd.DataFrame:
    """Long format of a 2-D trace: one row per cell, (x, y, z) plus any per-cell customdata."""
    ny, nx = z.shape
    x = _array(trace.x) if trace.x is not None else np.arange(nx)
    y = _array(trace.y) if trace.y is not None else np.arange(ny)
    jj, ii = np.meshgrid(np.arange(nx), np.arange(ny))
    cols: dict[str, Any] = {meta.get("x", "x"): x[jj.ravel()], meta.get("y", "y"): y[ii.ravel()],
                            meta.get("z", "z"): z.ravel()}
    custom = _array(getattr(trace, "customdata", None))
    if custom is not None and custom.ndim >= 2 and custom.shape[:2] == (ny, nx):
        custom = custom.reshape(ny * nx, -1)
        for k, col in enumerate(_columns(meta, "customdata", custom.shape[1])):
            cols.setdefault(col, custom[:, k])
    return pd.DataFrame(cols)


def _line_frame(trace: Any, meta: dict[str, Any]) -> pd.DataFrame | None:
    """One row per point: x, y (and z), error bars and customdata columns."""
    cols: dict[str, Any] = {}
    for axis_name in ("x", "y", "z"):
        values = _array(getattr(trace, axis_name, None))
        if values is not None and values.ndim == 1:
            cols[meta.get(axis_name, axis_name)] = values
    if not cols:
        return None
    n = max(len(v) for v in cols.values())
    error_y = getattr(trace, "error_y", None)
    err = _array(error_y.array) if error_y is not None and error_y.array is not None else None
    if err is not None and len(err) == n:
        cols[meta.get("error", "error")] = err
    custom = _array(getattr(trace, "customdata", None))
    if custom is not None and len(custom) == n:
        custom = custom.reshape(n, -1)
        for k, col in enumerate(_columns(meta, "customdata", custom.shape[1])):
            cols.setdefault(col, custom[:, k])
    if any(len(v) != n for v in cols.values()):
        return None
    return pd.DataFrame(cols)


def figure_to_csv_frames(fig: go.Figure) -> dict[str, pd.DataFrame]:
    """The data behind ``fig``: one table per trace, keyed by series name, ready for ``df.to_csv()``.

    Column names come from each trace's ``meta`` (e.g. "alpha", "beta", "loss", "step", "true_loss"); 2-D traces
    (contours, surfaces, heatmaps) are in long format, one row per cell. Helper traces that repeat other data
    (animation frames' moving parts, arrow segments, boundary lines) are left out: a playback figure exports
    each whole path once.

    Args:
        fig: a figure from this package (any Plotly figure works, with generic column names).

    Returns:
        Dict of name → ``pandas.DataFrame``, in trace order.
    """
    out: dict[str, pd.DataFrame] = {}
    for i, trace in enumerate(fig.data):
        meta = dict(as_mapping(trace.meta))
        if meta.get("export") is False:
            continue
        z = _array(getattr(trace, "z", None))
        frame = _grid_frame(trace, meta, z) if z is not None and z.ndim == 2 else _line_frame(trace, meta)
        if frame is None:
            continue
        key = str(meta.get("key") or trace.name or f"trace {i}")
        base, n = key, 2
        while key in out:
            key, n = f"{base} ({n})", n + 1
        out[key] = frame
    return out


def describe(fig: go.Figure) -> str:
    """One-sentence alt text for ``fig`` (``st.plotly_chart(fig, alt=describe(fig))``).

    Builders store a sentence naming the chart type, axes, series and their key values in ``layout.meta["alt"]``;
    other figures get a generic sentence from the title and trace types.
    """
    alt = as_mapping(fig.layout.meta).get("alt")
    if alt:
        return str(alt)
    title = fig.layout.title.text if fig.layout.title and fig.layout.title.text else "Figure"
    kinds = sorted({t.type for t in fig.data})
    names = [t.name for t in fig.data if t.name]
    return (f"{title}: a chart with {len(fig.data)} series ({', '.join(kinds) or 'empty'})"
            + (f": {', '.join(names[:6])}" if names else "") + ".")
