"""What each view draws, computed from Settings and trained Runs as numpy records (no UI imports).

The pages call these functions (through caches) and hand the results to ``sam_viz.plots``; tests call them
directly to check that a figure's data equal the engine's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from . import landscape as L
from .config import Config
from .curvature import CurvatureTrace, over_training
from .data import TASKS, analytic_loss
from .hessian import MAX_DENSE_PARAMS, EigenResult, make_hvp, spectral_density, top_eigenvalues
from .models import split_parameters
from .records import Run
from .settings import Settings
from .train import lockstep, setup


def runs_key(configs: Sequence[Config]) -> str:
    """A stable key for a set of configs (primitive values only): the training cache's key."""
    return json.dumps([c.to_flat() for c in configs], sort_keys=True, default=str)


def train_all(configs: Sequence[Config], progress: Callable[[int, int], None], should_stop: Callable[[], bool]) -> list[Run]:
    """Train the compared configs side by side (``train.lockstep``): progress counts steps, and a stop leaves every
    run with the steps done so far, so no run is lost to an early Stop."""
    return lockstep(configs, progress=progress, should_stop=should_stop)


# ------------------------------------------------------------------------------------------------ loss surface


@dataclass(frozen=True, eq=False)
class Trajectory:
    """One run on the plane: snapshot steps, plane coordinates, off-plane distance, true and plane losses, and
    where its probes θ_t + e_t project (NaN where no probe exists)."""

    label: str
    step: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    off_plane: np.ndarray
    loss: np.ndarray
    plane_loss: np.ndarray
    probe_alpha: np.ndarray
    probe_beta: np.ndarray


@dataclass(frozen=True, eq=False)
class SurfaceScene:
    surface: L.Surface
    trajectories: list[Trajectory]
    analytic: bool
    note: str


def _extent(trajectories: Sequence[Trajectory]) -> float:
    values = np.concatenate([np.abs(np.concatenate([t.alpha, t.beta])) for t in trajectories])
    values = values[np.isfinite(values)]
    return float(values.max()) if values.size and values.max() > 0 else 1.0


