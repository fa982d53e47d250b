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
    "grad_calls": MetricInfo("backward passes per step",
                             "How many gradient evaluations the step made: 1 for SGD and Adam, 2 for SAM, more for "
                             "methods that also score samples or micro-batches."),
    "grad_evals": MetricInfo("gradient evaluations per step (in batches)",
                             "The samples that took part in the step's backward passes, in units of its batch: "
                             "2 for SAM, less where a method backpropagates only some samples (ESAM)."),
    "grad_samples": MetricInfo("samples in the step's backward passes",
                               "How many samples the step's gradient evaluations used, summed over its passes."),
    "perturbed_params": MetricInfo("parameter entries perturbed",
                                   "How many entries of θ the perturbation e_t moved: all of them for SAM, a share "
                                   "for sparse methods (SSAM, ESAM), none for one-pass methods."),
    "total_grad_evals": MetricInfo("gradient evaluations so far (in batches)",
                                   "The cost of training up to step t: the running sum of gradient evaluations, "
                                   "in units of the batch.", False,
                                   compute=lambda run: np.nancumsum(np.asarray(run.grad_evals, dtype=np.float64))),
}

_X_TITLES = {"step": "training step t", "elapsed": "wall-clock time (s)"}


EXTRA_PREFIX = "extra:"  # a method's own series: ``extra:mask_density`` reads ``run.extra["mask_density"]``


def metric_info(metric: str) -> MetricInfo | None:
    """How ``metric`` is shown: a ``METRICS`` entry, or for ``extra:<name>`` the method's own (n,) series (NaN
    for runs that do not record it); None for an unknown name."""
    if metric.startswith(EXTRA_PREFIX):
        name = metric[len(EXTRA_PREFIX):]

        def compute(run: Any) -> np.ndarray:
            values = getattr(run, "extra", {}).get(name)
            return np.full(np.asarray(run.step).shape, np.nan) if values is None else np.asarray(values, np.float64)

        return MetricInfo(name.replace("_", " "), f"The method's own per-step series {name!r}.", False, compute)
    return METRICS.get(metric)


def metric_title(metric: str) -> str:
    """Axis title of a metric name; ``final_*`` names (sweep results) read "final …"."""
    if metric.startswith(EXTRA_PREFIX):
        return metric_info(metric).title
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
    info = metric_info(metric)
    if info is None:
        raise ValueError(f"Unknown metric: {metric!r}; valid: {', '.join(METRICS)} or extra:<name>")
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


# Metrics whose level is quoted as an average (the presets say "about 0.7 on average"): a running mean by default.
RUNNING_MEAN_METRICS = frozenset({"cos_eps_fullgrad"})


def cumulative_mean(values: Any) -> np.ndarray:
    """Running mean: the mean of the finite entries up to each index (NaN entries skipped); NaN until the first
    finite entry.

    >>> cumulative_mean([1.0, np.nan, 3.0]).tolist()
    [1.0, 1.0, 2.0]
    """
    y = as_1d("values", values, allow_empty=True)
    ok = np.isfinite(y)
    count = np.cumsum(ok)
    total = np.cumsum(np.where(ok, y, 0.0))
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


@dataclass(frozen=True)
class _Line:
    """One label's curve: a run's series, or the mean over seeds with its spread."""

    x: np.ndarray
    y: np.ndarray
    std: np.ndarray | None        # over seeds (ddof=0), None for a single run
    seeds: np.ndarray | None      # finite seeds per point
    cross: tuple[float, float, int] | None
    diverged: str                 # legend note, "" when nothing diverged


