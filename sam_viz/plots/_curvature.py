"""Curvature views: λ_max or the Hessian trace over training, and the Hessian spectrum at one point."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._common import (
    as_1d,
    axis,
    base_layout,
    check_same_length,
    doc,
    finite_range,
    fmt,
    join_names,
    last_finite,
    readable_layout,
    style,
    subscript,
)

if TYPE_CHECKING:  # hessian imports torch
    from ..hessian import Density, EigenResult, TraceResult

_EXTRA = "<extra></extra>"

# metric → (axis title, what the error bars are)
CURVATURE_METRICS: dict[str, tuple[str, str]] = {
    "λ_max": ("λ_max (largest Hessian eigenvalue)", "Ritz residual ‖Hq − λq‖"),
    "trace": ("tr H (Hessian trace)", "standard error of the estimate"),
}
_ALIASES = {"lambda_max": "λ_max", "lmax": "λ_max", "tr": "trace", "hessian_trace": "trace"}


def hessian_series(results: Sequence[EigenResult | TraceResult]) -> tuple[np.ndarray, np.ndarray]:
    """Values and error bars of a sequence of Hessian results (one per checkpoint).

    ``EigenResult`` gives (eigenvalues[0], residuals[0]), the top eigenvalue and its Ritz residual;
    ``TraceResult`` gives (estimate, stderr).

    Returns:
        (values, errors), two (n,) float arrays for ``curvature_figure``.

    Raises:
        ValueError: an element that is neither.
    """
    values, errors = [], []
    for r in results:
        if hasattr(r, "eigenvalues"):
            ev, res = np.asarray(r.eigenvalues, dtype=np.float64), np.asarray(r.residuals, dtype=np.float64)
            values.append(ev[0] if ev.size else np.nan)
            errors.append(res[0] if res.size else np.nan)
        elif hasattr(r, "estimate"):
            values.append(float(r.estimate))
            errors.append(float(r.stderr))
        else:
            raise ValueError(f"Invalid result: {type(r).__name__} is neither an EigenResult nor a TraceResult")
    return np.asarray(values, dtype=np.float64), np.asarray(errors, dtype=np.float64)


def _as_series(name: str, values: Any, count: int | None = None) -> list[np.ndarray]:
    """A sequence of 1-D arrays (a 2-D array counts as its rows)."""
    rows = list(values)
    if count is not None and len(rows) != count:
        raise ValueError(f"Invalid {name}: {len(rows)} series for {count} labels")
    return [as_1d(f"{name}[{i}]", r) for i, r in enumerate(rows)]


@doc
def curvature_figure(steps: Sequence[Any], values: Sequence[Any], *, labels: Sequence[str],
                     errors: Sequence[Any | None] | None = None, metric: str = "λ_max",
                     learning_rates: Sequence[float | None] | None = None, log_y: bool = False,
                     title: str | None = None, uirevision: str | None = None) -> go.Figure:
    """λ_max or tr H over training, one line per optimizer, with error bars.

    With ``learning_rates`` and ``metric="λ_max"``, a dotted line at 2/η per optimizer marks gradient descent's
    stability limit: full-batch GD drives λ_max up to about 2/η and hovers there ("edge of stability",
    Cohen et al., 2021); SAM-type methods tend to settle below it.

    Args:
        steps: one (n_i,) array of training steps per optimizer (or a 2-D array, one row each).
        values: one (n_i,) array of the metric per optimizer.
        labels: display names, one per optimizer.
        errors: per optimizer an (n_i,) array of error-bar half-widths (EigenResult residuals, TraceResult
            stderr; see ``hessian_series``) or None; None for no error bars at all.
        metric: "λ_max" or "trace" (aliases "lambda_max", "tr"); any other text is used as the axis title.
        learning_rates: per optimizer η (or None) for the 2/η reference lines.
        log_y: log y-axis.
        {title}
        {uirevision}

    Returns:
        {returns}

    Raises:
        ValueError: counts of steps/values/errors/learning rates that differ from the labels, or arrays of
            different lengths within one optimizer.
    """
    labels = [str(x) for x in labels]
    if not labels:
        raise ValueError("Invalid labels: at least one series is needed")
    xs, ys = _as_series("steps", steps, len(labels)), _as_series("values", values, len(labels))
    errs: list[np.ndarray | None] = [None] * len(labels)
    if errors is not None:
        rows = list(errors)
        if len(rows) != len(labels):
            raise ValueError(f"Invalid errors: {len(rows)} series for {len(labels)} labels")
        errs = [None if e is None else as_1d(f"errors[{i}]", e) for i, e in enumerate(rows)]
    lrs = [None] * len(labels) if learning_rates is None else list(learning_rates)
    if len(lrs) != len(labels):
        raise ValueError(f"Invalid learning_rates: {len(lrs)} values for {len(labels)} labels")
    for name, x, y, e in zip(labels, xs, ys, errs):
        check_same_length(f"series {name!r}", steps=x, values=y, errors=e)
    key = _ALIASES.get(metric, metric)
    y_title, err_meaning = CURVATURE_METRICS.get(key, (metric, "error"))

    data: list[Any] = []
    for i, (name, x, y, e) in enumerate(zip(labels, xs, ys, errs)):
        s = style(i)
        err = {} if e is None else dict(error_y=dict(type="data", array=e, visible=True, color=s.color,
                                                     thickness=1.2, width=4))
        hover = f"<b>{name}</b><br>step %{{x}}<br>{y_title} %{{y:.4~g}}"
        if e is not None:
            err["customdata"] = e[:, None]
            hover += f"<br>± %{{customdata[0]:.2~g}} ({err_meaning})"
        data.append(go.Scatter(x=x, y=y, mode="lines+markers", name=name, legendgroup=f"s{i}", connectgaps=True,
                               line=dict(color=s.color, dash=s.dash, width=2),
                               marker=dict(symbol=s.symbol, size=7, color=s.color), hovertemplate=hover + _EXTRA,
                               meta={"key": name, "x": "step", "y": key, "error": f"{key}_error"}, **err))
    x_range = finite_range(*xs) or (0.0, 1.0)
    for i, (name, lr) in enumerate(zip(labels, lrs)):
        if lr is None or key != "λ_max":
            continue
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"Invalid learning_rates[{i}]: {lr!r} (need > 0 or None)")
        limit = 2.0 / float(lr)
        data.append(go.Scatter(x=list(x_range), y=[limit, limit], mode="lines", name=f"2/η = {fmt(limit)} ({name})",
                               legendgroup=f"s{i}", line=dict(color=style(i).color, dash="dot", width=1.5),
                               hovertemplate=f"GD stability limit 2/η = {fmt(limit)} for {name}" + _EXTRA,
                               meta={"key": f"{name} 2/lr", "x": "step", "y": "two_over_lr"}))
    last = []
    for name, y in zip(labels, ys):
        found = last_finite(y)
        last.append(f"{name} {fmt(found[1])}" if found else f"{name} (none)")
    alt = f"Line chart of {y_title} over training steps for {join_names(labels)}; last values {join_names(last)}."
    layout = base_layout(title=title or f"{y_title.split(' (')[0]} during training", alt=alt,
                         uirevision=uirevision or f"curvature:{key}",
                         xaxis=axis("training step t"), yaxis=axis(y_title, type="log" if log_y else "linear"))
    return go.Figure(data=data, layout=layout)


def _eigen_items(eigen: Any) -> list[Any]:
    """One EigenResult or array → [it]; a sequence of them → list."""
    if hasattr(eigen, "eigenvalues") or isinstance(eigen, np.ndarray):
        return [eigen]
    items = list(eigen)
    if items and all(isinstance(v, (int, float, np.number)) for v in items):
        return [np.asarray(items, dtype=np.float64)]
    return items


def _eigen_arrays(item: Any, i: int) -> dict[str, np.ndarray]:
    if hasattr(item, "eigenvalues"):
        out = {"values": as_1d(f"eigen[{i}].eigenvalues", item.eigenvalues),
               "residuals": as_1d(f"eigen[{i}].residuals", item.residuals),
               "converged": np.asarray(item.converged, dtype=bool).reshape(-1),
               "small": as_1d(f"eigen[{i}].smallest", getattr(item, "smallest", []), allow_empty=True),
               "small_res": as_1d(f"eigen[{i}].smallest_residuals", getattr(item, "smallest_residuals", []),
                                  allow_empty=True),
               "small_conv": np.asarray(getattr(item, "smallest_converged", []), dtype=bool).reshape(-1)}
        check_same_length(f"eigen[{i}]", eigenvalues=out["values"], residuals=out["residuals"],
                          converged=out["converged"])
        check_same_length(f"eigen[{i}] smallest", smallest=out["small"], residuals=out["small_res"],
                          converged=out["small_conv"])
        return out
    values = as_1d(f"eigen[{i}]", item)
    empty = np.empty(0)
    return {"values": values, "residuals": np.full(values.size, np.nan), "converged": np.ones(values.size, bool),
            "small": empty, "small_res": empty, "small_conv": np.empty(0, bool)}


def _is_pair(value: Any) -> bool:
    """Whether ``value`` is one (grid, density) pair rather than a sequence of densities: a tuple of two numeric
    1-D arrays (a tuple of two ``Density`` objects or two pairs is two densities)."""
    if not isinstance(value, tuple) or len(value) != 2:
        return False
    return all(not hasattr(v, "grid") and v is not None and np.asarray(v, dtype=object).ndim == 1
               and all(isinstance(e, (int, float, np.number)) for e in np.asarray(v, dtype=object)) for v in value)


def _density_items(density: Any, n: int) -> list[tuple[np.ndarray, np.ndarray] | None]:
    if density is None:
        return [None] * n
    items = [density] if hasattr(density, "grid") or _is_pair(density) else list(density)
    if len(items) != n:
        raise ValueError(f"Invalid density: {len(items)} densities for {n} spectra")
    out: list[tuple[np.ndarray, np.ndarray] | None] = []
    for i, d in enumerate(items):
        if d is None:
            out.append(None)
            continue
        grid, dens = (d.grid, d.density) if hasattr(d, "grid") else d
        grid, dens = as_1d(f"density[{i}].grid", grid), as_1d(f"density[{i}].density", dens)
        check_same_length(f"density[{i}]", grid=grid, density=dens)
        out.append((grid, dens))
    return out


def _rank_labels(k: int, s: int) -> list[str]:
    top = [f"λ{subscript(j + 1)}" for j in range(k)]
    bottom = [f"λmin{'' if j == 0 else '+' + str(j)}" for j in range(s)]
    return top + bottom[::-1]


@doc
def spectrum_figure(eigen: EigenResult | np.ndarray | Sequence[Any], density: Density | Sequence[Any] | None = None,
                    *, labels: Sequence[str] | None = None, title: str | None = None,
                    uirevision: str | None = None) -> go.Figure:
    """The Hessian's extreme eigenvalues (with Ritz-residual error bars) and, when given, its spectral density.

    Left: λ₁ ≥ λ₂ ≥ … (and the smallest, when computed) per spectrum; filled markers are converged, open markers
    are not (their residual exceeded the tolerance). Right: the SLQ density on a log y-axis (the bulk near 0 and
    the few outliers that set λ_max differ by orders of magnitude).

    Args:
        eigen: an ``EigenResult``, a 1-D array of eigenvalues, or a sequence of either (one per optimizer).
        density: a ``Density`` (or a (grid, density) pair), or one per spectrum (None entries allowed).
        labels: one name per spectrum; default "spectrum 1", … ("Hessian" for one).
        {title}
        {uirevision}

    Returns:
        {returns}

    Raises:
        ValueError: no spectrum, labels or densities that do not match the spectra, or malformed arrays.
    """
    items = _eigen_items(eigen)
    if not items:
        raise ValueError("Invalid eigen: at least one spectrum is needed")
    spectra = [_eigen_arrays(item, i) for i, item in enumerate(items)]
    if labels is None:
        labels = ["Hessian"] if len(items) == 1 else [f"spectrum {i + 1}" for i in range(len(items))]
    labels = [str(x) for x in labels]
    if len(labels) != len(items):
        raise ValueError(f"Invalid labels: {len(labels)} labels for {len(items)} spectra")
    densities = _density_items(density, len(items))
    has_density = any(d is not None for d in densities)

    k_max = max(sp["values"].size for sp in spectra)
    s_max = max(sp["small"].size for sp in spectra)
    order = _rank_labels(k_max, s_max)
    cols = 2 if has_density else 1
    grid = make_subplots(rows=1, cols=cols, column_widths=[0.45, 0.55] if cols == 2 else None,
                         subplot_titles=("extreme eigenvalues", "spectral density (SLQ)")[:cols],
                         horizontal_spacing=0.12)
    data: list[Any] = []
    for i, (name, sp) in enumerate(zip(labels, spectra)):
        s = style(i)
        k, m = sp["values"].size, sp["small"].size
        x = _rank_labels(k, 0) + _rank_labels(0, m)
        vals = np.concatenate([sp["values"], sp["small"][::-1]])
        res = np.concatenate([sp["residuals"], sp["small_res"][::-1]])
        conv = np.concatenate([sp["converged"], sp["small_conv"][::-1]])
        symbols = [s.symbol if c else f"{s.symbol}-open" for c in conv]
        status = np.where(conv, "converged", "NOT converged")
        err = dict(error_y=dict(type="data", array=res, visible=True, color=s.color)) if np.isfinite(res).any() else {}
        data.append(go.Scatter(x=x, y=vals, mode="markers", name=name, legendgroup=f"s{i}",
                               marker=dict(symbol=symbols, size=10, color=s.color, line=dict(width=1.5)),
                               customdata=[[f"residual {fmt(r, 2)} ({st})" if np.isfinite(r) else "no residual given"]
                                           for r, st in zip(res, status)],
                               hovertemplate=f"<b>{name}</b><br>%{{x}} = %{{y:.5~g}}<br>%{{customdata[0]}}" + _EXTRA,
                               meta={"key": f"{name} eigenvalues", "x": "rank", "y": "eigenvalue",
                                     "error": "residual", "customdata": ["status"]}, **err))
    n_dens, shown = sum(d is not None for d in densities), 0
    for i, (name, d) in enumerate(zip(labels, densities)):
        if d is None:
            continue
        s = style(i)
        g, dens = d
        positive = dens[np.isfinite(dens) & (dens > 0)]
        floor = positive.max() * 1e-8 if positive.size else 1e-12  # log axis: zeros would vanish, not drop to 0
        # Every run's density in its own colour, dash and width (earlier ones wider, so equal curves both show).
        width = 2.0 + 1.5 * (n_dens - 1 - shown)
        shown += 1
        data.append(go.Scatter(x=g, y=np.maximum(dens, floor), mode="lines", name=f"{name} density",
                               legendgroup=f"s{i}", showlegend=n_dens > 1,
                               line=dict(color=s.color, dash=s.dash, width=width),
                               xaxis="x2", yaxis="y2",
                               hovertemplate=f"<b>{name}</b><br>λ %{{x:.4~g}}<br>density %{{y:.3~g}}" + _EXTRA,
                               meta={"key": f"{name} density", "x": "eigenvalue", "y": "density"}))
    layout = grid.layout
    tops = [f"{n} λ₁ = {fmt(sp['values'][0])}" for n, sp in zip(labels, spectra)]
    alt = (f"Dot plot of the {k_max} largest Hessian eigenvalues" + (f" and {s_max} smallest" if s_max else "")
           + f" for {join_names(labels)} ({join_names(tops)})"
           + ("; line chart of the spectral density on a log scale" if has_density else "") + ".")
    layout.update(base_layout(title=title or "Hessian spectrum", uirevision=uirevision or "spectrum", alt=alt,
                              subplot_titles=True))
    layout.xaxis.update(title=dict(text="eigenvalue rank (λ₁ largest)"), type="category",
                        categoryorder="array", categoryarray=order)
    layout.yaxis.update(title=dict(text="eigenvalue λ of the Hessian"))
    if has_density:
        layout.xaxis2.update(title=dict(text="eigenvalue λ"))
        layout.yaxis2.update(title=dict(text="density (log scale)"), type="log")
    readable_layout(layout)
    return go.Figure(data=data, layout=layout)