def surface_scene(settings: Settings, runs: Sequence[Run], labels: Sequence[str], *,
                  progress: Callable[[int, int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> SurfaceScene:
    """The surface on the chosen plane with every run's trajectory and probes projected onto it.

    The grid is computed coarse to fine (``landscape.surfaces_progressive``): ``progress(points, total)`` follows
    each level, and a stop keeps the last complete level (a coarser grid, said in the note).
    """
    if not runs:
        raise ValueError("no runs to draw")
    if TASKS[settings.task].kind == "analytic":
        return _analytic_scene(settings, runs, labels)
    s = setup(runs[0].config)
    batch = (s.x_train, s.y_train)
    plane, note = _plane(settings, runs, s, batch)
    trajectories = [_project(plane, r, label, s, batch) for r, label in zip(runs, labels)]
    span = settings.span if plane.kind == "random" else settings.span * 1.25 * _extent(trajectories)
    total = settings.res ** 2
    surf = None
    for surf in L.surfaces_progressive(s.model, s.loss, batch, plane, span, settings.res, levels=3):
        if progress is not None:
            progress(surf.loss.size, total)
        if surf.loss.size < total and should_stop is not None and should_stop():
            note += f"; stopped early: a {surf.loss.shape[1]}×{surf.loss.shape[0]} preview of the grid"
            break
    return SurfaceScene(surf, trajectories, False, note)


def _plane(settings: Settings, runs: Sequence[Run], s, batch) -> tuple[L.Plane, str]:
    final = runs[0].final_weights
    kind = settings.plane
    if kind == "three_points":
        points = [r.final_weights for r in runs[:3]]
        if len(points) < 3:
            points = [runs[0].weights[0], *points]
        if len(points) == 3:
            try:
                plane = L.three_point_plane(*points)
                return plane, "Plane through " + ("θ₀ and the final weights of both runs" if len(runs) < 3 else "the final weights of the first three runs")
            except ValueError as err:
                return L.pca_plane([r.weights for r in runs]), f"{err}; showing the PCA plane instead"
        kind = "pca"
    if kind == "hessian":
        plane = L.hessian_plane(s.model, s.loss, batch, final)
        ev = plane.info["eigenvalues"]
        return plane, f"Top-2 Hessian eigenvectors at the first run's final weights (λ₁ = {ev[0]:.4g}, λ₂ = {ev[1]:.4g})"
    if kind == "random":
        return L.random_plane(s.model, settings.seed, origin=final), "Filter-normalised random directions (Li et al. 2018), seed = the run seed"
    try:
        plane = L.pca_plane([r.weights for r in runs])
    except ValueError:
        return L.random_plane(s.model, settings.seed, origin=final), "The trajectories span no plane; showing random directions"
    ev = plane.explained_variance
    return plane, f"PCA of the trajectories: the plane explains {100 * ev[0]:.1f}% + {100 * ev[1]:.1f}% of their variance"


def _finite_rows(run_: Run) -> np.ndarray:
    return np.all(np.isfinite(run_.weights), axis=1)


def _project(plane: L.Plane, r: Run, label: str, s, batch) -> Trajectory:
    ok = _finite_rows(r)
    proj = L.project(plane, r.weights[ok], s.model, s.loss, batch)
    probes = r.weights[ok] + np.nan_to_num(r.perturbations[ok], nan=0.0)
    has_probe = np.all(np.isfinite(r.perturbations[ok]), axis=1) & (np.abs(r.perturbations[ok]).sum(axis=1) > 0)
    probe = L.project(plane, probes)
    return Trajectory(label, r.snapshot_step[ok], proj.alpha, proj.beta, proj.off_plane, proj.true_loss, proj.plane_loss,
                      np.where(has_probe, probe.alpha, np.nan), np.where(has_probe, probe.beta, np.nan))


def _analytic_scene(settings: Settings, runs: Sequence[Run], labels: Sequence[str]) -> SurfaceScene:
    info = TASKS[settings.task]
    home_lo, home_hi = np.array([info.xlim[0], info.ylim[0]]), np.array([info.xlim[1], info.ylim[1]])
    # the window holds the task's region and the paths, but no more than its own size again on each side: a run
    # that diverged left for 1e30, where the loss overflows and the contour would show nothing
    size = home_hi - home_lo
    pts = np.concatenate([r.weights[_finite_rows(r)] for r in runs])
    lo = np.clip(np.minimum(pts.min(axis=0), home_lo), home_lo - size, home_lo)
    hi = np.clip(np.maximum(pts.max(axis=0), home_hi), home_hi, home_hi + size)
    pad = 0.05 * (hi - lo)
    surf = L.analytic_surface(settings.task, (lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1]),
                              settings.res)
    note = "The parameters are the plane: the contour is the exact loss f(w₁, w₂)"
    outside = []
    trajectories = []
    for r, label in zip(runs, labels):
        inside = np.all((r.weights >= lo - pad) & (r.weights <= hi + pad), axis=1)  # False for NaN rows too
        if not inside[_finite_rows(r)].all():
            outside.append(label)
        ok = inside
        w, e = r.weights[ok], r.perturbations[ok]
        with torch.no_grad():
            exact = analytic_loss(settings.task, torch.as_tensor(w)).numpy()
        probe = np.where(np.isfinite(e), w + e, np.nan)
        probe[np.abs(np.nan_to_num(e)).sum(axis=1) == 0] = np.nan
        trajectories.append(Trajectory(label, r.snapshot_step[ok], w[:, 0], w[:, 1], np.zeros(len(w)), exact, exact,
                                       probe[:, 0], probe[:, 1]))
    if outside:
        note += f"; {', '.join(outside)} left the drawn window: each path is drawn where it lies inside it"
    return SurfaceScene(surf, trajectories, True, note)


# ------------------------------------------------------------------------------------------------ decision boundary


@dataclass(frozen=True, eq=False)
class Boundary:
    xx: np.ndarray
    yy: np.ndarray
    probs: np.ndarray
    x_train: np.ndarray
    y_train: np.ndarray
    step: int


def decision_boundary(r: Run, snap: int = -1, resolution: int = 80) -> Boundary | None:
    """Class-1 probability (binary) or predicted class (more classes) of the model at a snapshot, on a grid
    over the 2-D inputs; None for tasks whose inputs are not 2-D."""
    s = setup(r.config)
    if s.dataset.kind != "classification" or s.dataset.input_dim != 2:
        return None
    idx = _snap_index(r, snap)
    x = s.dataset.x_train
    lo, hi = x.min(axis=0), x.max(axis=0)
    pad = 0.1 * (hi - lo)
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], resolution)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], resolution)
    xx, yy = np.meshgrid(xs, ys)
    grid = torch.as_tensor(np.stack([xx.ravel(), yy.ravel()], 1), dtype=s.x_train.dtype, device=s.device)
    params = split_parameters(s.model, torch.as_tensor(r.weights[idx], dtype=s.x_train.dtype, device=s.device))
    with torch.no_grad():
        logits = torch.func.functional_call(s.model, params, (grid,))
        probs = torch.softmax(logits, -1).cpu().numpy()
    field = probs[:, 1].reshape(xx.shape) if probs.shape[1] == 2 else probs.reshape(*xx.shape, probs.shape[1])
    return Boundary(xs, ys, field, x, s.dataset.y_train, int(r.snapshot_step[idx]))


