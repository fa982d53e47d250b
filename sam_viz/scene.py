"""What each view draws, computed from Settings and trained Runs as numpy records (no UI imports).

The pages call these functions (through caches) and hand the results to ``sam_viz.plots``; tests call them
directly to check that a figure's data equal the engine's.
"""

from __future__ import annotations

import io
import json
import math
import re
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from . import landscape as L
from .config import Config
from .curvature import CurvatureEstimate, CurvatureTrace, estimate, interleaved
from .data import analytic_loss, task_info
from .hessian import MAX_DENSE_PARAMS, EigenResult, make_hvp, spectral_density, top_eigenvalues
from .models import split_parameters
from .optim import OPTIMIZERS
from .records import Run
from .settings import Settings
from .sweep import CONFIG_AXES, MAX_CELL_STEPS, Grid, axis_value, robustness, run_grid, width_axis_problem
from .sweep import METRICS as ROBUSTNESS_METRICS
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
    if task_info(settings.task).kind == "analytic":
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
    info = task_info(settings.task)
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
    class_names: tuple[str, ...] = ()  # the data's own names (an uploaded table's), empty for generated tasks
    feature_names: tuple[str, ...] = ()


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
    return Boundary(xs, ys, field, x, s.dataset.y_train, int(r.snapshot_step[idx]), s.dataset.class_names,
                    s.dataset.feature_names)


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
    return _per_run(runs, _every(runs, LAMBDA_POINTS), progress, should_stop, exact=exact_hessian(settings, runs))


def curvature_estimate(settings: Settings, runs: Sequence[Run], with_trace: bool = False) -> CurvatureEstimate:
    """What ``curvature_curves`` (or, ``with_trace``, ``trace_curves``) will cost, before it starts."""
    if with_trace:
        return estimate(runs, every=_every(runs, TRACE_POINTS), with_trace=True, lambda_max=False)
    return estimate(runs, every=_every(runs, LAMBDA_POINTS), exact=exact_hessian(settings, runs))