def _seed_matrix(group: Sequence[Any], metric: str, x: str, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, x values, values) of a seed group aligned on the union of their steps: (n,), (n,), (seeds, n).

    Seeds may stop at different steps (a diverged seed ends early); missing entries are NaN.
    """
    per_seed = []
    for k, run in enumerate(group):
        y = metric_series(run, metric)
        xs = as_1d(x, getattr(run, x), allow_empty=True)
        check_same_length(f"run {name!r} seed {k}", **{x: xs, metric: y})
        per_seed.append((np.asarray(run.step), xs, y))
    steps = np.unique(np.concatenate([st for st, _, _ in per_seed]))
    values = np.full((len(group), steps.size), np.nan)
    xvals = np.full((len(group), steps.size), np.nan)
    for k, (st, xs, y) in enumerate(per_seed):
        pos = np.searchsorted(steps, st)
        values[k, pos] = y
        xvals[k, pos] = xs
    return steps, _nanmean(xvals), values


def _nanmean(m: np.ndarray) -> np.ndarray:
    """Column means over the finite entries, NaN for a column with none (no RuntimeWarning)."""
    ok = np.isfinite(m)
    n = ok.sum(axis=0)
    return np.where(n > 0, np.where(ok, m, 0.0).sum(axis=0) / np.maximum(n, 1), np.nan)


def _mean_std(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column mean, std (ddof = 0, as ``np.std``) and count over the finite entries of a (seeds, n) matrix."""
    ok = np.isfinite(m)
    n = ok.sum(axis=0)
    mean = _nanmean(m)
    dev = np.where(ok, m - mean[None, :], 0.0)
    return mean, np.where(n > 0, np.sqrt((dev**2).sum(axis=0) / np.maximum(n, 1)), np.nan), n


def _seed_line(group: Sequence[Any], metric: str, x: str, name: str) -> _Line:
    """The mean over ``group``'s seeds and its ±1 std (numpy's ``std``, ddof = 0), per step."""
    _, xs, values = _seed_matrix(group, metric, x, name)
    mean, std, n = _mean_std(values)
    div = [int(getattr(r, "diverged_step", -1)) for r in group if bool(getattr(r, "diverged", False))]
    note = f"{len(div)} of {len(group)} seeds diverged" if div else ""
    return _Line(xs, mean, std, n, None, note)