def _snap_index(r: Run, snap: int) -> int:
    finite = np.nonzero(_finite_rows(r))[0]
    if snap < 0 or snap >= len(r.snapshot_step):
        return int(finite[-1])
    return int(snap) if _finite_rows(r)[snap] else int(finite[-1])


# ------------------------------------------------------------------------------------------------ Hessian


def exact_hessian(settings: Settings, runs: Sequence[Run]) -> bool:
    """Whether the Hessian views use the dense spectrum: asked for, and the model is small enough."""
    return settings.exact and runs[0].n_params <= MAX_DENSE_PARAMS


def curvature_curves(settings: Settings, runs: Sequence[Run], *, progress: Callable[[int, int], None] | None = None,
                     should_stop: Callable[[], bool] | None = None) -> list[CurvatureTrace]:
    """λ_max over training per run, about 25 snapshots each; progress counts snapshots over all runs and a stop
    keeps the snapshots evaluated (runs not reached get empty curves)."""
    every = max(1, math.ceil(len(runs[0].snapshot_step) / 25))
    return _per_run(runs, every, progress, should_stop, exact=exact_hessian(settings, runs))


def trace_curves(runs: Sequence[Run], *, progress: Callable[[int, int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> list[CurvatureTrace]:
    """Hutch++ tr H over training per run: ~99 products a point, so about 12 points per run."""
    every = max(1, math.ceil(len(runs[0].snapshot_step) / 12))
    return _per_run(runs, every, progress, should_stop, with_trace=True, lambda_max=False)


def _per_run(runs: Sequence[Run], every: int, progress, should_stop, **options) -> list[CurvatureTrace]:
    """``over_training`` of each run in turn with one progress count over all their snapshots."""
    counts = [len(set(range(0, len(r.snapshot_step), every)) | {len(r.snapshot_step) - 1}) for r in runs]
    out, offset = [], 0
    for r, count in zip(runs, counts):
        report = None if progress is None else (lambda done, _total, base=offset: progress(base + done, sum(counts)))
        out.append(over_training(r, every=every, progress=report, should_stop=should_stop, **options))
        offset += count
    return out


@dataclass(frozen=True, eq=False)
class HessianSpectra:
    """Per run: the eigenvalues at the snapshot, and the spectral density's grid and values."""

    spectra: list[EigenResult]
    density_grid: list[np.ndarray]
    density: list[np.ndarray]
    snapshot_step: int
    exact: bool
    n_params: int


def hessian_spectra(settings: Settings, runs: Sequence[Run], *, progress: Callable[[int, int], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> HessianSpectra:
    """Top-k (and the lowest) eigenvalues and the spectral density (stochastic Lanczos quadrature) of every run at
    the chosen snapshot. ``progress`` counts runs; ``should_stop`` is accepted for the job's signature (one run's
    spectrum takes seconds, and a partial spectrum is not one).

    Only this part depends on the snapshot and k, so the views cache it apart from the curves over training.
    """
    n_params = runs[0].n_params
    exact = exact_hessian(settings, runs)
    s = setup(runs[0].config)
    batch = (s.x_train, s.y_train)
    spectra, densities = [], []
    idx = _snap_index(runs[0], settings.snap)
    for i, r in enumerate(runs):
        op = make_hvp(s.model, s.loss, batch, weights=r.weights[_snap_index(r, settings.snap)])
        k = min(settings.k, n_params)
        spectra.append(top_eigenvalues(op, k=k, smallest=1 if n_params > k else 0, method="dense" if exact else "auto"))
        densities.append(spectral_density(op, iters=min(80, n_params)))
        if progress is not None:
            progress(i + 1, len(runs))
    return HessianSpectra(spectra, [d.grid for d in densities], [d.density for d in densities],
                          int(runs[0].snapshot_step[idx]), exact, n_params)


# ------------------------------------------------------------------------------------------------ sweep


def sweep_configs(settings: Settings) -> list[tuple[str, Config]]:
    """(label, base config) of each run that has both swept hyperparameters; others are skipped by the view."""
    out = []
    for label, config in zip(settings.labels, settings.configs()):
        names = set(config.hp)
        if settings.sx in names and settings.sy in names and settings.sx != settings.sy:
            out.append((label, config))
    return out
