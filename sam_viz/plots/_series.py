"""Per-step training curves: any recorded metric per run, and F-SAM's split of the perturbation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._common import (
    FONT_SIZE,
    as_1d,
    axis,
    base_layout,
    check_same_length,
    default_labels,
    doc,
    fmt,
    join_names,
    last_finite,
    readable_layout,
    style,
)

if TYPE_CHECKING:  # records imports the config, which imports torch
    from ..records import Run

_EXTRA = "<extra></extra>"


@dataclass(frozen=True)
class MetricInfo:
    """How a per-step metric is shown.

    Attributes:
        title: axis title with units or meaning.
        description: one sentence: what the metric means (the app's ``help=`` text).
        log: whether a log y-axis is the default.
        compute: for derived metrics, a function of the run giving the (n,) series; None reads the attribute.
    """

    title: str
    description: str
    log: bool = False
    compute: Callable[[Any], np.ndarray] | None = None


METRICS: dict[str, MetricInfo] = {
    "batch_loss": MetricInfo("minibatch loss L_B(θ_t)", "The loss on the minibatch the step used, at θ_t.", True),
    "train_loss": MetricInfo("training loss L(θ_t)", "The loss on the whole training set at θ_t.", True),
    "train_acc": MetricInfo("training accuracy (fraction correct)",
                            "The share of training samples classified correctly at θ_t."),
    "test_loss": MetricInfo("test loss", "The loss on the held-out test set at θ_t: what generalisation is about.",
                            True),
    "test_acc": MetricInfo("test accuracy (fraction correct)",
                           "The share of held-out test samples classified correctly at θ_t."),
    "grad_norm": MetricInfo("‖∇L_B(θ_t)‖ (minibatch gradient norm)",
                            "The length of the minibatch gradient at θ_t, the direction SAM climbs along.", True),
    "perturbed_grad_norm": MetricInfo("‖∇L_B(θ_t + e_t)‖ (gradient norm at the probe)",
                                      "The length of the gradient at θ_t + e_t, which SAM-type methods descend "
                                      "with (equal to the plain gradient norm for one-pass methods).", True),
    "perturbed_loss": MetricInfo("minibatch loss at θ_t + e_t",
                                 "The loss at the probe point: SAM's estimate of the worst loss in the ρ-ball "
                                 "(missing for one-pass methods).", True),
    "sharpness_gap": MetricInfo("L_B(θ_t + e_t) − L_B(θ_t) (one-step sharpness)",
                                "How much the loss rises at the probe: a one-step estimate of ρ-sharpness, about "
                                "½ρ²λ_max near a minimum.", False,
                                compute=lambda run: np.asarray(run.perturbed_loss, dtype=np.float64)
                                - np.asarray(run.batch_loss, dtype=np.float64)),
    "eps_norm": MetricInfo("‖e_t‖ (perturbation length)",
                           "The length of the perturbation e_t: ρ for plain SAM, varying for adaptive variants, "
                           "0 for one-pass methods."),
    "effective_rho": MetricInfo("effective ρ (radius used)",
                                "The radius the step actually used, after adaptive scaling (e.g. ρ/√u_t for "
                                "LightSAM-I); 0 for one-pass methods."),
    "effective_lr": MetricInfo("effective η (step size used)",
                               "The step size the step actually used, after adaptive scaling (e.g. η/√v_t).",
                               True),
    "full_grad_norm": MetricInfo("‖∇L(θ_t)‖ (full-batch gradient norm)",
                                 "The length of the gradient of the whole training loss at θ_t.", True),
    "cos_eps_fullgrad": MetricInfo("cos(e_t, ∇L(θ_t))",
                                   "How well the perturbation points along the full-batch gradient: near 1 it "
                                   "probes the true loss's steepest rise, near 0 it is mostly minibatch noise "
                                   "(the F-SAM argument)."),
    "elapsed": MetricInfo("wall-clock time since the start (s)",
                          "Seconds of training after step t: two-pass methods cost about twice as much per step."),
}

_X_TITLES = {"step": "training step t", "elapsed": "wall-clock time (s)"}


def metric_title(metric: str) -> str:
    """Axis title of a metric name; ``final_*`` names (sweep results) read "final …"."""
    if metric in METRICS:
        return METRICS[metric].title
    if metric.startswith("final_") and metric[6:] in METRICS:
        return f"final {METRICS[metric[6:]].title}"
    return metric


def metric_series(run: Any, metric: str) -> np.ndarray:
    """The (n,) per-step series ``metric`` of ``run`` (derived metrics computed), as float64.

    Raises:
        ValueError: an unknown metric, or a series whose length differs from ``run.step``.
    """
    info = METRICS.get(metric)
    if info is None:
        raise ValueError(f"Unknown metric: {metric!r}; valid: {', '.join(METRICS)}")
    values = info.compute(run) if info.compute is not None else getattr(run, metric)
    arr = as_1d(metric, values, allow_empty=True)
    check_same_length(f"run series {metric!r}", step=np.asarray(run.step), **{metric: arr})
    return arr


def _check_runs(runs: Sequence[Any]) -> list[Any]:
    runs = list(runs)
    if not runs:
        raise ValueError("Invalid runs: at least one is needed")
    return runs


def _diverged_point(run: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, float, int] | None:
    """(x, y, step) of the "×": at the diverged step, at the last finite value before it (the loss there is NaN)."""
    if not bool(getattr(run, "diverged", False)):
        return None
    step = int(getattr(run, "diverged_step", -1))
    steps = np.asarray(run.step)
    idx = np.flatnonzero(steps == step)
    k = int(idx[0]) if idx.size else steps.size - 1
    if k < 0:
        return None
    before = last_finite(y[: k + 1])
    return float(x[k]), (before[1] if before else np.nan), step


@doc
def series_figure(runs: Sequence[Run], metric: str, *, labels: Sequence[str] | None = None, log_y: bool | None = None,
                  x: str = "step", title: str | None = None, uirevision: str | None = None) -> go.Figure:
    """One line per run of a per-step metric, with diverged runs marked.

    NaN entries (metrics evaluated every k steps) are bridged (``connectgaps``). A run that diverged gets an "×"
    at its diverged step, placed at its last finite value, and "diverged at step s" in its legend entry. A run
    that never recorded the metric (e.g. cos(e, ∇L) for SGD) is listed in the legend but hidden.

    Args:
        {runs}
        metric: a key of ``METRICS`` ("test_acc", "eps_norm", "effective_rho", "cos_eps_fullgrad", ...).
        {labels}
        log_y: log y-axis; None uses ``METRICS[metric].log``. Non-positive values are not drawn on a log axis.
        x: "step" or "elapsed" (wall-clock seconds: compares methods at equal compute).
        {title}
        {uirevision}

    Returns:
        {returns}

    Raises:
        ValueError: no runs, an unknown metric or ``x``, labels that do not match the runs, or per-step arrays of
            different lengths.
    """
    runs = _check_runs(runs)
    if x not in _X_TITLES:
        raise ValueError(f"Invalid x: {x!r}; valid: 'step', 'elapsed'")
    names = default_labels(runs, labels)
    info = METRICS.get(metric)
    if info is None:
        raise ValueError(f"Unknown metric: {metric!r}; valid: {', '.join(METRICS)}")
    log = info.log if log_y is None else bool(log_y)
    series = [metric_series(run, metric) for run in runs]
    if log_y is None and log and _has_non_positive(series):
        log = False  # the default log axis would hide non-positive values (e.g. analytic losses below 0)
    hover = f"<b>%{{fullData.name}}</b><br>{_X_TITLES[x]} %{{x:.4~g}}<br>{info.title} %{{y:.4~g}}" + _EXTRA

    data: list[Any] = []
    notes = []
    for i, (run, name, y) in enumerate(zip(runs, names, series)):
        s = style(i)
        xs = as_1d(x, getattr(run, x), allow_empty=True)
        check_same_length(f"run {name!r}", **{x: xs, metric: y})
        cross = _diverged_point(run, xs, y)
        recorded = bool(np.isfinite(y).any())
        legend = name if cross is None else f"{name} — diverged at step {cross[2]}"
        if not recorded:
            legend += " — not recorded"
        data.append(go.Scatter(x=xs, y=y, mode="lines", name=legend, legendgroup=f"run{i}", connectgaps=True,
                               line=dict(color=s.color, dash=s.dash, width=2),
                               visible=True if recorded else "legendonly", hovertemplate=hover,
                               meta={"key": name, "x": x, "y": metric}))
        if cross is not None:
            notes.append(f"{name} diverged at step {cross[2]}")
            data.append(go.Scatter(x=[cross[0]], y=[cross[1]], mode="markers+text", name=f"{name}: diverged",
                                   legendgroup=f"run{i}", showlegend=False, text=["diverged"],
                                   textposition="top center", textfont=dict(color=s.color),
                                   marker=dict(symbol="x", size=14, color=s.color, line=dict(width=1, color="white")),
                                   hovertemplate=f"<b>{name}</b><br>diverged at step {cross[2]}<br>"
                                                 f"last finite {metric} %{{y:.4~g}}" + _EXTRA,
                                   meta={"key": f"{name} diverged", "x": x, "y": f"last_finite_{metric}"}))
    finals = []
    for name, y in zip(names, series):
        lf = last_finite(y)
        finals.append(f"{name} {fmt(lf[1])}" if lf else f"{name} (none)")
    alt = (f"Line chart of {info.title} against {_X_TITLES[x]} for {len(runs)} run(s); last values: "
           f"{join_names(finals)}" + (f"; {join_names(notes)}" if notes else "") + ".")
    yaxis = axis(info.title, type="log" if log else "linear")
    flat = _flat_range(series, log)
    if flat is not None:
        yaxis["range"] = flat
    layout = base_layout(title=title or f"{info.title.split(' (')[0]} during training",
                         uirevision=uirevision or f"series:{metric}:{x}", alt=alt, hovermode="x unified",
                         xaxis=axis(_X_TITLES[x]), yaxis=yaxis)
    return go.Figure(data=data, layout=layout)


def _has_non_positive(series: Sequence[np.ndarray]) -> bool:
    values = np.concatenate([np.asarray(y, dtype=float) for y in series])
    return bool(np.any(values[np.isfinite(values)] <= 0))


def _flat_range(series: Sequence[np.ndarray], log: bool) -> list[float] | None:
    """A ±10% window around a series that is constant up to rounding (SAM's ‖e‖ = ρ in float32), so autorange
    does not blow 1e-8 round-off up to the full height of the chart."""
    values = np.concatenate([np.asarray(y, dtype=float) for y in series])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    lo, hi = float(values.min()), float(values.max())
    scale = max(abs(lo), abs(hi))
    if scale == 0 or hi - lo > 1e-5 * scale:
        return None
    if log:
        return [np.log10(scale) - 0.05, np.log10(scale) + 0.05] if lo > 0 else None
    return [lo - 0.1 * scale, hi + 0.1 * scale]


def fsam_parts(run: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """F-SAM's split of e_t at the steps where cos(e_t, ∇L) was measured.

    Returns:
        (steps, full, noise): full = ‖e_t‖·cos(e_t, ∇L(θ_t)) is the part along the full-batch gradient,
        noise = ‖e_t‖·sqrt(1 − cos²) the part orthogonal to it (minibatch noise); so full² + noise² = ‖e_t‖².
    """
    cos = metric_series(run, "cos_eps_fullgrad")
    eps = metric_series(run, "eps_norm")
    ok = np.isfinite(cos) & np.isfinite(eps)
    c = np.clip(cos[ok], -1.0, 1.0)
    return np.asarray(run.step)[ok], eps[ok] * c, eps[ok] * np.sqrt(1.0 - c * c)


@doc
def fsam_decomposition_figure(runs: Sequence[Run], *, labels: Sequence[str] | None = None, title: str | None = None,
                              uirevision: str | None = None) -> go.Figure:
    """How much of each perturbation follows the full-batch gradient and how much is minibatch noise.

    Top panel: ‖e_t‖·cos(e_t, ∇L), the full-gradient part. Bottom panel: ‖e_t‖·sqrt(1 − cos²), the noise part.
    F-SAM (Li et al., 2024) argues that the noise part dominates SAM's perturbation with small batches and
    removes it; this view shows whether that happens here. Runs without cos(e_t, ∇L) (one-pass methods) are
    listed in a note instead.

    Args:
        {runs}
        {labels}
        {title}
        {uirevision}

    Returns:
        {returns}

    Raises:
        ValueError: no runs, or labels that do not match the runs.
    """
    runs = _check_runs(runs)
    names = default_labels(runs, labels)
    grid = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                         subplot_titles=("along ∇L: ‖e‖·cos(e, ∇L)", "minibatch noise: ‖e‖·sin(e, ∇L)"))
    data: list[Any] = []
    missing = []
    parts = [fsam_parts(run) for run in runs]
    for i, (name, (steps, full, noise)) in enumerate(zip(names, parts)):
        if steps.size == 0:
            missing.append(name)
            continue
        s = style(i)
        for row, (part, values) in enumerate((("full-gradient part", full), ("noise part", noise)), start=1):
            axes = {} if row == 1 else dict(xaxis="x2", yaxis="y2")
            data.append(go.Scatter(x=steps, y=values, mode="lines+markers" if steps.size <= 60 else "lines",
                                   name=name, legendgroup=f"run{i}", showlegend=row == 1,
                                   line=dict(color=s.color, dash=s.dash, width=2),
                                   marker=dict(symbol=s.symbol, size=5, color=s.color),
                                   hovertemplate=f"<b>{name}</b><br>step %{{x}}<br>{part} %{{y:.4~g}}" + _EXTRA,
                                   meta={"key": f"{name} {part}", "x": "step",
                                         "y": "eps_along_fullgrad" if row == 1 else "eps_noise"}, **axes))
    layout = grid.layout
    layout.update(base_layout(title=title or "F-SAM decomposition of the perturbation e_t",
                              uirevision=uirevision or "fsam", alt="", subplot_titles=True))
    layout.xaxis2.title = dict(text="training step t")
    layout.yaxis.title = dict(text="‖e‖·cos (along ∇L)")
    layout.yaxis2.title = dict(text="‖e‖·sin (orthogonal)")
    # One y scale for both parts, from 0: their sizes are what the comparison is about.
    layout.yaxis.rangemode = "tozero"
    layout.yaxis2.update(rangemode="tozero", matches="y")
    readable_layout(layout)
    if missing:
        # Under the x-axis title (a note at y = -0.12 sat on the tick labels), with the bottom margin to hold it.
        layout.annotations = tuple(layout.annotations) + (dict(
            text=f"No cos(e, ∇L) recorded for {join_names(missing)} (one-pass methods)", xref="paper",
            yref="paper", x=0.0, y=0.0, yshift=-78, xanchor="left", yanchor="top", showarrow=False,
            font=dict(size=FONT_SIZE - 1)),)
        layout.margin.b = 112
    shown = [n for n in names if n not in missing]
    means = []
    for name, (_, full, noise) in zip(names, parts):
        if full.size:
            means.append(f"{name} mean along-gradient {fmt(full.mean())} vs noise {fmt(noise.mean())}")
    alt = ("Two stacked line charts splitting the perturbation length into its part along the full-batch gradient "
           f"and its orthogonal noise part over training, for {join_names(shown) or 'no run'}"
           + (f" ({'; '.join(means)})" if means else "") + ".")
    layout.meta = {"alt": alt}
    return go.Figure(data=data, layout=layout)