def trace_curves(runs: Sequence[Run], *, progress: Callable[[int, int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> list[CurvatureTrace]:
    """Hutch++ tr H over training per run: ~99 products a point, so about 12 points per run."""
    return _per_run(runs, _every(runs, TRACE_POINTS), progress, should_stop, with_trace=True, lambda_max=False)


LAMBDA_POINTS, TRACE_POINTS = 25, 12  # snapshots per run on the curves over training (a trace costs ~99 products)


def _every(runs: Sequence[Run], points: int) -> int:
    return max(1, math.ceil(len(runs[0].snapshot_step) / points))


def _per_run(runs: Sequence[Run], every: int, progress, should_stop, **options) -> list[CurvatureTrace]:
    """``over_training`` of every run, a snapshot of each in turn, with one progress count over all their snapshots
    (a stop leaves every run's curve over the same part of training)."""
    return interleaved(runs, every=every, progress=progress, should_stop=should_stop, **options)


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


AXIS_NAMES = {"rho": "ρ", "lr": "learning rate", "width": "width"}
MAX_SWEEP_VALUES = 9  # per axis, as the URL accepts (settings: 1 to 9 values); a 9 × 9 map stays legible
HEATMAP_FIELDS = {"test_acc": "final_test_acc", "test_loss": "final_test_loss", "train_loss": "final_train_loss",
                  "lambda_max": "lambda_max"}


def _axis_name(name: str) -> str:
    return AXIS_NAMES.get(name, name)


def _values_text(values: Sequence[float]) -> str:
    return ", ".join(f"{v:g}" for v in values)


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def parse_sweep_values(text: str, low: float, high: float, previous: Sequence[float],
                       max_values: int = MAX_SWEEP_VALUES, whole: bool = False) -> tuple[tuple[float, ...], str]:
    """The values a typed list of numbers stands for, and one note on what was changed ("" when nothing was).

    Numbers may be separated by commas, semicolons or spaces. Words and NaN/inf are left out, values outside
    [low, high] clamped, repeats kept once, and only the first ``max_values`` distinct values used; the values are
    returned sorted. When nothing usable is left, ``previous`` stays. The note is a single sentence however many
    values were changed, e.g. "Used 0.01, 0.1: 'abc' is not a number."

    Args:
        text: what was typed.
        low, high: the valid range.
        previous: the values in use before (kept when the text holds none).
        max_values: the most values an axis takes.
        whole: the axis takes whole numbers (a width): others are rounded.

    Returns:
        (values, note).
    """
    words = [w for w in re.split(r"[,;\s]+", str(text).strip()) if w]
    bad, infinite, numbers = [], [], []
    for word in words:
        try:
            number = float(word)
        except ValueError:
            bad.append(word)
            continue
        (numbers if math.isfinite(number) else infinite).append(number if math.isfinite(number) else word)
    fractional = sum(n != round(n) for n in numbers) if whole else 0
    if whole:
        numbers = [float(round(n)) for n in numbers]
    below, above = sum(n < low for n in numbers), sum(n > high for n in numbers)
    clamped = [min(max(n, low), high) for n in numbers]
    distinct = list(dict.fromkeys(clamped))
    repeats = len(numbers) - len(set(numbers))
    problems = []
    if bad:
        shown = ", ".join(repr(w) for w in bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        problems.append(f"{shown} {'is not a number' if len(bad) == 1 else 'are not numbers'}")
    if infinite:
        shown = ", ".join(repr(w) for w in infinite[:3]) + (f" and {len(infinite) - 3} more" if len(infinite) > 3 else "")
        problems.append(f"{shown} {'is not a finite number' if len(infinite) == 1 else 'are not finite numbers'}")
    if fractional:
        problems.append(_count(fractional, "value rounded to a whole number", "values rounded to whole numbers"))
    if below:
        problems.append(f"{_count(below, 'value', 'values')} below {low:g} raised to {low:g}")
    if above:
        problems.append(f"{_count(above, 'value', 'values')} above {high:g} lowered to {high:g}")
    if repeats:
        problems.append(f"{_count(repeats, 'repeated value', 'repeated values')} kept once")
    if len(distinct) > max_values:
        problems.append(f"only the first {max_values} of {len(distinct)} values are used (at most {max_values} per "
                        "axis)")
        distinct = distinct[:max_values]
    if not words:
        problems.append("the box was empty")
    elif not distinct and not problems:
        problems.append("no usable number was given")
    values = tuple(sorted(distinct)) if distinct else tuple(previous)
    return values, (f"Used {_values_text(values)}: {'; '.join(problems)}." if problems else "")


@dataclass(frozen=True)
class SweepPlan:
    """What the sensitivity view can sweep.

    Attributes:
        entries: (label, base config) of each run that is swept.
        skipped: (label, reason) of each run that is not, e.g. ("SGD", "has no ρ hyperparameter").
        problem: why nothing at all can be swept ("" when the grid itself is fine).
    """

    entries: list[tuple[str, Config]]
    skipped: list[tuple[str, str]]
    problem: str

    @property
    def message(self) -> str:
        """One sentence for the user when nothing is swept ("" otherwise)."""
        if self.entries:
            return ""
        if self.problem:
            return self.problem
        reasons = "; ".join(f"{label} {reason}" for label, reason in self.skipped)
        return f"None of the chosen optimizers can be swept: {reasons}."


def sweep_plan(settings: Settings) -> SweepPlan:
    """The runs of ``settings`` that have both swept hyperparameters over the whole grid, and why others don't."""
    sx, sy = settings.sx, settings.sy
    if sx == sy:
        return SweepPlan([], [], f"x and y must be different hyperparameters (both are {_axis_name(sx)}): choose "
                                 "another hyperparameter for one axis.")
    n_cells = settings.sseeds * len(settings.sxv) * len(settings.syv)
    if n_cells * settings.steps > MAX_CELL_STEPS:
        return SweepPlan([], [], f"{n_cells} cells × {settings.steps} steps is more than the {MAX_CELL_STEPS:,} "
                                 "cell-steps a sweep may train: use fewer values, seeds or steps.")
    try:
        configs = settings.configs()
    except ValueError as err:
        return SweepPlan([], [], f"These settings cannot be trained: {err}")
    for name, values in ((sx, settings.sxv), (sy, settings.syv)):
        problem = width_axis_problem(configs[0], values) if name == "width" else ""  # the model is every run's
        if problem:
            return SweepPlan([], [], f"The width cannot be swept: {problem}.")
    entries, skipped = [], []
    for label, config in zip(settings.labels, configs):
        reason = _sweep_reason(config, ((sx, settings.sxv), (sy, settings.syv)))
        if reason:
            skipped.append((label, reason))
        else:
            entries.append((label, config))
    return SweepPlan(entries, skipped, "")


def _sweep_reason(config: Config, axes: Sequence[tuple[str, Sequence[float]]]) -> str:
    """Why ``config`` cannot be swept over ``axes`` ("" when it can)."""
    specs = OPTIMIZERS[config.optimizer].hparams
    missing = [_axis_name(name) for name, _ in axes if name not in specs and name not in CONFIG_AXES]
    if missing:
        return f"has no {' or '.join(missing)} hyperparameter"
    for name, values in axes:
        if name == "width":
            problem = width_axis_problem(config, values)
            if problem:
                return f"cannot be swept over widths: {problem}"
            continue
        spec = specs[name]
        if spec.kind != "float":
            return f"cannot sweep {_axis_name(name)} (not a number)"
        outside = [v for v in values if not spec.low <= v <= spec.high]
        if outside:
            return (f"takes {_axis_name(name)} only in [{spec.low:g}, {spec.high:g}], not "
                    f"{_values_text(outside)}")
    (x, xv), (y, yv) = axes
    for a in (min(xv), max(xv)):
        for b in (min(yv), max(yv)):
            try:
                config.replace(**{x: axis_value(x, a), y: axis_value(y, b)})
            except ValueError as err:
                return f"cannot train {_axis_name(x)} = {a:g}, {_axis_name(y)} = {b:g}: {err}"
    return ""


def sweep_configs(settings: Settings) -> list[tuple[str, Config]]:
    """(label, base config) of each run that has both swept hyperparameters; others are skipped by the view."""
    return sweep_plan(settings).entries


def grid_key(config: Config, x: tuple[str, Sequence[float]], y: tuple[str, Sequence[float]], seeds: int) -> str:
    """A stable key for one optimizer's grid (primitive values only)."""
    return json.dumps([config.to_flat(), x[0], list(x[1]), y[0], list(y[1]), seeds], sort_keys=True, default=str)


def sweep_all(entries: Sequence[tuple[str, Config]], x: tuple[str, Sequence[float]], y: tuple[str, Sequence[float]],
              seeds: int, known: Sequence[Grid | None], progress: Callable[[int, int], None],
              should_stop: Callable[[], bool]) -> list[tuple[str, Grid]]:
    """Every entry's grid with one progress count over all of them; a stop keeps the grids (and cells) done so far.

    Args:
        entries: (label, base config) per optimizer.
        x, y: (name, values) of the columns and rows.
        seeds: seeds per cell.
        known: per entry a grid computed before (taken as it is) or None (trained now).
        progress: ``progress(done, total)`` in cell-steps over all entries.
        should_stop: polled between steps; True ends the sweep.

    Returns:
        (label, grid) per entry reached; after a stop the last one is partial (``grid.stopped``) and later entries
        are missing.
    """
    per_cell = seeds * len(x[1]) * len(y[1])
    total = sum(per_cell * config.steps for _, config in entries)
    done: list[tuple[str, Grid]] = []
    offset = 0
    progress(0, total)  # the bar shows the whole sweep's size at once
    for (label, config), grid in zip(entries, known):
        if grid is None:
            # one fixed strategy: a timing-based choice would make a shared link's map depend on machine load; on
            # the Ray cluster of RAY_ADDRESS when the app was started with it
            grid = run_grid(config, x=(x[0], list(x[1])), y=(y[0], list(y[1])), seeds=seeds, strategy="batched",
                            progress=lambda d, _t, *_, base=offset: progress(base + d, total), should_stop=should_stop,
                            backend="auto")
        done.append((label, grid))
        if grid.stopped:  # the count stays where the stop left it
            break
        offset += per_cell * config.steps
        progress(offset, total)
    return done


PROBE_STEPS = 3  # steps of the real grid timed before a sweep (the first is a warm-up)


def sweep_estimate(config: Config, x: tuple[str, Sequence[float]], y: tuple[str, Sequence[float]], seeds: int,
                   probe_steps: int = PROBE_STEPS) -> float:
    """Seconds the batched engine should need to train this grid on this machine now (λ_max left out).

    Times ``probe_steps`` steps of the very grid the sweep trains (same cells, same chunks) and scales the median
    step after the first (a warm-up) to ``config.steps``; the probe costs about ``probe_steps / config.steps`` of
    the sweep. A busy machine gives a longer estimate, as it gives a longer sweep.
    """
    stamps: list[tuple[float, int]] = []
    probe = config.replace(steps=min(probe_steps, config.steps), snapshot_every=1)
    started = time.perf_counter()
    run_grid(probe, x=(x[0], list(x[1])), y=(y[0], list(y[1])), seeds=seeds, strategy="batched", lambda_max=False,
             progress=lambda d, _t, *_: stamps.append((time.perf_counter(), d)))
    total = time.perf_counter() - started
    n_cells = seeds * len(x[1]) * len(y[1])
    times, done = np.array([t for t, _ in stamps]), np.array([d for _, d in stamps])
    if len(times) < 3:
        return total / max(1, probe.steps) * config.steps
    per_cell_step = float(np.median(np.diff(times[1:]) / np.maximum(np.diff(done[1:]), 1)))
    setup_s = max(0.0, total - per_cell_step * n_cells * probe.steps)
    return per_cell_step * n_cells * config.steps + setup_s


@dataclass(frozen=True, eq=False)
class SweepPanel:
    """One optimizer's heatmap: the seed mean and std of a final metric per cell, diverged seeds left out.

    Attributes:
        mean, std: (ny, nx) over the seeds that did not diverge (NaN where none did, or the cell was not computed).
        diverged: (ny, nx) every seed of the cell diverged; n_diverged: (ny, nx) how many did.
    """

    mean: np.ndarray
    std: np.ndarray
    diverged: np.ndarray
    n_diverged: np.ndarray


def sweep_panel(grid: Grid, metric: str) -> SweepPanel:
    """The heatmap of ``metric`` ("test_acc", "test_loss", "train_loss" or "lambda_max") for one grid."""
    values = np.array(getattr(grid, HEATMAP_FIELDS[metric]), dtype=np.float64)
    kept = np.where(grid.diverged, np.nan, values)
    counted = np.isfinite(kept).sum(axis=0)
    total = np.where(np.isfinite(kept), kept, 0.0).sum(axis=0)
    mean = np.where(counted > 0, total / np.maximum(counted, 1), np.nan)
    squares = np.where(np.isfinite(kept), (kept - mean) ** 2, 0.0).sum(axis=0)
    std = np.where(counted > 0, np.sqrt(squares / np.maximum(counted, 1)), np.nan)
    return SweepPanel(mean, std, grid.diverged.all(axis=0), grid.diverged.sum(axis=0))


def heatmap_metric(grids: Sequence[tuple[str, Grid]], metric: str) -> str:
    """The metric the heatmaps show: ``metric``, or the train loss where it is a test metric and the task has no
    test set (analytic losses)."""
    if metric.startswith("test") and not any(np.isfinite(g.final_test_loss).any() for _, g in grids):
        return "train_loss"
    return metric


def robustness_metric(grids: Sequence[tuple[str, Grid]], metric: str) -> str:
    """The metric the robustness table summarises: the heatmap's when it is a final metric, else the test
    accuracy; the train loss for tasks without a test set."""
    # λ_max is a heatmap metric but not a robustness one (robustness() takes the final train/test metrics)
    return heatmap_metric(grids, metric if metric in ROBUSTNESS_METRICS else "test_acc")


def robustness_rows(grids: Sequence[tuple[str, Grid]], metric: str) -> list[dict[str, object]]:
    """One row per optimizer: mean and spreads of ``metric`` over the grid (``sweep.robustness``)."""
    rows = []
    for label, g in grids:
        r = robustness(g, metric)
        rows.append({"optimizer": label, "metric": metric, "mean": r.mean, "std over cells": r.std_cells,
                     "std over seeds": r.std_seeds if g.seeds > 1 else math.nan, "std over all values": r.std,
                     "best cell": r.best, "cells within 1% of best": r.share_near_best,
                     "diverged": f"{r.n_diverged}/{r.n_values}", "cells": int(g.shape[1] * g.shape[2]),
                     "seeds": g.seeds, "stopped": g.stopped, "strategy": g.strategy,
                     "seconds": round(g.wall_time, 2)})
    return rows


def sweep_zip(grids: Sequence[tuple[str, Grid]]) -> bytes:
    """A zip of each grid as ``grid{k}_{optimizer}.npz`` (every array, ``Grid.load`` reads it) and ``.json``
    (``Grid.summary()`` plus the label)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for k, (label, g) in enumerate(grids):
            npz = io.BytesIO()
            g.save(npz)
            zf.writestr(f"grid{k}_{g.config.optimizer}.npz", npz.getvalue())
            zf.writestr(f"grid{k}_{g.config.optimizer}.json", json.dumps({"label": label, **g.summary()}, indent=2))
    return buffer.getvalue()


def sweep_cells(grids: Sequence[tuple[str, Grid]]) -> pd.DataFrame:
    """Every cell of every grid, one row each (``Grid.to_frame``) with the optimizer's label first."""
    frames = [g.to_frame().assign(optimizer=label) for label, g in grids]
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    return out[["optimizer", *[c for c in out.columns if c != "optimizer"]]]
