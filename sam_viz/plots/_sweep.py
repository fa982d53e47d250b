"""Radius-sensitivity maps: one heatmap per optimizer over a hyperparameter grid, on one shared colour scale."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._common import (
    DIVERGED_COLOR,
    HEATMAP_TEXT_SIZE,
    as_1d,
    as_2d,
    base_layout,
    check_colorscale,
    doc,
    finite_range,
    fmt,
    join_names,
    param_title,
    selected_points,
    tick_labels,
)
from ._series import metric_title

_EXTRA = "<extra></extra>"
CUSTOMDATA_COLUMNS = ("i", "j", "panel", "x_value", "y_value", "std")
# The click layer: one nearly transparent marker per cell centre. Streamlit delivers no selections for heatmaps
# (streamlit #8760, #8933), only for scatter-type traces; its customdata adds the cell's value.
CLICK_COLUMNS = (*CUSTOMDATA_COLUMNS, "value")
CLICK_OPACITY = 0.01  # invisible, still hit by clicks and hover (opacity 0 would be left out by some renderers)


def _panels(panels: Sequence[Any], shape: tuple[int, int]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Validated (title, values, diverged) triples; a missing mask means nothing diverged."""
    out = []
    for k, panel in enumerate(panels):
        try:
            title, values, diverged = panel
        except (TypeError, ValueError):
            raise ValueError(f"Invalid panels[{k}]: expected (title, values, diverged)") from None
        values = as_2d(f"panels[{k}] values", values, shape)
        if diverged is None:
            mask = np.zeros(shape, dtype=bool)
        else:
            mask = np.asarray(diverged)
            if mask.shape != shape:
                raise ValueError(f"Invalid panels[{k}] diverged: expected shape {shape}, got {mask.shape}")
            mask = mask.astype(bool)
        out.append((str(title), values, mask))
    if not out:
        raise ValueError("Invalid panels: at least one is needed")
    return out


def shared_color_range(values: Sequence[np.ndarray], diverged: Sequence[np.ndarray]) -> tuple[float, float]:
    """(zmin, zmax) over the finite, non-diverged cells of all panels; (0, 1) when there are none."""
    rng = finite_range(*[np.where(m, np.nan, v) for v, m in zip(values, diverged)])
    if rng is None:
        return 0.0, 1.0
    lo, hi = rng
    if lo == hi:  # one value everywhere: give the scale some width
        pad = abs(lo) * 0.01 or 0.5
        return lo - pad, hi + pad
    return lo, hi


def _spreads(spreads: Sequence[Any] | None, n: int, shape: tuple[int, int]) -> list[np.ndarray]:
    """One (ny, nx) std array per panel; NaN (no spread shown) where none is given."""
    if spreads is None:
        return [np.full(shape, np.nan) for _ in range(n)]
    if len(spreads) != n:
        raise ValueError(f"Invalid spreads: expected {n} (one per panel), got {len(spreads)}")
    return [np.full(shape, np.nan) if s is None else as_2d(f"spreads[{k}]", s, shape) for k, s in enumerate(spreads)]


def sweep_selection(event: Any) -> tuple[int, int, int] | None:
    """The (panel, i, j) of the cell a Streamlit selection event points at, or None.

    ``event`` is what ``st.plotly_chart(sweep_heatmaps(...), on_select="rerun")`` returns:
    ``{"selection": {"points": [{"curve_number": …, "point_number": …, "customdata": [i, j, panel, …]}]}}``. The
    cell is read from the point's customdata (``CUSTOMDATA_COLUMNS``), never from the curve number: the figure
    holds several traces per panel (heatmap, diverged layer, click layer), so curve numbers are not panels.
    """
    for _, custom in selected_points(event):
        try:
            i, j, panel = (int(float(v)) for v in custom[:3])
        except (TypeError, ValueError):
            continue
        if min(i, j, panel) >= 0:
            return panel, i, j
    return None


