"""Loss surfaces with optimizer trajectories: static contour/3-D views, browser-side playback, perturbation arrows."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go

from ._common import (
    FONT_SIZE,
    as_1d,
    axis,
    base_layout,
    check_colorscale,
    check_increasing,
    check_same_length,
    doc,
    finite_range,
    fmt,
    join_names,
    run_label,
    style,
)
from ._raster import contour_image, nice_levels

if TYPE_CHECKING:  # both modules import torch; plots only reads their numpy fields
    from ..landscape import Projection, Surface
    from ..records import Run

_EXTRA = "<extra></extra>"


# --------------------------------------------------------------------------------------------- trajectory record


@dataclass(frozen=True, eq=False)
class TrajectoryTrace:
    """One optimizer's path in plane coordinates, ready to draw on a surface.

    Attributes:
        label: legend name (e.g. ``run_label(run)``).
        alpha, beta: (T,) plane coordinates of θ_t (a ``Projection`` of the run's snapshots).
        steps: (T,) training step of each point, non-decreasing (``Run.snapshot_step``).
        loss: (T,) true loss L(θ_t) at the point itself; NaN when unknown.
        plane_loss: (T,) loss at the projection on the plane (what the contour shows there); NaN when unknown.
        off_plane: (T,) distance ‖θ_t − proj(θ_t)‖ from the plane; NaN when unknown.
        probe_alpha, probe_beta: (T,) plane coordinates of the probe θ_t + e_t, or None (no perturbation
            recorded). NaN where there is none (the final snapshot).
        eps_norm: (T,) ‖e_t‖ in the full parameter space (hover), NaN when unknown.

    Missing optional arrays are stored as NaN-filled arrays (``probe_*`` stay None), so every field but the probe
    is a (T,) float array after construction.

    Raises:
        ValueError: arrays of different lengths, an empty path, or decreasing steps.
    """

    label: str
    alpha: np.ndarray
    beta: np.ndarray
    steps: np.ndarray
    loss: np.ndarray | None = None
    plane_loss: np.ndarray | None = None
    off_plane: np.ndarray | None = None
    probe_alpha: np.ndarray | None = None
    probe_beta: np.ndarray | None = None
    eps_norm: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not str(self.label):
            raise ValueError("Invalid label: empty")
        alpha, beta = as_1d("alpha", self.alpha), as_1d("beta", self.beta)
        steps = as_1d("steps", self.steps)
        n = check_same_length(f"trajectory {self.label!r}", alpha=alpha, beta=beta, steps=steps)
        check_increasing("steps", steps, strict=False)
        if np.all(steps == np.round(steps)):
            steps = steps.astype(np.int64)
        fields: dict[str, Any] = {"label": str(self.label), "alpha": alpha, "beta": beta, "steps": steps}
        for name in ("loss", "plane_loss", "off_plane", "eps_norm"):
            value = getattr(self, name)
            fields[name] = np.full(n, np.nan) if value is None else as_1d(name, value)
        if (self.probe_alpha is None) != (self.probe_beta is None):
            raise ValueError("Invalid probe: give both probe_alpha and probe_beta, or neither")
        if self.probe_alpha is not None:
            fields["probe_alpha"] = as_1d("probe_alpha", self.probe_alpha)
            fields["probe_beta"] = as_1d("probe_beta", self.probe_beta)
        arrays = {k: v for k, v in fields.items() if isinstance(v, np.ndarray)}
        check_same_length(f"trajectory {self.label!r}", **arrays)
        for key, value in fields.items():
            object.__setattr__(self, key, value)

    @property
    def n(self) -> int:
        """Points on the path."""
        return int(self.alpha.shape[0])

    @property
    def has_probe(self) -> bool:
        """Whether θ_t + e_t was given."""
        return self.probe_alpha is not None

    @classmethod
    def from_projection(cls, label: str, projection: Projection, steps: Any, *, probe: Projection | None = None,
                        eps_norm: Any = None) -> TrajectoryTrace:
        """Build from ``sam_viz.landscape.project`` of a run's snapshots (and, optionally, of θ_t + e_t).

        Args:
            label: legend name.
            projection: ``project(plane, run.weights, ...)``.
            steps: (T,) the snapshots' steps, ``run.snapshot_step``.
            probe: ``project(plane, θ + e)`` of the same snapshots; one shorter (the final snapshot has no
                perturbation) is padded with NaN, and points with NaN coordinates are not drawn.
            eps_norm: (T,) ‖e_t‖ at the snapshots, e.g. ``run.eps_norm[run.snapshot_step[:-1]]`` plus NaN.

        Returns:
            The TrajectoryTrace.
        """
        n = len(projection.alpha)
        probe_ab = None if probe is None else (_pad(probe.alpha, n, "probe"), _pad(probe.beta, n, "probe"))
        return cls(label, projection.alpha, projection.beta, steps, loss=projection.true_loss,
                   plane_loss=projection.plane_loss, off_plane=projection.off_plane,
                   probe_alpha=None if probe_ab is None else probe_ab[0],
                   probe_beta=None if probe_ab is None else probe_ab[1], eps_norm=eps_norm)

    @classmethod
    def from_run(cls, run: Run, projection: Projection, *, probe: Projection | None = None,
                 label: str | None = None) -> TrajectoryTrace:
        """Build from a run and the projections of its snapshots (and probes), reading steps and ‖e_t‖ from the run.

        Args:
            run: the ``Run`` whose ``weights`` were projected.
            projection: ``project(plane, run.weights, ...)`` (one row per snapshot).
            probe: ``project(plane, run.weights[:-1] + run.perturbations[:-1])``: the final snapshot has no
                perturbation, so a projection one row short is padded with NaN.
            label: legend name; default ``run_label(run)``.

        Returns:
            The TrajectoryTrace.
        """
        steps = np.asarray(run.snapshot_step)
        eps = np.asarray(run.eps_norm, dtype=np.float64)
        inside = steps < eps.size
        eps_at = np.full(steps.size, np.nan)
        eps_at[inside] = eps[steps[inside]]
        return cls.from_projection(run_label(run) if label is None else label, projection, steps, probe=probe,
                                   eps_norm=eps_at)


def _pad(values: Any, n: int, name: str) -> np.ndarray:
    """``values`` padded with NaN at the end to length ``n``."""
    arr = as_1d(name, values, allow_empty=True)
    if arr.size > n:
        raise ValueError(f"Invalid {name}: {arr.size} points for a path of {n}")
    return np.concatenate([arr, np.full(n - arr.size, np.nan)])


# ------------------------------------------------------------------------------------------------ geometry


_PLANE_AXES = {
    "pca": ("α: principal direction 1 of the path", "β: principal direction 2 of the path"),
    "random": ("α: random direction d₁ (filter-normalised)", "β: random direction d₂ (filter-normalised)"),
    "hessian": ("α: top Hessian eigenvector", "β: second Hessian eigenvector"),
    "three_points": ("α: along θ_b − θ_a", "β: towards θ_c (part orthogonal to α)"),
}
_PLANE_NAMES = {"pca": "PCA", "random": "random", "hessian": "Hessian-eigenvector", "three_points": "three-point",
                "axes": "parameter"}


@dataclass(frozen=True)
class _Geometry:
    """What every surface view needs, computed once."""

    alpha: np.ndarray
    beta: np.ndarray
    raw: np.ndarray                              # (B, A) loss or accuracy as given
    z: np.ndarray                                # (B, A) what is coloured: raw or its log transform
    transform: Callable[[np.ndarray], np.ndarray]
    quantity: str                                # "loss" or "accuracy"
    z_title: str                                 # colour bar / z-axis title
    z_hover: str                                 # hover line for z
    x_title: str
    y_title: str
    kind: str
    equal_aspect: bool
    argmin: tuple[int, int]                      # (i_beta, i_alpha) of the best cell
    log_scale: bool


def _plane_axis_titles(plane: Any) -> tuple[str, str]:
    kind = str(getattr(plane, "kind", ""))
    if kind == "axes":
        origin = np.asarray(getattr(plane, "origin", np.zeros(2)), dtype=np.float64)
        if origin.size >= 2 and np.any(origin[:2] != 0):
            return "θ₁ − θ₁⁽⁰⁾ (parameter 1, from the plane origin)", "θ₂ − θ₂⁽⁰⁾ (parameter 2, from the plane origin)"
        return "θ₁ (parameter 1)", "θ₂ (parameter 2)"
    x, y = _PLANE_AXES.get(kind, ("α: plane direction d₁", "β: plane direction d₂"))
    ev = getattr(plane, "explained_variance", None)
    if kind == "pca" and ev is not None:
        x, y = f"{x} ({100 * ev[0]:.1f}% of variance)", f"{y} ({100 * ev[1]:.1f}% of variance)"
    titles = []
    for title, name, sym in ((x, "d1", "d₁"), (y, "d2", "d₂")):
        d = getattr(plane, name, None)
        norm = float(np.linalg.norm(d)) if d is not None else 1.0
        # Coordinates are in multiples of the direction: say how long it is unless it is a unit vector.
        titles.append(title if abs(norm - 1.0) < 1e-6 else f"{title}; a unit step is ‖{sym}‖ = {fmt(norm)}")
    return titles[0], titles[1]


def _log_delta(lo: float, hi: float) -> float:
    return max((hi - lo) * 1e-4, 1e-12)


def _geometry(surface: Surface, *, log_scale: bool = False, quantity: str = "loss") -> _Geometry:
    """Validate ``surface`` and compute the coloured values, axis titles and the best cell."""
    if quantity not in ("loss", "accuracy"):
        raise ValueError(f"Invalid quantity: {quantity!r}; valid: 'loss', 'accuracy'")
    alpha, beta = as_1d("surface.alpha", surface.alpha), as_1d("surface.beta", surface.beta)
    if alpha.size < 2 or beta.size < 2:
        raise ValueError("Invalid surface: need at least 2 grid points along each axis")
    check_increasing("surface.alpha", alpha)
    check_increasing("surface.beta", beta)
    values = getattr(surface, quantity)
    if values is None:
        raise ValueError(f"Invalid quantity: the surface has no {quantity}")
    raw = np.asarray(values, dtype=np.float64)
    raw = np.where(np.isfinite(raw), raw, np.nan)  # an overflowed (inf) cell is left blank like a missing one
    if raw.shape != (beta.size, alpha.size):
        raise ValueError(f"Invalid surface: {quantity} has shape {raw.shape}, expected (len(beta), len(alpha)) = "
                         f"{(beta.size, alpha.size)}")
    finite = np.isfinite(raw)
    if not finite.any():
        raise ValueError(f"Invalid surface: no finite {quantity} values")
    lo, hi = float(raw[finite].min()), float(raw[finite].max())
    best = np.where(finite, raw, np.inf if quantity == "loss" else -np.inf)
    flat = int(best.argmin() if quantity == "loss" else best.argmax())
    argmin = (flat // alpha.size, flat % alpha.size)
    name = "loss L(θ)" if quantity == "loss" else "accuracy"
    if log_scale:
        if quantity != "loss":
            raise ValueError("Invalid log_scale: only the loss has a log view")
        delta = _log_delta(lo, hi)

        def transform(v: np.ndarray, lo: float = lo, delta: float = delta) -> np.ndarray:
            return np.log10(np.maximum(np.asarray(v, dtype=np.float64) - lo, 0.0) + delta)

        z_title = "log₁₀(loss − min + δ)"
        z_hover = (f"log₁₀(loss − min + δ) %{{z:.3f}}<br>(min {fmt(lo, 4)}, δ {fmt(delta, 2)})<br>"
                   "loss %{customdata[0]:.4~g}")
    else:
        def transform(v: np.ndarray) -> np.ndarray:
            return np.asarray(v, dtype=np.float64)

        z_title = name
        z_hover = f"{quantity} %{{z:.4~g}}"
    x_title, y_title = _plane_axis_titles(surface.plane)
    kind = str(getattr(surface.plane, "kind", ""))
    return _Geometry(alpha, beta, raw, transform(raw), transform, quantity, z_title, z_hover, x_title, y_title,
                     kind, kind == "axes", argmin, log_scale)


def _bilinear(g: _Geometry, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The surface's raw values at (a, b) by bilinear interpolation; NaN outside the grid."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    inside = (a >= g.alpha[0]) & (a <= g.alpha[-1]) & (b >= g.beta[0]) & (b <= g.beta[-1])
    a0, b0 = np.where(inside, a, g.alpha[0]), np.where(inside, b, g.beta[0])
    j = np.clip(np.searchsorted(g.alpha, a0, side="right") - 1, 0, g.alpha.size - 2)
    i = np.clip(np.searchsorted(g.beta, b0, side="right") - 1, 0, g.beta.size - 2)
    ta = (a0 - g.alpha[j]) / (g.alpha[j + 1] - g.alpha[j])
    tb = (b0 - g.beta[i]) / (g.beta[i + 1] - g.beta[i])
    z = g.raw
    out = ((1 - ta) * (1 - tb) * z[i, j] + ta * (1 - tb) * z[i, j + 1] + (1 - ta) * tb * z[i + 1, j]
           + ta * tb * z[i + 1, j + 1])
    return np.where(inside, out, np.nan)


def _check_trajectories(trajectories: Sequence[TrajectoryTrace], *, required: bool) -> list[TrajectoryTrace]:
    trajs = list(trajectories)
    if required and not trajs:
        raise ValueError("Invalid trajectories: at least one is needed")
    for t in trajs:
        if not isinstance(t, TrajectoryTrace):
            raise ValueError(f"Invalid trajectories: expected TrajectoryTrace, got {type(t).__name__}")
    return trajs


def _uirevision(prefix: str, g: _Geometry, given: str | None) -> str:
    if given is not None:
        return str(given)
    return (f"{prefix}:{g.kind}:{g.quantity}:{g.alpha.size}x{g.beta.size}:{fmt(g.alpha[0])},{fmt(g.alpha[-1])}:"
            f"{fmt(g.beta[0])},{fmt(g.beta[-1])}")


def _plane_axes(g: _Geometry, trajs: Sequence[TrajectoryTrace]) -> dict[str, Any]:
    """x/y axes spanning the grid and every path point.

    No autorange padding, so the map fills the frame unless a path leaves the grid, which then shows as blank
    space rather than being cut off.
    """
    xs, ys = [g.alpha], [g.beta]
    for t in trajs:
        xs += [t.alpha] + ([t.probe_alpha] if t.has_probe else [])
        ys += [t.beta] + ([t.probe_beta] if t.has_probe else [])
    (x0, x1), (y0, y1) = finite_range(*xs), finite_range(*ys)
    extra_x = dict(scaleanchor="y", scaleratio=1) if g.equal_aspect else {}
    return dict(xaxis=axis(g.x_title, range=[x0, x1], constrain="domain", **extra_x),
                yaxis=axis(g.y_title, range=[y0, y1], constrain="domain"))


# --------------------------------------------------------------------------------------------------- traces


_TRAJ_COLUMNS = ["step", "true_loss", "plane_loss", "off_plane"]


def _traj_hover(t: TrajectoryTrace) -> str:
    """Hover of a path point: step, coordinates, and the true loss, plane loss and off-plane gap when known."""
    lines = ["<b>%{fullData.name}</b>", "step %{customdata[0]:d}", "α %{x:.4~g}, β %{y:.4~g}"]
    for values, line in ((t.loss, "true loss L(θ) %{customdata[1]:.4~g}"),
                         (t.plane_loss, "plane loss (what the map shows) %{customdata[2]:.4~g}"),
                         (t.off_plane, "off-plane distance %{customdata[3]:.3~g}")):
        if np.isfinite(values).any():
            lines.append(line)
    return "<br>".join(lines) + _EXTRA


def _probe_hover(t: TrajectoryTrace) -> str:
    lines = ["<b>%{fullData.name}</b>", "step %{customdata[0]:d}", "θ+e at α %{x:.4~g}, β %{y:.4~g}",
             "in-plane shift (Δα, Δβ) (%{customdata[1]:.3~g}, %{customdata[2]:.3~g})"]
    if np.isfinite(t.eps_norm).any():
        lines.append("‖e‖ in full space %{customdata[3]:.3~g}")
    return "<br>".join(lines) + _EXTRA


def _traj_custom(t: TrajectoryTrace) -> np.ndarray:
    return np.column_stack([t.steps, t.loss, t.plane_loss, t.off_plane])


def _probe_custom(t: TrajectoryTrace) -> np.ndarray:
    return np.column_stack([t.steps, t.probe_alpha - t.alpha, t.probe_beta - t.beta, t.eps_norm])


def _surface_trace(g: _Geometry, colorscale: str, *, three_d: bool = False) -> go.Contour | go.Surface:
    hover = f"α %{{x:.4~g}}<br>β %{{y:.4~g}}<br>{g.z_hover}" + _EXTRA
    meta = {"key": "surface", "x": "alpha", "y": "beta", "z": "log10_loss_gap" if g.log_scale else g.quantity}
    if three_d:
        # gl3d hover cannot index customdata reliably: show the log value and the constants to undo it.
        hover = hover.replace("<br>loss %{customdata[0]:.4~g}", "")
        return go.Surface(x=g.alpha, y=g.beta, z=g.z, colorscale=colorscale, name=g.z_title, hovertemplate=hover,
                          colorbar=dict(title=dict(text=g.z_title)), opacity=0.96, meta=meta)
    extra: dict[str, Any] = {}
    if g.log_scale:  # 3-D customdata: heatmap-type hover in Plotly ≥ 6 indexes (B, A, k) arrays only
        extra = dict(customdata=g.raw[:, :, None])
        meta["customdata"] = ["loss"]
    return go.Contour(x=g.alpha, y=g.beta, z=g.z, colorscale=colorscale, name=g.z_title, ncontours=24,
                      contours=dict(coloring="heatmap", showlines=True),
                      line=dict(width=0.6, color="rgba(255,255,255,0.4)"),
                      colorbar=dict(title=dict(text=g.z_title, side="right")), hovertemplate=hover, meta=meta,
                      **extra)


def _best_cell_trace(g: _Geometry) -> go.Scatter:
    i, j = g.argmin
    word = "lowest loss" if g.quantity == "loss" else "highest accuracy"
    return go.Scatter(x=[g.alpha[j]], y=[g.beta[i]], mode="markers", name=f"grid {word}",
                      marker=dict(symbol="star", size=14, color="white", line=dict(color="black", width=1)),
                      customdata=[[g.raw[i, j]]],
                      hovertemplate=f"grid {word} %{{customdata[0]:.4~g}}<br>α %{{x:.4~g}}, β %{{y:.4~g}}" + _EXTRA,
                      meta={"key": f"grid {word}", "x": "alpha", "y": "beta", "customdata": [g.quantity]})


def _path_look(i: int, n_paths: int, n_points: int) -> tuple[float, np.ndarray]:
    """(line width, per-point marker sizes) of path ``i`` of ``n_paths``, so identical paths stay distinguishable.

    Earlier paths are drawn wider (they lie underneath), so a later path on top leaves a coloured rim of each one
    below; markers sit every ``k``-th point with each path's markers shifted by ``k / n_paths`` points, so two paths
    through the same points never hide each other's markers. The end point is always large.
    """
    width = 2.5 + 3.0 * max(0, n_paths - 1 - i)
    every = max(n_paths, math.ceil(n_points / 10))
    sizes = np.zeros(n_points)
    sizes[(i * every) // n_paths::every] = 9.0
    sizes[-1] = 12.0 + 5.0 * max(0, n_paths - 1 - i)  # a shared end point shows every path's marker
    return width, sizes


def _path_trace(i: int, t: TrajectoryTrace, n_paths: int = 1) -> go.Scatter:
    s = style(i)
    width, sizes = _path_look(i, n_paths, t.n)
    return go.Scatter(x=t.alpha, y=t.beta, mode="lines+markers", name=t.label, legendgroup=f"traj{i}",
                      line=dict(color=s.color, dash=s.dash, width=width),
                      marker=dict(symbol=s.symbol, size=sizes, color=s.color, line=dict(color="white", width=1)),
                      customdata=_traj_custom(t), hovertemplate=_traj_hover(t),
                      meta={"key": f"{t.label} path", "x": "alpha", "y": "beta", "customdata": _TRAJ_COLUMNS})


def _probe_trace(i: int, t: TrajectoryTrace) -> go.Scatter:
    s = style(i)
    return go.Scatter(x=t.probe_alpha, y=t.probe_beta, mode="markers", name=f"{t.label}: θ+e",
                      legendgroup=f"traj{i}",
                      marker=dict(symbol=f"{s.symbol}-open", size=8, color=s.color, line=dict(width=2)),
                      customdata=_probe_custom(t), hovertemplate=_probe_hover(t),
                      meta={"key": f"{t.label} probe", "x": "probe_alpha", "y": "probe_beta",
                            "customdata": ["step", "delta_alpha", "delta_beta", "eps_norm"]})


def _path_trace_3d(i: int, t: TrajectoryTrace, g: _Geometry, lift: float) -> go.Scatter3d:
    s = style(i)
    on_grid = _bilinear(g, t.alpha, t.beta)
    # The path rides the plane loss (exact at the projection) where known; an accuracy surface uses its own values.
    height = np.where(np.isfinite(t.plane_loss), t.plane_loss, on_grid) if g.quantity == "loss" else on_grid
    return go.Scatter3d(x=t.alpha, y=t.beta, z=g.transform(height) + lift, mode="lines+markers", name=t.label,
                        legendgroup=f"traj{i}", line=dict(color=s.color, width=6, dash=s.dash),
                        marker=dict(symbol=s.symbol3d, size=3.5, color=s.color),
                        customdata=_traj_custom(t), hovertemplate=_traj_hover(t),
                        meta={"key": f"{t.label} path", "x": "alpha", "y": "beta", "z": "height",
                              "customdata": _TRAJ_COLUMNS})


def _probe_trace_3d(i: int, t: TrajectoryTrace, g: _Geometry, lift: float) -> go.Scatter3d:
    s = style(i)
    height = g.transform(_bilinear(g, t.probe_alpha, t.probe_beta)) + lift
    return go.Scatter3d(x=t.probe_alpha, y=t.probe_beta, z=height, mode="markers", name=f"{t.label}: θ+e",
                        legendgroup=f"traj{i}", marker=dict(symbol="circle-open", size=4, color=s.color),
                        customdata=_probe_custom(t), hovertemplate=_probe_hover(t),
                        meta={"key": f"{t.label} probe", "x": "probe_alpha", "y": "probe_beta", "z": "height",
                              "customdata": ["step", "delta_alpha", "delta_beta", "eps_norm"]})


def _default_title(g: _Geometry, what: str) -> str:
    plane = _PLANE_NAMES.get(g.kind, g.kind or "a")
    value = "Loss" if g.quantity == "loss" else "Accuracy"
    scale = " (log scale)" if g.log_scale else ""
    return f"{value}{scale} on the {plane} plane{what}"


def _alt(g: _Geometry, trajs: Sequence[TrajectoryTrace], kind: str) -> str:
    i, j = g.argmin
    word = "lowest loss" if g.quantity == "loss" else "highest accuracy"
    text = (f"{kind} of the {g.z_title} over a {_PLANE_NAMES.get(g.kind, g.kind)} plane, α from {fmt(g.alpha[0])} "
            f"to {fmt(g.alpha[-1])} and β from {fmt(g.beta[0])} to {fmt(g.beta[-1])}, with the {word} "
            f"{fmt(g.raw[i, j])} at α={fmt(g.alpha[j])}, β={fmt(g.beta[i])}")
    if trajs:
        ends = [f"{t.label} ending at α={fmt(t.alpha[-1])}, β={fmt(t.beta[-1])}" for t in trajs]
        text += f"; paths of {join_names(ends)}"
    return text + "."


# ------------------------------------------------------------------------------------------------- builders


@doc
def surface_figure(surface: Surface, *, trajectories: Sequence[TrajectoryTrace] = (), kind: str = "contour",
                   log_scale: bool = False, quantity: str = "loss", colorscale: str = "Viridis",
                   title: str | None = None, uirevision: str | None = None) -> go.Figure:
    """The loss over a plane as a contour map or a 3-D surface, with optimizer paths on top.

    A contour is a slice: a point θ_t off the plane does not sit at the contour's value. Hovering a path shows
    the step, the true loss L(θ_t), the loss at its projection (what the map shows) and the off-plane distance, so
    the gap is visible rather than hidden. In 3-D the paths run at the plane loss (interpolated from the grid when
    it is unknown), lifted by 1% of the height range so the surface does not hide them.

    Args:
        {surface}
        {trajectories}
        kind: "contour" (2-D, fast, several per page) or "surface3d" (WebGL; browsers cap such charts per page).
        {log_scale}
        quantity: "loss", or "accuracy" when the surface has one.
        {colorscale}
        {title}
        {uirevision}

    Returns:
        {returns}

    Raises:
        ValueError: a malformed surface (shapes, non-increasing axes, no finite values), an unknown ``kind`` or
            ``colorscale``, or trajectories that are not ``TrajectoryTrace``.

    >>> fig = surface_figure(surface, trajectories=[trace_sgd, trace_sam], log_scale=True)  # doctest: +SKIP
    """
    if kind not in ("contour", "surface3d"):
        raise ValueError(f"Invalid kind: {kind!r}; valid: 'contour', 'surface3d'")
    check_colorscale(colorscale)
    trajs = _check_trajectories(trajectories, required=False)
    g = _geometry(surface, log_scale=log_scale, quantity=quantity)

    if kind == "contour":
        data: list[Any] = [_surface_trace(g, colorscale), _best_cell_trace(g)]
        for i, t in enumerate(trajs):
            data.append(_path_trace(i, t, len(trajs)))
            if t.has_probe:
                data.append(_probe_trace(i, t))
        layout = base_layout(title=title or _default_title(g, ""), uirevision=_uirevision("surface", g, uirevision),
                             alt=_alt(g, trajs, "Contour map"),
                             **_plane_axes(g, trajs))
        return go.Figure(data=data, layout=layout)

    lo, hi = finite_range(g.z)  # _geometry guarantees a finite value
    lift = 0.01 * (hi - lo if hi > lo else 1.0)
    data = [_surface_trace(g, colorscale, three_d=True)]
    for i, t in enumerate(trajs):
        data.append(_path_trace_3d(i, t, g, lift))
        if t.has_probe:
            data.append(_probe_trace_3d(i, t, g, lift))
    if g.equal_aspect:
        ratio = float((g.beta[-1] - g.beta[0]) / (g.alpha[-1] - g.alpha[0]))
        aspect = dict(aspectmode="manual", aspectratio=dict(x=1.0, y=ratio, z=0.7 * max(1.0, ratio)))
    else:
        aspect = dict(aspectmode="manual", aspectratio=dict(x=1.0, y=1.0, z=0.7))
    # Short axis titles and a camera a little farther out: WebGL axis titles are not wrapped, and the long 2-D
    # titles ran off the canvas (the full ones are in the 2-D view and the alt text).
    font = dict(tickfont=dict(size=FONT_SIZE - 1), title=dict(font=dict(size=FONT_SIZE + 1)))
    scene = dict(xaxis=_merge(axis(_short_title(g.x_title)), font), yaxis=_merge(axis(_short_title(g.y_title)), font),
                 zaxis=_merge(axis(g.z_title), font), camera=dict(eye=dict(x=1.45, y=-1.45, z=0.95)),
                 domain=dict(x=[0.0, 0.92], y=[0.0, 1.0]), **aspect)
    layout = base_layout(title=title or _default_title(g, ""), uirevision=_uirevision("surface3d", g, uirevision),
                         alt=_alt(g, trajs, "3-D surface"), scene=scene)
    layout["margin"] = {**layout["margin"], "l": 8, "r": 8, "b": 8}
    layout.setdefault("height", 640)
    return go.Figure(data=data, layout=layout)


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """``a`` updated with ``b``, nested dicts merged."""
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


_SHORTER = ((r";.*$", ""), (r" of the path", ""), (r"principal direction (\d)", r"PC \1"), (r"% of variance", "%"),
            (r" \(filter-normalised\)", ""), (r" \(parameter \d(, from the plane origin)?\)", ""),
            (r" \(part orthogonal to α\)", ""))


def _short_title(text: str) -> str:
    """A plane axis title short enough for a 3-D scene: "α: PC 1 (70.0%)" instead of the 2-D sentence."""
    for pattern, repl in _SHORTER:
        text = re.sub(pattern, repl, text)
    return text


def _timeline(trajs: Sequence[TrajectoryTrace], frame_stride: int, max_frames: int) -> np.ndarray:
    """The steps shown by the frames: every ``stride``-th distinct step of all paths, always ending at the last."""
    steps = np.unique(np.concatenate([t.steps for t in trajs]))
    stride = max(frame_stride, math.ceil(steps.size / max_frames))
    picked = steps[::stride]
    if picked[-1] != steps[-1]:
        picked = np.append(picked, steps[-1])
    return picked


def _frame_state(t: TrajectoryTrace, step: float) -> dict[str, Any]:
    """The path up to ``step``, the current point and the current θ → θ+e segment."""
    k = int(np.searchsorted(t.steps, step, side="right"))
    state: dict[str, Any] = {"path": (t.alpha[:k], t.beta[:k])}
    if k == 0:
        state["head"] = ([], [], np.empty((0, 4)))
        state["probe"] = ([], [])
        return state
    h = k - 1
    state["head"] = ([t.alpha[h]], [t.beta[h]], _traj_custom(t)[h:k])
    if t.has_probe and np.isfinite(t.probe_alpha[h]) and np.isfinite(t.probe_beta[h]):
        state["probe"] = ([t.alpha[h], t.probe_alpha[h]], [t.beta[h], t.probe_beta[h]])
    else:
        state["probe"] = ([], [])
    return state


SPEEDS = (0.5, 1.0, 2.0, 4.0)


@doc
def playback_figure(surface: Surface, trajectories: Sequence[TrajectoryTrace], *, frame_stride: int = 1,
                    max_frames: int = 200, duration_ms: int = 80, log_scale: bool = False,
                    colorscale: str = "Viridis", title: str | None = None,
                    uirevision: str | None = None, speeds: Sequence[float] = SPEEDS) -> go.Figure:
    """Training replayed on the contour map: Play/Pause/Replay, speed buttons and a step slider, in the browser.

    Each frame shows every optimizer's path up to that step, a large marker at its current point and, when the
    probe is known, a segment from θ_t to θ_t + e_t ending in an open marker. A faint full path stays underneath
    (and carries the hover). Before Play the figure shows the final state (whole paths, the slider at the last
    step), so a glance, a screenshot or an export shows where each run went; Play then starts from step 0.

    Frames only carry the moving traces (``go.Frame.traces``): the surface is sent once and playing needs no
    server rerun. The map is painted as a layout image under the traces: plotly.js drops a contour's layer on every
    animation frame (bug B2), and redrawing the whole figure per frame left it unpainted on a loaded machine; the
    contour trace stays, transparent, for hover, colour bar and export. Frames therefore need no redraw.

    Args:
        {surface}
        {trajectories}
        frame_stride: show every k-th distinct step; frame k then shows steps up to the k-th picked one.
        max_frames: upper bound on the frames (the stride grows to respect it): each frame carries its paths,
            so the payload grows with frames × points.
        duration_ms: milliseconds per frame at 1× (▶ Play and ⟲ Replay).
        {log_scale}
        {colorscale}
        {title}
        {uirevision}
        speeds: the speed buttons (multiples of 1×); each plays from the current step at that speed (pressed
            while playing, it changes the speed). Empty for none.

    Returns:
        {returns} The frames are ``fig.frames``, named by step.

    Raises:
        ValueError: no trajectories, ``frame_stride``/``max_frames`` < 1, ``duration_ms`` ≤ 0, a speed ≤ 0, or
            as ``surface_figure``.
    """
    for name, value in (("frame_stride", frame_stride), ("max_frames", max_frames)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"Invalid {name}: {value!r} (need an integer ≥ 1)")
    if not (isinstance(duration_ms, (int, float)) and duration_ms > 0):
        raise ValueError(f"Invalid duration_ms: {duration_ms!r} (need > 0)")
    speeds = [float(v) for v in speeds]
    if any(not (math.isfinite(v) and v > 0) for v in speeds):
        raise ValueError(f"Invalid speeds: {speeds!r} (need finite values > 0)")
    check_colorscale(colorscale)
    trajs = _check_trajectories(trajectories, required=True)
    g = _geometry(surface, log_scale=log_scale)
    timeline = _timeline(trajs, int(frame_stride), int(max_frames))

    # The map is an image under the traces (frames cannot erase it, see _raster); the contour trace stays, clear,
    # for its hover, colour bar and export.
    zmin, zmax = finite_range(g.z)
    levels = nice_levels(zmin, zmax)
    surface_trace = _surface_trace(g, colorscale)
    surface_trace.update(opacity=0.0, zmin=zmin, zmax=zmax, autocontour=False,
                         contours=dict(start=levels[0], end=levels[1], size=levels[2]))
    data: list[Any] = [surface_trace, _best_cell_trace(g)]
    moving: list[tuple[int, TrajectoryTrace, str]] = []  # (trace index, trajectory, role)
    for i, t in enumerate(trajs):
        s = style(i)
        ghost = _path_trace(i, t, len(trajs))
        ghost.update(opacity=0.35, mode="lines", showlegend=False, name=f"{t.label} (whole run)")
        data.append(ghost)
        width, sizes = _path_look(i, len(trajs), t.n)
        last = _frame_state(t, timeline[-1])  # shown until Play: the whole run
        moving.append((len(data), t, "path"))
        data.append(go.Scatter(x=last["path"][0], y=last["path"][1], mode="lines+markers", name=t.label,
                               legendgroup=f"traj{i}", line=dict(color=s.color, dash=s.dash, width=width),
                               marker=dict(symbol=s.symbol, size=sizes, color=s.color,
                                           line=dict(color="white", width=1)),
                               hoverinfo="skip", meta={"export": False}))
        moving.append((len(data), t, "head"))
        data.append(go.Scatter(x=last["head"][0], y=last["head"][1], mode="markers", name=f"{t.label} now",
                               legendgroup=f"traj{i}", showlegend=False, customdata=last["head"][2],
                               marker=dict(symbol=s.symbol, size=15, color=s.color, line=dict(color="white", width=2)),
                               hovertemplate=_traj_hover(t), meta={"export": False}))
        if t.has_probe:
            moving.append((len(data), t, "probe"))
            data.append(go.Scatter(x=last["probe"][0], y=last["probe"][1], mode="lines+markers",
                                   name=f"{t.label}: θ → θ+e", legendgroup=f"traj{i}", showlegend=False,
                                   line=dict(color=s.color, width=2),
                                   marker=dict(symbol=f"{s.symbol}-open", size=[0, 11], color=s.color,
                                               line=dict(width=2)),
                                   hoverinfo="skip", meta={"export": False}))

    indices = [idx for idx, _, _ in moving]
    frames = []
    for step in timeline:
        states = {id(t): _frame_state(t, step) for t in trajs}
        frame_data = []
        for _, t, role in moving:
            st = states[id(t)][role]
            update: dict[str, Any] = {"x": st[0], "y": st[1]}
            if role == "head":
                update["customdata"] = st[2]
            frame_data.append({"type": "scatter", **update})
        # plain dicts: go.Figure validates them in one pass, where a go.Scatter and go.Frame per frame cost 0.1 s
        frames.append({"data": frame_data, "traces": indices,
                       "name": str(int(step)) if float(step).is_integer() else str(step)})

    menus = _playback_menus(float(duration_ms), speeds)
    # Full width under the buttons: beside them it collided with the speed row in a narrow (sidebar) column.
    sliders = [dict(active=len(frames) - 1, x=0.0, len=1.0, y=-0.43, yanchor="top", pad=dict(t=4),
                    currentvalue=dict(prefix="step ", xanchor="right"), transition=dict(duration=0),
                    steps=[dict(method="animate", label=f["name"], args=[[f["name"]], _animation(0)]) for f in frames])]
    layout = base_layout(title=title or _default_title(g, ": training playback"),
                         uirevision=_uirevision("playback", g, uirevision),
                         alt=_alt(g, trajs, f"Animated contour map ({len(frames)} frames)"),
                         **_plane_axes(g, trajs),
                         updatemenus=menus, sliders=sliders,
                         images=[contour_image(g.alpha, g.beta, g.z, colorscale=colorscale, zmin=zmin, zmax=zmax,
                                               levels=levels)])
    for name in ("xaxis", "yaxis"):  # a contour trace hid the grid; an image under the traces would not
        layout[name].update(showgrid=False, zeroline=False)
    layout["margin"] = {**layout["margin"], "b": 270}
    layout.setdefault("height", 800)  # room for the map above the Play and speed buttons and the step slider
    return go.Figure(data=data, layout=layout, frames=frames)


def _animation(duration_ms: float, *, fromcurrent: bool | None = None) -> dict[str, Any]:
    """``Plotly.animate`` options: no full redraw per frame (the map is an image that frames leave alone)."""
    opts: dict[str, Any] = {"frame": {"duration": duration_ms, "redraw": False}, "mode": "immediate",
                            "transition": {"duration": 0}}
    if fromcurrent is not None:
        opts["fromcurrent"] = fromcurrent
    return opts


def _playback_menus(duration_ms: float, speeds: Sequence[float]) -> list[dict[str, Any]]:
    """▶ Play / ❚❚ Pause / ⟲ Replay, and a row of speed buttons under them."""
    button = dict(font=dict(size=15), pad=dict(t=4, r=8, l=4, b=4))
    menus = [dict(type="buttons", direction="left", showactive=False, x=0.0, xanchor="left", y=-0.2,
                  yanchor="top", **button,
                  buttons=[dict(label="▶ Play", method="animate",
                                # before any frame was shown there is no current frame: Play starts at step 0
                                args=[None, _animation(duration_ms, fromcurrent=True)]),
                           dict(label="❚❚ Pause", method="animate", args=[[None], _animation(0)]),
                           # Play resumes from the current frame, so at the end it has nothing left to show.
                           dict(label="⟲ Replay", method="animate",
                                args=[None, _animation(duration_ms, fromcurrent=False)])])]
    if speeds:
        menus.append(dict(type="buttons", direction="left", showactive=False, x=0.0, xanchor="left", y=-0.31,
                          yanchor="top", **button,
                          buttons=[dict(label=f"▶ {fmt(v)}×", method="animate",
                                        args=[None, _animation(duration_ms / v, fromcurrent=True)])
                                   for v in speeds]))
    return menus


def _arrow_indices(t: TrajectoryTrace, max_arrows: int) -> np.ndarray:
    ok = np.flatnonzero(np.isfinite(t.probe_alpha) & np.isfinite(t.probe_beta)
                        & ((t.probe_alpha != t.alpha) | (t.probe_beta != t.beta)))
    if ok.size <= max_arrows:
        return ok
    return ok[np.unique(np.linspace(0, ok.size - 1, max_arrows).round().astype(int))]


@doc
def perturbation_figure(surface: Surface, trajectories: Sequence[TrajectoryTrace], *, max_arrows: int = 40,
                        log_scale: bool = False, colorscale: str = "Viridis", title: str | None = None,
                        uirevision: str | None = None) -> go.Figure:
    """Where each SAM-type step probed: θ_t and θ_t + e_t on the contour map, joined by arrows.

    Every θ → θ+e pair gets a segment; up to ``max_arrows`` per optimizer (evenly spread) also get an arrowhead
    (layout annotations are costly to draw). The segment is the perturbation's shadow on the plane: hover a probe
    for the in-plane shift and the full-space ‖e‖ (a short shadow of a long e means e leaves the plane).
    Trajectories without a probe are drawn as paths only.

    Args:
        {surface}
        {trajectories}
        max_arrows: arrowheads per optimizer (0 for segments only).
        {log_scale}
        {colorscale}
        {title}
        {uirevision}

    Returns:
        {returns}

    Raises:
        ValueError: no trajectory has a probe, ``max_arrows`` < 0, or as ``surface_figure``.
    """
    if isinstance(max_arrows, bool) or not isinstance(max_arrows, (int, np.integer)) or max_arrows < 0:
        raise ValueError(f"Invalid max_arrows: {max_arrows!r} (need an integer ≥ 0)")
    check_colorscale(colorscale)
    trajs = _check_trajectories(trajectories, required=True)
    if not any(t.has_probe for t in trajs):
        raise ValueError("Invalid trajectories: none has probe_alpha/probe_beta (θ + e) to draw")
    g = _geometry(surface, log_scale=log_scale)

    data: list[Any] = [_surface_trace(g, colorscale), _best_cell_trace(g)]
    annotations = []
    for i, t in enumerate(trajs):
        s = style(i)
        path = _path_trace(i, t, len(trajs))
        path.line.width = 0.6 * path.line.width  # thinner here: the arrows are what this view is about
        data.append(path)
        if not t.has_probe:
            continue
        nan = np.full(t.n, np.nan)
        seg_x = np.column_stack([t.alpha, t.probe_alpha, nan]).ravel()  # NaN breaks the line between pairs
        seg_y = np.column_stack([t.beta, t.probe_beta, nan]).ravel()
        data.append(go.Scatter(x=seg_x, y=seg_y, mode="lines", name=f"{t.label}: e", legendgroup=f"traj{i}",
                               showlegend=False, line=dict(color=s.color, width=1.5), hoverinfo="skip",
                               connectgaps=False, meta={"export": False}))
        data.append(_probe_trace(i, t))
        for k in _arrow_indices(t, int(max_arrows)):
            annotations.append(dict(x=t.probe_alpha[k], y=t.probe_beta[k], ax=t.alpha[k], ay=t.beta[k],
                                    xref="x", yref="y", axref="x", ayref="y", text="", showarrow=True,
                                    arrowhead=2, arrowsize=1.2, arrowwidth=1.5, arrowcolor=s.color, standoff=0))
    with_probe = [t.label for t in trajs if t.has_probe]
    alt = (_alt(g, trajs, "Contour map").rstrip(".")
           + f"; arrows from θ_t to the probe θ_t + e_t for {join_names(with_probe)}.")
    layout = base_layout(title=title or _default_title(g, ": perturbations θ → θ + e"),
                         uirevision=_uirevision("perturbation", g, uirevision), alt=alt,
                         **_plane_axes(g, trajs),
                         annotations=annotations)
    return go.Figure(data=data, layout=layout)
