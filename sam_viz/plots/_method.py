"""A method's own diagnostics and its cost: per-layer series as small multiples, and a final metric against the
gradient evaluations it took to get there."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._common import axis, base_layout, default_labels, fmt, join_names, readable_layout, style
from ._series import _EXTRA, _check_runs

MAX_PANELS = 6  # runs drawn side by side in a small-multiples chart; more would make each panel unreadable


def layer_series_figure(runs: Sequence[Any], name: str, *, labels: Sequence[str] | None = None,
                        title: str | None = None, y_title: str | None = None, log_y: bool = True) -> go.Figure:
    """Small multiples of a method's 2-D series ``run.extra[name]`` (n, L): one panel per run that records it,
    one line per column (a layer, labelled by ``run.extra_labels[name]``), the same colours in every panel.

    Args:
        runs: the runs; those without the series are named in a note.
        name: the ``Run.extra`` key (e.g. μP²'s ``layer_eps_ratio``).
        labels: one label per run (default ``run_label``).
        title, y_title: the figure and y-axis titles.
        log_y: log y-axis (per-layer ratios span decades across widths).

    Raises:
        ValueError: no runs, labels that do not match, or a series that is not (n, L) with n = the run's steps.
    """
    runs = _check_runs(runs)
    names = default_labels(runs, labels)
    having = [(label, run) for label, run in zip(names, runs) if name in getattr(run, "extra", {})]
    missing = [label for label, run in zip(names, runs) if name not in getattr(run, "extra", {})]
    shown = having[:MAX_PANELS]
    cols = max(1, len(shown))
    grid = make_subplots(rows=1, cols=cols, shared_yaxes=True, horizontal_spacing=0.04,
                         subplot_titles=[label for label, _ in shown] or [""])
    data: list[Any] = []
    finals = []
    for k, (label, run) in enumerate(shown):
        values = np.asarray(run.extra[name], dtype=np.float64)
        steps = np.asarray(run.step)
        if values.ndim != 2 or values.shape[0] != steps.shape[0]:
            raise ValueError(f"Invalid series {name!r} of run {label!r}: expected (n, L) with n = {steps.shape[0]}, "
                             f"got {values.shape}")
        columns = run.extra_labels.get(name, tuple(f"column {c}" for c in range(values.shape[1])))
        axes = {} if k == 0 else dict(xaxis=f"x{k + 1}", yaxis=f"y{k + 1}")
        for c, column in enumerate(columns):
            s = style(c)
            data.append(go.Scatter(
                x=steps, y=values[:, c], mode="lines", name=str(column), legendgroup=str(column), showlegend=k == 0,
                connectgaps=True, line=dict(color=s.color, dash=s.dash, width=2),
                hovertemplate=f"<b>{label}</b><br>{column}<br>step %{{x}}<br>%{{y:.4~g}}" + _EXTRA,
                meta={"key": f"{label} {column}", "x": "step", "y": name}, **axes))
        last = values[np.isfinite(values).all(1)]
        if last.size:
            finals.append(f"{label}: " + ", ".join(f"{col} {fmt(v)}" for col, v in zip(columns, last[-1])))
    layout = grid.layout
    layout.update(base_layout(title=title or name.replace("_", " "), uirevision=f"layers:{name}", alt="",
                              subplot_titles=True))
    for k in range(cols):
        suffix = "" if k == 0 else str(k + 1)
        layout[f"xaxis{suffix}"].update(axis("training step t"))
        if log_y:
            layout[f"yaxis{suffix}"].type = "log"
    layout.yaxis.title = dict(text=y_title or name.replace("_", " "))
    readable_layout(layout)
    notes = []
    if missing:
        notes.append(f"not recorded by {join_names(missing)}")
    if len(having) > MAX_PANELS:
        notes.append(f"{len(having) - MAX_PANELS} more run(s) not drawn")
    if notes:
        layout.annotations = tuple(layout.annotations) + (dict(
            text="; ".join(notes).capitalize(), xref="paper", yref="paper", x=0.0, y=0.0, yshift=-78,
            xanchor="left", yanchor="top", showarrow=False),)
        layout.margin.b = 112
    layout.meta = {"alt": (f"Small multiples of {y_title or name} per layer over training, one panel per run "
                           f"({join_names(label for label, _ in shown) or 'none'})"
                           + (f"; last values {'; '.join(finals)}" if finals else "")
                           + (f"; {'; '.join(notes)}" if notes else "") + ".")}
    return go.Figure(data=data, layout=layout)


def cost_figure(points: Sequence[tuple[str, Any, Any]], *, metric_title: str, title: str | None = None,
                higher_is_better: bool = True) -> go.Figure:
    """A final metric against the gradient evaluations that produced it, one marker series per optimizer: the
    cost axis of the radius-sensitivity view (every grid cell is a point) and of the method comparisons.

    Args:
        points: ``(label, total_grad_evals, metric)`` per optimizer, two equally long arrays (any shape; NaN
            entries, such as diverged cells, are left out and counted in the legend).
        metric_title: the y-axis title.
        title: figure title.
        higher_is_better: for the alt text's "best" point.

    Raises:
        ValueError: no points, or arrays of different shapes.
    """
    if not points:
        raise ValueError("Invalid points: at least one optimizer is needed")
    data = []
    best = []
    for i, (label, cost, value) in enumerate(points):
        cost, value = np.asarray(cost, dtype=np.float64).reshape(-1), np.asarray(value, dtype=np.float64).reshape(-1)
        if cost.shape != value.shape:
            raise ValueError(f"Invalid points of {label!r}: {cost.shape[0]} costs and {value.shape[0]} values")
        ok = np.isfinite(cost) & np.isfinite(value)
        s = style(i)
        dropped = int((~ok).sum())
        legend = label + (f" ({dropped} not finite)" if dropped else "")
        data.append(go.Scatter(x=cost[ok], y=value[ok], mode="markers", name=legend,
                               marker=dict(symbol=s.symbol, size=10, color=s.color, line=dict(width=1, color="white")),
                               hovertemplate=f"<b>{label}</b><br>gradient evaluations %{{x:.4~g}}<br>"
                                             f"{metric_title} %{{y:.4~g}}" + _EXTRA,
                               meta={"key": label, "x": "total_grad_evals", "y": metric_title}))
        if ok.any():
            k = int(np.argmax(value[ok]) if higher_is_better else np.argmin(value[ok]))
            best.append(f"{label} best {fmt(value[ok][k])} at {fmt(cost[ok][k])} evaluations")
    alt = (f"Scatter of {metric_title} against total gradient evaluations (in batches) for "
           f"{join_names(p[0] for p in points)}" + (f"; {'; '.join(best)}" if best else "") + ".")
    layout = base_layout(title=title or f"{metric_title} against its cost", uirevision="cost", alt=alt,
                         xaxis=axis("gradient evaluations in training (in batches)", type="log"),
                         yaxis=axis(metric_title))
    return go.Figure(data=data, layout=layout)