@doc
def sweep_heatmaps(panels: Sequence[tuple[str, Any, Any]], *, x_name: str, y_name: str, x_values: Any, y_values: Any,
                   metric: str, zmin: float | None = None, zmax: float | None = None, colorscale: str = "Cividis",
                   title: str | None = None, uirevision: str | None = None, spreads: Sequence[Any] | None = None,
                   seeds: int = 1, best_per_column: bool = False) -> go.Figure:
    """Side-by-side heatmaps of a final metric over a hyperparameter grid, one per optimizer.

    All panels share one colour axis (``layout.coloraxis``), so equal colours mean equal values across
    optimizers. The axes are categorical with the real values as labels, so log-spaced grids (ρ = 0.01, 0.03,
    0.1 …) get evenly sized cells. Each cell prints its value; diverged cells are grey with an "×" and say
    "diverged" on hover (their value is not coloured). Every cell's ``customdata`` is (i, j, panel, x value,
    y value, std): row i of ``y_values``, column j of ``x_values``. Streamlit returns no selections for heatmaps,
    so each panel also has a click layer: a nearly transparent scatter marker at every cell centre with the same
    customdata (plus the value); ``sweep_selection`` turns a selection event into the (panel, i, j) clicked.

    Args:
        panels: (title, values, diverged) per optimizer: values (ny, nx) indexed [i_y, j_x] (e.g. a seed mean of
            the sweep's final metric), diverged an (ny, nx) bool mask or None.
        x_name, y_name: the swept settings ("rho", "lr", ...): axis titles come from them.
        x_values, y_values: (nx,) and (ny,) the values swept.
        metric: what the cells hold ("final_test_acc", ...), for the colour bar and hover.
        spreads: per panel an (ny, nx) std over seeds (or None), shown as "± std" on hover; None: no spread.
        seeds: seeds behind each cell's value (named on hover when > 1).
        best_per_column: ring the best cell of every column (highest accuracy, lowest loss or λ_max): with a width
            on the x axis, where the best radius or learning rate sits at each width (a transfer plot).
        zmin, zmax: colour range; None computes it over every panel's finite, non-diverged cells.
        {colorscale}
        {title}
        {uirevision}

    Returns:
        {returns}

    Raises:
        ValueError: no panels, shapes that do not match (ny, nx), zmin ≥ zmax, or an unsafe colour scale.
    """
    check_colorscale(colorscale)
    xv, yv = as_1d("x_values", x_values), as_1d("y_values", y_values)
    checked = _panels(panels, (yv.size, xv.size))
    stds = _spreads(spreads, len(checked), (yv.size, xv.size))
    lo, hi = shared_color_range([v for _, v, _ in checked], [m for _, _, m in checked])
    zmin = lo if zmin is None else float(zmin)
    zmax = hi if zmax is None else float(zmax)
    if not zmin < zmax:
        raise ValueError(f"Invalid colour range: zmin {zmin} must be below zmax {zmax}")
    x_labels, y_labels = tick_labels(xv), tick_labels(yv)
    x_title, y_title, z_title = param_title(x_name), param_title(y_name), metric_title(metric)

    n = len(checked)
    grid = make_subplots(rows=1, cols=n, shared_yaxes=True, horizontal_spacing=min(0.04, 0.2 / n),
                         subplot_titles=[wrap_title(t, max(18, 84 // n)) for t, _, _ in checked])
    jj, ii = np.meshgrid(np.arange(xv.size), np.arange(yv.size))
    data: list[Any] = []
    spread = f" ± %{{customdata[5]:.2~g}} (std over {seeds} seeds)" if seeds > 1 and spreads is not None else ""
    if seeds > 1 and spreads is None:
        spread = f" (mean of {seeds} seeds)"
    # the numbers stay readable from the back of a room: full size while a row of panels has room for them
    cell_text = HEATMAP_TEXT_SIZE if len(checked) * len(x_labels) <= 16 else HEATMAP_TEXT_SIZE - 3
    for k, (name, values, mask) in enumerate(checked):
        axes = {} if k == 0 else dict(xaxis=f"x{k + 1}", yaxis=f"y{k + 1}")
        custom = np.stack([ii, jj, np.full(ii.shape, k), xv[jj], yv[ii], stds[k]], axis=-1).astype(np.float64)
        shown = np.where(mask, np.nan, values)
        text = np.vectorize(fmt, otypes=[object])(shown)
        text[mask] = ""
        hover = (f"<b>{name}</b><br>{x_title} %{{customdata[3]:.4~g}}<br>{y_title} %{{customdata[4]:.4~g}}"
                 f"<br>{z_title} %{{z:.4~g}}{spread}<br>(row %{{customdata[0]}}, column %{{customdata[1]}})")
        data.append(go.Heatmap(
            x=x_labels, y=y_labels, z=shown, coloraxis="coloraxis", zmin=zmin, zmax=zmax, name=name,
            text=text, texttemplate="%{text}", textfont=dict(size=cell_text), customdata=custom, xgap=1, ygap=1,
            hoverongaps=False, hovertemplate=hover + _EXTRA,
            meta={"key": name, "x": x_name, "y": y_name, "z": metric, "customdata": list(CUSTOMDATA_COLUMNS)},
            **axes))
        if mask.any():
            # A second layer on the diverged cells only (Plotly heatmaps have no hatching): near-white with an "×".
            data.append(go.Heatmap(
                x=x_labels, y=y_labels, z=np.where(mask, 1.0, np.nan), name=f"{name}: diverged",
                colorscale=[[0.0, DIVERGED_COLOR], [1.0, DIVERGED_COLOR]], zmin=0.0, zmax=1.0, showscale=False,
                text=np.where(mask, "×", "").astype(object), texttemplate="%{text}",
                textfont=dict(size=16, color="#222222"), customdata=custom, xgap=1, ygap=1, hoverongaps=False,
                hovertemplate=(f"<b>{name}</b><br>{x_title} %{{customdata[3]:.4~g}}<br>{y_title} "
                               "%{customdata[4]:.4~g}<br>diverged (loss became NaN/∞)" + _EXTRA),
                meta={"key": f"{name} diverged", "x": x_name, "y": y_name, "z": "diverged",
                      "customdata": list(CUSTOMDATA_COLUMNS)},
                **axes))
        data.append(_click_layer(name, x_labels, y_labels, custom, shown, mask, hover, **axes))
        if best_per_column:
            data.append(_column_best_layer(name, x_labels, y_labels, shown, higher_is_better(metric), **axes))
    layout = grid.layout
    layout.clickmode = "event+select"
    bests = []
    for name, values, mask in checked:
        span = finite_range(np.where(mask, np.nan, values))
        bests.append(f"{name}: {int(mask.sum())} of {mask.size} diverged"
                     + (f", range {fmt(span[0])}–{fmt(span[1])}" if span else ""))
    alt = (f"{n} heatmap(s) of {z_title} over {x_title} × {y_title} ({xv.size}×{yv.size} cells) on one colour "
           f"scale from {fmt(zmin)} to {fmt(zmax)}; {join_names(bests)}.")
    layout.update(base_layout(title=title or f"{z_title} over {x_title} × {y_title}", alt=alt,
                              uirevision=uirevision or f"sweep:{x_name}:{y_name}:{metric}", subplot_titles=True,
                              coloraxis=dict(colorscale=colorscale, cmin=zmin, cmax=zmax,
                                             colorbar=dict(title=dict(text=z_title, side="right")))))
    layout.margin.b = 64
    for k in range(n):
        suffix = "" if k == 0 else str(k + 1)
        layout[f"xaxis{suffix}"].update(type="category", title=dict(text=x_title), tickangle=-45,
                                        categoryorder="array", categoryarray=x_labels)
        layout[f"yaxis{suffix}"].update(type="category", categoryorder="array", categoryarray=y_labels)
    layout.yaxis.title = dict(text=y_title)
    return go.Figure(data=data, layout=layout)


def wrap_title(title: str, width: int) -> str:
    """``title`` broken into lines of at most about ``width`` characters at spaces (panels side by side would
    otherwise write their titles over each other)."""
    lines, line = [], ""
    for word in title.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "<br>".join([*lines, line])


def higher_is_better(metric: str) -> bool:
    """Accuracies are best high; losses and curvatures low."""
    return "acc" in metric


def column_best_rows(values: np.ndarray, higher: bool) -> np.ndarray:
    """Per column, the row of the best finite value (−1 where a column has none), shape (nx,)."""
    filled = np.where(np.isfinite(values), values, -np.inf if higher else np.inf)
    rows = filled.argmax(axis=0) if higher else filled.argmin(axis=0)
    return np.where(np.isfinite(values).any(axis=0), rows, -1)


def _column_best_layer(name: str, x_labels: list[str], y_labels: list[str], shown: np.ndarray, higher: bool,
                       **axes: str) -> go.Scatter:
    """A ring on the best cell of every column, joined by a line: how the best row moves along the x axis."""
    rows = column_best_rows(shown, higher)
    keep = rows >= 0
    xs = np.asarray(x_labels, dtype=object)[keep]
    ys = np.asarray(y_labels, dtype=object)[rows[keep]]
    return go.Scatter(x=xs, y=ys, mode="lines+markers", name=f"{name}: best per column", showlegend=False,
                      marker={"symbol": "circle-open", "size": 40, "color": "#d62728", "line": {"width": 2}},
                      line={"color": "#d62728", "width": 2, "dash": "dot"}, hoverinfo="skip",
                      meta={"key": f"{name} best per column", "export": False, "rows": rows.tolist()}, **axes)


def _click_layer(name: str, x_labels: list[str], y_labels: list[str], custom: np.ndarray, shown: np.ndarray,
                 mask: np.ndarray, hover: str, **axes: str) -> go.Scatter:
    """Nearly transparent square markers at the cell centres: what a click selects (heatmaps deliver nothing)."""
    ny, nx = shown.shape
    jj, ii = np.meshgrid(np.arange(nx), np.arange(ny))
    click = np.concatenate([custom, shown[..., None]], axis=-1).reshape(ny * nx, -1)
    hover = hover.replace("%{z:.4~g}", "%{customdata[6]:.4~g}")
    texts = np.where(mask.ravel(), "<br>diverged (loss became NaN/∞)", "")
    invisible = {"marker": {"opacity": CLICK_OPACITY}}
    return go.Scatter(
        x=np.asarray(x_labels, dtype=object)[jj.ravel()], y=np.asarray(y_labels, dtype=object)[ii.ravel()],
        mode="markers", name=f"{name}: click a cell", showlegend=False, customdata=click, text=texts,
        marker={"symbol": "square", "size": 22, "color": "#000000", "opacity": CLICK_OPACITY, "line": {"width": 0}},
        selected=invisible, unselected=invisible,
        hovertemplate=hover + "%{text}<br><i>click to open this run</i>" + _EXTRA,
        meta={"key": f"{name} click", "export": False, "customdata": list(CLICK_COLUMNS)}, **axes)