def _band_rgba(color: str, alpha: float) -> str:
    r, g, b = (int(color[k:k + 2], 16) for k in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


@doc
def series_figure(runs: Sequence[Run], metric: str, *, labels: Sequence[str] | None = None, log_y: bool | None = None,
                  x: str = "step", title: str | None = None, uirevision: str | None = None,
                  running_mean: bool | None = None, seed_runs: Sequence[Sequence[Run]] | None = None,
                  y_title: str | None = None) -> go.Figure:
    """One line per run of a per-step metric, with diverged runs marked; optionally seed means with ±1 std bands.

    NaN entries (metrics evaluated every k steps) are bridged (``connectgaps``). A run that diverged gets an "×"
    at its diverged step, placed at its last finite value, and "diverged at step s" in its legend entry. A run
    that never recorded the metric (e.g. cos(e, ∇L) for SGD) is listed in the legend but hidden.

    With ``running_mean`` each line also gets its running mean (mean of all values so far) as a thicker dotted
    line of the same colour, with its final value in the legend; hover and the CSV carry it per step (column
    ``running_mean_<metric>``). That is the number to compare with "about 0.7 on average".

    With ``seed_runs`` each label's line is the mean over its seeds with a shaded ±1 standard deviation band
    (numpy's ``std``, ddof = 0, over the seeds that have a value at that step), "n seeds" in the legend and on
    hover, and columns ``std_<metric>`` and ``seeds`` in the CSV.

    Args:
        {runs}
        metric: a key of ``METRICS`` ("test_acc", "eps_norm", "effective_rho", "cos_eps_fullgrad", ...).
        {labels}
        log_y: log y-axis; None uses ``METRICS[metric].log``. Non-positive values are not drawn on a log axis.
        x: "step" or "elapsed" (wall-clock seconds: compares methods at equal compute; with seeds, the seeds'
            mean time at each step).
        {title}
        {uirevision}
        running_mean: draw each line's running mean; None turns it on for metrics quoted as averages
            (``RUNNING_MEAN_METRICS``: cos(e, ∇L)).
        seed_runs: one sequence of runs per entry of ``runs`` (the same setting with different seeds; it may
            include that run). None: each run is drawn on its own.
        y_title: the y-axis title (default: the metric's title; a method's own series pass their registry label).

    Returns:
        {returns}

    Raises:
        ValueError: no runs, an unknown metric or ``x``, labels that do not match the runs, ``seed_runs`` whose
            count differs from the runs or with an empty group, or per-step arrays of different lengths.
    """
    runs = _check_runs(runs)
    if x not in _X_TITLES:
        raise ValueError(f"Invalid x: {x!r}; valid: 'step', 'elapsed'")
    names = default_labels(runs, labels)
    info = metric_info(metric)
    if info is None:
        raise ValueError(f"Unknown metric: {metric!r}; valid: {', '.join(METRICS)} or extra:<name>")
    groups = _check_groups(seed_runs, len(runs))
    y_label = y_title or info.title
    show_mean = metric in RUNNING_MEAN_METRICS if running_mean is None else bool(running_mean)

    lines: list[_Line] = []
    for i, (run, name) in enumerate(zip(runs, names)):
        if groups is not None:
            lines.append(_seed_line(groups[i], metric, x, name))
            continue
        y = metric_series(run, metric)
        xs = as_1d(x, getattr(run, x), allow_empty=True)
        check_same_length(f"run {name!r}", **{x: xs, metric: y})
        cross = _diverged_point(run, xs, y)
        lines.append(_Line(xs, y, None, None, cross, "" if cross is None else f"diverged at step {cross[2]}"))
    series = [ln.y for ln in lines]
    log = info.log if log_y is None else bool(log_y)
    if log_y is None and log and _has_non_positive(series):
        log = False  # the default log axis would hide non-positive values (e.g. analytic losses below 0)

    data: list[Any] = []
    notes, finals = [], []
    for i, (name, ln) in enumerate(zip(names, lines)):
        s = style(i)
        recorded = bool(np.isfinite(ln.y).any())
        legend = name
        custom_cols: list[np.ndarray] = []
        columns: list[str] = []
        hover = [f"<b>{name}</b>", f"{_X_TITLES[x]} %{{x:.4~g}}",
                 f"{y_label} %{{y:.4~g}}" if ln.std is None else f"mean {y_label} %{{y:.4~g}}"]
        if ln.std is not None:
            n_max = int(ln.seeds.max()) if ln.seeds.size else 0
            legend += f" ({n_max} seed{'s' if n_max != 1 else ''}, ±1 std)"
            custom_cols += [ln.std, ln.seeds.astype(np.float64)]
            columns += [f"std_{metric}", "seeds"]
            k = len(columns)
            hover.append(f"± %{{customdata[{k - 2}]:.3~g}} (1 std over %{{customdata[{k - 1}]:d}} seeds)")
        mean = cumulative_mean(ln.y) if show_mean and recorded else None
        if mean is not None:
            final = last_finite(mean)
            legend += f" — mean {fmt(final[1]) if final else '–'}"  # short: narrow columns cut long entries
            custom_cols.append(mean)
            columns.append(f"running_mean_{metric}")
            hover.append(f"running mean %{{customdata[{len(columns) - 1}]:.3~g}}")
        if ln.diverged:
            legend += f" — {ln.diverged}"
            notes.append(f"{name} {ln.diverged}")
        if not recorded:
            legend += " — not recorded"
        extra: dict[str, Any] = {}
        if custom_cols:
            extra["customdata"] = np.column_stack(custom_cols)
        if ln.std is not None and recorded:
            ok = np.isfinite(ln.x) & np.isfinite(ln.y) & np.isfinite(ln.std)
            bx, lo, hi = ln.x[ok], (ln.y - ln.std)[ok], (ln.y + ln.std)[ok]
            # one closed polygon (upper edge, then the lower edge back): no fill between unrelated traces
            data.append(go.Scatter(x=np.concatenate([bx, bx[::-1]]), y=np.concatenate([hi, lo[::-1]]),
                                   mode="lines", fill="toself", fillcolor=_band_rgba(s.color, 0.22),
                                   line=dict(width=0, color=s.color), name=f"{name}: ±1 std", legendgroup=f"run{i}",
                                   showlegend=False, hoverinfo="skip", meta={"export": False}))
        data.append(go.Scatter(x=ln.x, y=ln.y, mode="lines", name=legend, legendgroup=f"run{i}", connectgaps=True,
                               line=dict(color=s.color, dash=s.dash, width=2),
                               opacity=0.6 if mean is not None else None,
                               visible=True if recorded else "legendonly",
                               hovertemplate="<br>".join(hover) + _EXTRA,
                               meta={"key": name, "x": x, "y": metric if ln.std is None else f"mean_{metric}",
                                     **({"customdata": columns} if columns else {})}, **extra))
        if mean is not None:
            data.append(go.Scatter(x=ln.x, y=mean, mode="lines", name=f"{name}: running mean",
                                   legendgroup=f"run{i}", showlegend=False, connectgaps=True,
                                   line=dict(color=s.color, dash="dot", width=4.5), hoverinfo="skip",
                                   meta={"export": False}))  # its values are a column of the line's table
        if ln.cross is not None:
            cross = ln.cross
            data.append(go.Scatter(x=[cross[0]], y=[cross[1]], mode="markers+text", name=f"{name}: diverged",
                                   legendgroup=f"run{i}", showlegend=False, text=["diverged"],
                                   textposition="top center", textfont=dict(color=s.color),
                                   marker=dict(symbol="x", size=14, color=s.color, line=dict(width=1, color="white")),
                                   hovertemplate=f"<b>{name}</b><br>diverged at step {cross[2]}<br>"
                                                 f"last finite {metric} %{{y:.4~g}}" + _EXTRA,
                                   meta={"key": f"{name} diverged", "x": x, "y": f"last_finite_{metric}"}))
        lf = last_finite(ln.y)
        finals.append(f"{name} {fmt(lf[1])}" if lf else f"{name} (none)")
        if mean is not None and last_finite(mean):
            finals[-1] += f" (running mean {fmt(last_finite(mean)[1])})"
    what = "seed means" if groups is not None else "run(s)"
    alt = (f"Line chart of {y_label} against {_X_TITLES[x]} for {len(runs)} {what}"
           + (" with ±1 std bands" if groups is not None else "") + f"; last values: {join_names(finals)}"
           + (f"; {join_names(notes)}" if notes else "") + ".")
    yaxis = axis(y_label, type="log" if log else "linear")
    flat = _flat_range(series, log)
    if flat is not None:
        yaxis["range"] = flat
    layout = base_layout(title=title or f"{y_label.split(' (')[0]} during training",
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


def _check_groups(seed_runs: Sequence[Sequence[Any]] | None, n: int) -> list[list[Any]] | None:
    if seed_runs is None:
        return None
    groups = [list(g) for g in seed_runs]
    if len(groups) != n:
        raise ValueError(f"Invalid seed_runs: {len(groups)} groups for {n} runs")
    if any(not g for g in groups):
        raise ValueError("Invalid seed_runs: every group needs at least one run")
    return groups


def _fsam_seed_parts(group: Sequence[Any]) -> tuple[np.ndarray, ...]:
    """(steps, mean full, mean noise, (std full, std noise), seeds) over a group's seeds, on the union of the steps
    where any seed measured cos(e, ∇L)."""
    parts = [fsam_parts(run) for run in group]
    steps = np.unique(np.concatenate([p[0] for p in parts])).astype(np.int64)
    mats = np.full((2, len(group), steps.size), np.nan)
    for k, (st, full, noise) in enumerate(parts):
        pos = np.searchsorted(steps, st)
        mats[0, k, pos], mats[1, k, pos] = full, noise
    (full, full_std, n), (noise, noise_std, _) = _mean_std(mats[0]), _mean_std(mats[1])
    return steps, full, noise, (full_std, noise_std), n


@doc
def fsam_decomposition_figure(runs: Sequence[Run], *, labels: Sequence[str] | None = None, title: str | None = None,
                              uirevision: str | None = None,
                              seed_runs: Sequence[Sequence[Run]] | None = None) -> go.Figure:
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
        seed_runs: as in ``series_figure``: one group of seeds per run; each part is then the mean over the
            seeds with a ±1 std band (ddof = 0), and the CSV gets ``std_*`` and ``seeds`` columns.

    Returns:
        {returns}

    Raises:
        ValueError: no runs, labels that do not match the runs, or ``seed_runs`` that do not.
    """
    runs = _check_runs(runs)
    names = default_labels(runs, labels)
    groups = _check_groups(seed_runs, len(runs))
    grid = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                         subplot_titles=("along ∇L: ‖e‖·cos(e, ∇L)", "minibatch noise: ‖e‖·sin(e, ∇L)"))
    data: list[Any] = []
    missing = []
    if groups is None:
        parts = [(*fsam_parts(run), None, None) for run in runs]
    else:
        parts = [_fsam_seed_parts(g) for g in groups]
    for i, (name, (steps, full, noise, spread, seeds)) in enumerate(zip(names, parts)):
        if steps.size == 0:
            missing.append(name)
            continue
        s = style(i)
        legend = name if seeds is None else f"{name} ({int(seeds.max())} seeds, ±1 std)"
        for row, (part, values) in enumerate((("full-gradient part", full), ("noise part", noise)), start=1):
            axes = {} if row == 1 else dict(xaxis="x2", yaxis="y2")
            column = "eps_along_fullgrad" if row == 1 else "eps_noise"
            hover = f"<b>{name}</b><br>step %{{x}}<br>{part} %{{y:.4~g}}"
            extra: dict[str, Any] = {}
            meta: dict[str, Any] = {"key": f"{name} {part}", "x": "step", "y": column}
            if spread is not None:
                std = spread[row - 1]
                ok = np.isfinite(values) & np.isfinite(std)
                bx = steps[ok]
                data.append(go.Scatter(x=np.concatenate([bx, bx[::-1]]),
                                       y=np.concatenate([(values + std)[ok], (values - std)[ok][::-1]]),
                                       mode="lines", fill="toself", fillcolor=_band_rgba(s.color, 0.22),
                                       line=dict(width=0, color=s.color), name=f"{name} {part}: ±1 std",
                                       legendgroup=f"run{i}", showlegend=False, hoverinfo="skip",
                                       meta={"export": False}, **axes))
                extra["customdata"] = np.column_stack([std, seeds.astype(np.float64)])
                hover += "<br>± %{customdata[0]:.3~g} (1 std over %{customdata[1]:d} seeds)"
                meta.update(y=f"mean_{column}", customdata=[f"std_{column}", "seeds"])
            data.append(go.Scatter(x=steps, y=values, mode="lines+markers" if steps.size <= 60 else "lines",
                                   name=legend, legendgroup=f"run{i}", showlegend=row == 1,
                                   line=dict(color=s.color, dash=s.dash, width=2),
                                   marker=dict(symbol=s.symbol, size=5, color=s.color),
                                   hovertemplate=hover + _EXTRA, meta=meta, **axes, **extra))
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
    for name, (_, full, noise, _, _) in zip(names, parts):
        if full.size:
            means.append(f"{name} mean along-gradient {fmt(_nanmean(full[None])[0])} vs noise "
                         f"{fmt(_nanmean(noise[None])[0])}")
    alt = ("Two stacked line charts splitting the perturbation length into its part along the full-batch gradient "
           f"and its orthogonal noise part over training, for {join_names(shown) or 'no run'}"
           + (f" ({'; '.join(means)})" if means else "") + ".")
    layout.meta = {"alt": alt}
    return go.Figure(data=data, layout=layout)
