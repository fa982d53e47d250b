"""Radius-sensitivity sweeps: train a (seed × y × x) grid of hyperparameter cells and summarise how robust it is."""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import math
import multiprocessing
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .config import Config
from .hessian import top_eigenvalues
from .models import MAX_WIDTH
from .optim import OPTIMIZERS
from .records import Run, json_ready, output_path
from .train import ProgressFn, Setup, StopFn, group_key, resolve_device, run, setup, train

# Config fields a grid can sweep besides the optimizer's float hyperparameters. Cells of different widths have
# parameters of different shapes, so they cannot share a stack: each width is trained as its own stacked calls.
CONFIG_AXES = ("width",)
MAX_AXIS_VALUES = 15  # values per axis: a 15 × 15 heat map is the largest the view draws legibly
MAX_SEEDS = 5
MAX_CELL_STEPS = 1_000_000  # cells × steps: bounds the per-step records (11 float64 series: 88 MB) and the time
STRATEGIES = ("auto", "batched", "process", "sequential")
BACKENDS = ("local", "ray", "auto")

# Per-step series of a Grid (a subset of ``records.STEP_FIELDS``: the full-gradient diagnostics are left out,
# they would cost a full-batch backward per cell and step in minibatch training).
STEP_FIELDS = ("batch_loss", "train_loss", "train_acc", "test_loss", "test_acc", "grad_norm", "perturbed_grad_norm",
               "perturbed_loss", "eps_norm", "effective_rho", "effective_lr")
FINAL_FIELDS = ("final_train_loss", "final_train_acc", "final_test_loss", "final_test_acc")
CELL_FIELDS = (*FINAL_FIELDS, "lambda_max", "lambda_max_residual", "n_steps", "diverged", "diverged_step",
               "total_grad_evals")
METRICS = ("train_acc", "test_acc", "train_loss", "test_loss")

# Memory model of one batched cell, in tensor elements: ~12 parameter-sized tensors (θ, s, e, θ + e, g and up to
# six optimizer-state tensors), and each layer output kept ~3 times by the backward pass (activation, its
# gradient, a temporary), twice per step for SAM types.
_PARAM_COPIES = 12
_BACKWARD_COPIES = 6
PROBE_STEPS = 6  # steps timed per strategy by "auto" (the first is a warm-up)
PROCESS_STARTUP_S = 4.0  # spawning workers that import torch and sam_viz, measured ~3-4 s on 2 CPU cores


# ------------------------------------------------------------------------------------------------------ records


@dataclass(frozen=True, eq=False)
class Grid:
    """A trained grid. Cell (s, i, j) is seed ``config.seed + s``, ``y_name = y_values[i]``, ``x_name = x_values[j]``.

    Per-step arrays have shape (seeds, len(y), len(x), config.steps); entry t describes step t at θ_t exactly as
    the same field of ``Run`` does, and is NaN where not computed: between ``eval_every`` steps, after a cell
    diverged (its last entry is the diverged step: batch loss and evaluation only), after a stop, and for
    one-pass methods' ``perturbed_loss``.

    Attributes:
        config: the base Config (its own values of x_name and y_name are not used).
        x_name, y_name: the swept hyperparameters; x_values (nx,), y_values (ny,) their values (float64).
        seeds: number of seeds; cell seeds are ``config.seed + s``.
        batch_loss, train_loss, train_acc, test_loss, test_acc, grad_norm, perturbed_grad_norm, perturbed_loss,
            eps_norm, effective_rho, effective_lr: (seeds, ny, nx, steps) float64, see ``Run``.
        final_train_loss, final_train_acc, final_test_loss, final_test_acc: (seeds, ny, nx) at θ_n, the
            parameters after the last step; NaN for diverged cells and cells never started.
        lambda_max: (seeds, ny, nx) top Hessian eigenvalue of the full train loss at θ_n (Lanczos,
            ``hessian.top_eigenvalues``); NaN for diverged cells, when not requested, or after a stop.
        lambda_max_residual: (seeds, ny, nx) its Ritz residual ‖H q − λ q‖.
        n_steps: (seeds, ny, nx) int64 steps completed (the diverged step counts).
        diverged: (seeds, ny, nx) bool, the batch loss became NaN/inf; diverged_step: that step, -1 otherwise.
        total_grad_evals: (seeds, ny, nx) the gradient evaluations each cell's training took, in units of its
            batch (``Run.grad_evals`` summed): the cost axis; NaN in grids saved before it existed.
        stopped: stopped early on request (what was computed is kept; cells never started have n_steps 0).
        wall_time: seconds for the whole grid (λ_max included).
        strategy: "batched", "process" or "sequential": what computed it; "ray": batched chunks on a Ray cluster.
        device: the device that ran it.
        failed: (seeds, ny, nx) bool, cells that could not be trained (a Ray chunk whose retries were spent); their
            arrays are NaN and n_steps 0. All False in grids saved before it existed.
        failure: why those cells failed ("" when none did).
    """

    config: Config
    x_name: str
    x_values: np.ndarray
    y_name: str
    y_values: np.ndarray
    seeds: int
    batch_loss: np.ndarray
    train_loss: np.ndarray
    train_acc: np.ndarray
    test_loss: np.ndarray
    test_acc: np.ndarray
    grad_norm: np.ndarray
    perturbed_grad_norm: np.ndarray
    perturbed_loss: np.ndarray
    eps_norm: np.ndarray
    effective_rho: np.ndarray
    effective_lr: np.ndarray
    final_train_loss: np.ndarray
    final_train_acc: np.ndarray
    final_test_loss: np.ndarray
    final_test_acc: np.ndarray
    lambda_max: np.ndarray
    lambda_max_residual: np.ndarray
    n_steps: np.ndarray
    diverged: np.ndarray
    diverged_step: np.ndarray
    stopped: bool
    wall_time: float
    strategy: str
    device: str
    total_grad_evals: np.ndarray = None  # type: ignore[assignment]  # NaN for grids saved before it existed
    failed: np.ndarray = None  # type: ignore[assignment]  # all False for grids saved before it existed
    failure: str = ""

    def __post_init__(self) -> None:
        if self.total_grad_evals is None:
            object.__setattr__(self, "total_grad_evals", np.full(self.n_steps.shape, np.nan))
        if self.failed is None:
            object.__setattr__(self, "failed", np.zeros(self.n_steps.shape, dtype=bool))

    @property
    def shape(self) -> tuple[int, int, int]:
        """(seeds, len(y_values), len(x_values))."""
        return (self.seeds, len(self.y_values), len(self.x_values))

    @property
    def seed_values(self) -> np.ndarray:
        """(seeds,) the seed of each slice."""
        return self.config.seed + np.arange(self.seeds)

    def cell_config(self, s: int, i: int, j: int) -> Config:
        """The Config of cell (s, i, j): what ``train.run`` would train."""
        return _cell_config(self.config, self.x_name, float(self.x_values[j]), self.y_name, float(self.y_values[i]), s)

    def run_cell(self, s: int, i: int, j: int, **kwargs: Any) -> Run:
        """Train cell (s, i, j) again as a single run (snapshots, full-gradient cosines and all).

        Args:
            s: seed index; i: index into y_values; j: index into x_values.
            **kwargs: passed to ``train.run`` (progress, should_stop).
        """
        return run(self.cell_config(s, i, j), **kwargs)

    def to_frame(self) -> pd.DataFrame:
        """One row per cell: seed, i, j, the two hyperparameters, final metrics, λ_max, divergence, steps."""
        s, i, j = (a.reshape(-1) for a in np.indices(self.shape))
        columns: dict[str, np.ndarray] = {
            "seed": self.seed_values[s], "i": i, "j": j,
            self.y_name: self.y_values[i], self.x_name: self.x_values[j],
        }
        columns.update({name: getattr(self, name).reshape(-1) for name in CELL_FIELDS})
        return pd.DataFrame(columns)

    def to_csv(self, path: str | Path) -> Path:
        """Write ``to_frame()`` as CSV (NaN as empty fields)."""
        path = Path(path)
        self.to_frame().to_csv(path, index=False)
        return path

    def summary(self) -> dict[str, Any]:
        """A JSON-ready record of the grid: config (flat), axes, seeds, per-cell final metrics and the status.

        The per-cell arrays are nested lists indexed [seed][i_y][j_x]; NaN/inf are ``None`` (standard JSON).
        """
        cells = {name: getattr(self, name) for name in CELL_FIELDS}
        return json_ready({
            "config": self.config.to_flat(), "x_name": self.x_name, "x_values": self.x_values,
            "y_name": self.y_name, "y_values": self.y_values, "seeds": self.seeds,
            "seed_values": self.seed_values, "shape": list(self.shape), "stopped": self.stopped,
            "wall_time": self.wall_time, "strategy": self.strategy, "device": self.device, "failure": self.failure,
            "failed": self.failed, **cells,
        })

    def save(self, path: str | Path | BinaryIO) -> Path | BinaryIO:
        """Write every array to ``path`` (``.npz``, or an open binary file) with the config and scalars as JSON."""
        arrays = {name: getattr(self, name) for name in ("x_values", "y_values", *STEP_FIELDS, *CELL_FIELDS, "failed")}
        meta = {"config": self.config.to_flat(), "x_name": self.x_name, "y_name": self.y_name, "seeds": self.seeds,
                "stopped": self.stopped, "wall_time": self.wall_time, "strategy": self.strategy, "device": self.device,
                "failure": self.failure}
        if hasattr(path, "write"):
            np.savez_compressed(path, meta=np.array(json.dumps(meta)), **arrays)
            return path
        path = Path(path)
        np.savez_compressed(path, meta=np.array(json.dumps(meta)), **arrays)
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")

    @classmethod
    def load(cls, path: str | Path | BinaryIO) -> Grid:
        """Read a grid written by ``save`` (a path or an open binary file)."""
        with np.load(path if hasattr(path, "read") else Path(path), allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {name: data[name] for name in data.files if name != "meta"}
        return cls(config=Config.from_flat(meta.pop("config")), **meta, **arrays)


@dataclass(frozen=True)
class Robustness:
    """How much a grid's final metric depends on its hyperparameters (the radius-sensitivity summary).

    Diverged cells count as failures (accuracy 0, loss inf); cells never computed (after a stop) are left out.

    Attributes:
        metric: "test_acc", "train_acc", "test_loss" or "train_loss"; higher_is_better: True for accuracies.
        mean, std: over every cell and seed (failures included; inf for a loss when any cell diverged).
        std_cells: std over the cells of the seed-averaged values (the spread due to hyperparameters).
        std_seeds: std over seeds of the grid-mean (the spread due to the seed; 0 with one seed).
        mean_converged, std_converged: mean and std over the values of cells that did not diverge.
        best: the best seed-averaged cell value.
        share_near_best: share of cells whose seed-averaged value is within 1% of ``best``: ≥ best − 0.01 for
            accuracies, ≤ best + 0.01·|best| for losses (best·1.01 when best ≥ 0).
        n_values: cell × seed values counted; n_diverged: how many of them diverged; share_diverged their share.
        cell_mean, cell_std: (ny, nx) seed mean and std per cell (failures included).
    """

    metric: str
    higher_is_better: bool
    mean: float
    std: float
    std_cells: float
    std_seeds: float
    mean_converged: float
    std_converged: float
    best: float
    share_near_best: float
    n_values: int
    n_diverged: int
    share_diverged: float
    cell_mean: np.ndarray
    cell_std: np.ndarray

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready scalars (the per-cell arrays left out)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("cell_mean", "cell_std")}


def robustness(grid: Grid, metric: str = "test_acc") -> Robustness:
    """Mean ± std of a final metric over the grid's cells and seeds, and the share of cells near the best.

    Args:
        grid: a trained grid.
        metric: "test_acc", "train_acc", "test_loss" or "train_loss" (the ``final_`` value of each cell).

    Returns:
        A ``Robustness``; NaN statistics when no cell was computed or the task has no such metric.

    Raises:
        ValueError: an unknown metric.
    """
    if metric not in METRICS:
        raise ValueError(f"Invalid metric: {metric!r}; valid: {', '.join(METRICS)}")
    higher = metric.endswith("acc")
    values = np.array(getattr(grid, f"final_{metric}"), dtype=np.float64)
    values[grid.diverged] = 0.0 if higher else math.inf
    counted = ~np.isnan(values)  # computed cells (diverged ones included); a stop leaves the rest NaN
    return _summarise(metric, higher, values, counted, grid.diverged)


def _summarise(metric: str, higher: bool, values: np.ndarray, counted: np.ndarray, diverged: np.ndarray) -> Robustness:
    n, n_div = int(counted.sum()), int((diverged & counted).sum())
    cell_mean = np.array([_mean(values[:, i, j][counted[:, i, j]]) for i, j in np.ndindex(values.shape[1:])])
    cell_std = np.array([_std(values[:, i, j][counted[:, i, j]]) for i, j in np.ndindex(values.shape[1:])])
    seed_means = np.array([_mean(values[s][counted[s]]) for s in range(values.shape[0]) if counted[s].any()])
    known = ~np.isnan(cell_mean)
    best = (max if higher else min)(cell_mean[known], default=math.nan)
    if higher:
        near = cell_mean[known] >= best - 0.01
    else:
        near = cell_mean[known] <= best + 0.01 * abs(best) if math.isfinite(best) else np.zeros(known.sum(), bool)
    converged = values[counted & ~diverged]
    shape = values.shape[1:]
    return Robustness(
        metric=metric, higher_is_better=higher, mean=_mean(values[counted]), std=_std(values[counted]),
        std_cells=_std(cell_mean[known]), std_seeds=_std(seed_means), mean_converged=_mean(converged),
        std_converged=_std(converged), best=float(best), share_near_best=_mean(near.astype(float)),
        n_values=n, n_diverged=n_div, share_diverged=n_div / n if n else math.nan,
        cell_mean=cell_mean.reshape(shape), cell_std=cell_std.reshape(shape),
    )


def _mean(a: np.ndarray) -> float:
    """Mean without numpy's empty-slice warning; inf when any value is inf (a diverged loss)."""
    if a.size == 0:
        return math.nan
    return math.inf if np.isinf(a).any() else float(a.mean())


def _std(a: np.ndarray) -> float:
    """Population std; inf when any value is inf (the spread then has no finite value)."""
    if a.size == 0:
        return math.nan
    return math.inf if np.isinf(a).any() else float(a.std())


# ------------------------------------------------------------------------------------------------------ the grid


@dataclass(frozen=True)
class _Plan:
    """A validated grid request; ``cells`` lists the cell configs in flat (s, i, j) order."""

    base: Config
    x_name: str
    x_values: np.ndarray
    y_name: str
    y_values: np.ndarray
    seeds: int
    cells: tuple[Config, ...]

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.seeds, len(self.y_values), len(self.x_values))

    @property
    def steps(self) -> int:
        return self.base.steps


def _cell_config(base: Config, x_name: str, x: float, y_name: str, y: float, s: int) -> Config:
    return base.replace(**{x_name: axis_value(x_name, x), y_name: axis_value(y_name, y)}, seed=base.seed + s)


def axis_value(name: str, value: float) -> float | int:
    """A swept value as its Config takes it: the width is a whole number (the grid keeps its values as floats)."""
    return int(round(value)) if name in CONFIG_AXES else value


def width_axis_problem(config: Config, values: Sequence[float]) -> str:
    """Why ``config`` cannot be swept over these widths ("" when it can): only an MLP with hidden layers has a
    width, and a width is a whole number in [1, ``MAX_WIDTH``]."""
    if config.model != "mlp":
        return f"the {config.model} model has no width to sweep (only the MLP has)"
    if config.depth == 0:
        return "an MLP without hidden layers (depth 0) has no width to sweep"
    bad = [v for v in values if not (math.isfinite(v) and v == round(v) and 1 <= v <= MAX_WIDTH)]
    if bad:
        return (f"width takes whole numbers in [1, {MAX_WIDTH}], not {', '.join(f'{v:g}' for v in bad)}")
    return ""


def run_grid(base_config: Config, x: tuple[str, Sequence[float]] = ("rho", (0.01, 0.05, 0.1)),
             y: tuple[str, Sequence[float]] = ("lr", (0.01, 0.1, 1.0)), seeds: int = 1, *,
             progress: ProgressFn | None = None, should_stop: StopFn | None = None, strategy: str = "auto",
             memory_budget_mb: float = 512, lambda_max: bool = True, backend: str = "local",
             address: str | None = None) -> Grid:
    """Train every cell of a hyperparameter grid and record each as ``train.run`` would.

    Cell (s, i, j) is ``base_config.replace(**{x_name: x[j], y_name: y[i]}, seed=base_config.seed + s)`` and gives
    the numbers ``train.run`` gives for that config, to rounding (float64 ~1e-10, float32 ~1e-5, as long as the
    cell's dynamics do not amplify round-off: large ρ·η runs are chaotic and any two implementations drift apart).
    Three strategies compute it:

    * "batched": a chunk of cells is one stacked ``train.train`` call (the engine's only training loop): their
      parameters are stacked along a leading "runs" dimension, ``vmap`` takes every cell's gradient in one call,
      and the optimizer's step program updates all of them with the swept hyperparameters as (R,) tensors. A
      cell whose loss turns NaN/inf is recorded, then dropped from the stack (frozen); the others go on unchanged.
    * "process": a pool of worker processes, each running ``train.run`` on one cell at a time.
    * "sequential": ``train.run`` on each cell in turn.

    "auto" takes "batched" on CUDA, "sequential" for one cell, and otherwise the fastest by a short timing of
    each on this model (``choose_strategy``, cached per model size and device).

    The "ray" backend sends each batched chunk to a Ray cluster as one task (``ray_backend``): configs go out,
    numpy arrays come back, and every cell has the numbers of the local backend. Ray is imported only then.

    Args:
        base_config: everything but the two swept hyperparameters and the seed offset.
        x: (name, values) of the columns: a float hyperparameter of ``base_config.optimizer``, or "width" (the
            MLP's hidden width: whole numbers in [1, ``MAX_WIDTH``]; each width is trained as its own stack).
        y: (name, values) of the rows.
        seeds: seeds per cell, ``base_config.seed + s`` for s < seeds (θ_0 and minibatch order follow the seed).
        progress: called as ``progress(done, total, info)`` in cell-steps (total = cells × steps), after every
            step (batched, sequential), every finished cell (process) or chunk (Ray); info["phase"] is "train" or
            "lambda_max".
        should_stop: polled before every step (or between cells); True ends the grid, keeping what was computed
            (on Ray: the finished chunks; the others are cancelled).
        strategy: "auto", "batched", "process" or "sequential" (local backend; Ray's chunks are batched); the
            numbers are the same to rounding.
        memory_budget_mb: memory a batched chunk of cells may use (sets the chunk size).
        lambda_max: compute each cell's top Hessian eigenvalue at θ_n on the full train set.
        backend: "local" (this machine), "ray" (a Ray cluster) or "auto" (Ray when ``address`` or the
            ``RAY_ADDRESS`` environment variable is set, else local).
        address: the Ray cluster's HOST:PORT; None uses ``RAY_ADDRESS``, or starts Ray inside this process.

    Returns:
        The Grid (numpy arrays only). On Ray, cells whose chunk could not be trained are ``Grid.failed``.

    Raises:
        ValueError: an axis that is not a float hyperparameter of the optimizer nor "width" (or a width axis on a
            model without one), a value outside its range,
            more than ``MAX_AXIS_VALUES`` values per axis or ``MAX_SEEDS`` seeds, more than ``MAX_CELL_STEPS``
            cells × steps, an unknown strategy or backend, an address for the local backend, or a budget ≤ 0.
            Divergence never raises: it is recorded.
    """
    plan = _plan(base_config, x, y, seeds)
    if strategy not in STRATEGIES:
        raise ValueError(f"Invalid strategy: {strategy!r}; valid: {', '.join(STRATEGIES)}")
    if not memory_budget_mb > 0:
        raise ValueError(f"Invalid memory_budget_mb: {memory_budget_mb!r} (must be > 0)")
    started = time.perf_counter()
    sink = _Sink(len(plan.cells), plan.steps)
    if resolve_backend(backend, address) == "ray":
        from . import ray_backend  # only here: without Ray requested, ray is never imported

        report = _Progress(progress, len(plan.cells) * plan.steps)
        device = ray_backend.train_grid(plan, sink, report, should_stop, memory_budget_mb, lambda_max, address)
        return sink.grid(plan, time.perf_counter() - started, "ray", device)
    chosen = (choose_strategy(_costliest(plan), len(plan.cells), memory_budget_mb)[0] if strategy == "auto"
              else strategy)
    report = _Progress(progress, len(plan.cells) * plan.steps)
    if chosen == "batched":
        device = _train_batched(plan, sink, report, should_stop, memory_budget_mb)
    elif chosen == "process":
        device = _train_process(plan, sink, report, should_stop)
    else:
        device = _train_sequential(plan, sink, report, should_stop)
    if lambda_max and not sink.stopped:
        _lambda_max(plan, sink, report)
    return sink.grid(plan, time.perf_counter() - started, chosen, device)


def resolve_backend(backend: str, address: str | None = None) -> str:
    """"local" or "ray": what ``backend`` means here ("auto" is Ray when an address or ``RAY_ADDRESS`` is set).

    Raises:
        ValueError: an unknown backend, or an address for the local backend.
    """
    if backend not in BACKENDS:
        raise ValueError(f"Invalid backend: {backend!r}; valid: {', '.join(BACKENDS)}")
    if backend == "auto":
        return "ray" if address or os.environ.get("RAY_ADDRESS") else "local"
    if backend == "local" and address:
        raise ValueError(f"Invalid address {address!r} for the local backend (use backend='ray')")
    return backend


def _plan(base: Config, x: tuple[str, Sequence[float]], y: tuple[str, Sequence[float]], seeds: int) -> _Plan:
    """Validate the request and build every cell's Config (which checks each value's range)."""
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise ValueError(f"Invalid seeds: {seeds!r} (valid: integers in [1, {MAX_SEEDS}])")
    (x_name, x_values), (y_name, y_values) = _axis("x", base, x), _axis("y", base, y)
    if x_name == y_name:
        raise ValueError(f"Invalid axes: x and y are both {x_name!r}")
    n_cells = seeds * len(x_values) * len(y_values)
    if n_cells * base.steps > MAX_CELL_STEPS:
        raise ValueError(f"Invalid grid: {n_cells} cells × {base.steps} steps exceeds {MAX_CELL_STEPS:,} cell-steps; "
                         f"use fewer values, seeds or steps")
    cells = tuple(_cell_config(base, x_name, float(xv), y_name, float(yv), s)
                  for s in range(seeds) for yv in y_values for xv in x_values)
    return _Plan(base, x_name, x_values, y_name, y_values, seeds, cells)


def _axis(label: str, base: Config, axis: tuple[str, Sequence[float]]) -> tuple[str, np.ndarray]:
    try:
        name, values = axis
        values = np.asarray([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"Invalid {label} axis: {axis!r} (expected (name, [numbers]))") from None
    specs = OPTIMIZERS[base.optimizer].hparams
    valid = [key for key, spec in specs.items() if spec.kind == "float"] + list(CONFIG_AXES)
    if name not in valid:
        raise ValueError(f"Invalid {label} axis: {name!r}; {base.optimizer} can sweep {', '.join(valid)}")
    if not 1 <= len(values) <= MAX_AXIS_VALUES:
        raise ValueError(f"Invalid {label} axis: {len(values)} values of {name} (valid: 1 to {MAX_AXIS_VALUES})")
    if name == "width" and (problem := width_axis_problem(base, values)):
        raise ValueError(f"Invalid {label} axis: {problem}")
    return name, values


class _Progress:
    """Cell-steps done so far, passed on to the caller's callback."""

    def __init__(self, callback: ProgressFn | None, total: int) -> None:
        self.callback, self.total, self.done = callback, total, 0

    def __call__(self, done: int, info: Mapping[str, Any]) -> None:
        self.done = done
        if self.callback is not None:
            self.callback(done, self.total, info)


class _Sink:
    """Per-cell results as they arrive, in flat (s, i, j) order; turned into a Grid at the end."""

    def __init__(self, n_cells: int, steps: int) -> None:
        self.series = {name: np.full((n_cells, steps), np.nan) for name in STEP_FIELDS}
        self.final = {name: np.full(n_cells, np.nan) for name in FINAL_FIELDS}
        self.n_steps = np.zeros(n_cells, dtype=np.int64)
        self.diverged_step = np.full(n_cells, -1, dtype=np.int64)
        self.total_grad_evals = np.full(n_cells, np.nan)
        self.lambda_max, self.lambda_max_residual = np.full(n_cells, np.nan), np.full(n_cells, np.nan)
        self.theta: dict[int, np.ndarray] = {}  # θ_n of cells that did not diverge, for λ_max
        self.stopped = False
        self.failed = np.zeros(n_cells, dtype=bool)
        self.failure = ""

    def add_run(self, k: int, r: Run) -> None:
        """Cell k from a single run (the local strategies)."""
        self.add(k, cell_record(r))

    def add(self, k: int, record: Mapping[str, Any]) -> None:
        """Cell k from its ``cell_record`` (built here, or by a remote worker)."""
        n = record["n_steps"]
        for name in STEP_FIELDS:
            self.series[name][k, :n] = record[name]
        for name in FINAL_FIELDS:
            self.final[name][k] = record[name]
        self.n_steps[k], self.diverged_step[k] = n, record["diverged_step"]
        self.total_grad_evals[k] = record["total_grad_evals"]
        self.lambda_max[k], self.lambda_max_residual[k] = record.get("lambda_max", (np.nan, np.nan))
        if record.get("final_weights") is not None:
            self.theta[k] = record["final_weights"]

    def fail(self, cells: Sequence[int], reason: str) -> None:
        """Cells that could not be trained: marked, their arrays left NaN; ``reason`` says why."""
        self.failed[list(cells)] = True
        self.failure = reason

    def grid(self, plan: _Plan, wall_time: float, strategy: str, device: str) -> Grid:
        shape = plan.shape
        return Grid(
            config=plan.base, x_name=plan.x_name, x_values=plan.x_values, y_name=plan.y_name,
            y_values=plan.y_values, seeds=plan.seeds,
            **{name: a.reshape(*shape, plan.steps) for name, a in self.series.items()},
            **{name: a.reshape(shape) for name, a in self.final.items()},
            lambda_max=self.lambda_max.reshape(shape), lambda_max_residual=self.lambda_max_residual.reshape(shape),
            n_steps=self.n_steps.reshape(shape), diverged=(self.diverged_step >= 0).reshape(shape),
            diverged_step=self.diverged_step.reshape(shape), stopped=self.stopped, wall_time=wall_time,
            strategy=strategy, device=device, total_grad_evals=self.total_grad_evals.reshape(shape),
            failed=self.failed.reshape(shape), failure=self.failure,
        )


def cell_record(r: Run) -> dict[str, Any]:
    """What a grid keeps of a cell's run: numpy arrays and numbers (what a remote worker sends back).

    ``final_weights`` (θ_n, for λ_max) is None for a diverged cell.
    """
    return {**{name: getattr(r, name) for name in (*STEP_FIELDS, *FINAL_FIELDS)},
            "n_steps": r.n_steps, "diverged_step": r.diverged_step,
            "total_grad_evals": float(np.nansum(r.grad_evals)) if r.n_steps else np.nan,
            "final_weights": None if r.diverged else r.final_weights}


def train_chunk(configs: Sequence[Config], lambda_max: bool = False, memory_budget_mb: float = 512, *,
                progress: Callable[[int], None] | None = None) -> tuple[str, list[dict[str, Any]]]:
    """Train ``configs`` (cells that share a stack) as one stacked call: the unit of work of a remote worker.

    The worker builds the data set and the model from the configs; only the records travel back, without θ_n.

    Args:
        configs: the chunk's cells.
        lambda_max: also compute each converged cell's top Hessian eigenvalue at θ_n, as (value, residual) under
            the record's "lambda_max".
        memory_budget_mb: the budget the chunk was sized for (glibc keeps that much freed memory, as here).
        progress: called after each step with the steps done (every cell of the chunk is at that step).

    Returns:
        (the device that trained them, one ``cell_record`` per config).
    """
    device = resolve_device(configs[0].device)
    if device.type == "cpu":
        _retain_freed_memory(memory_budget_mb)
    s = setup(configs[0].replace(steps=1)) if lambda_max else None
    records = []
    tick = None if progress is None else (lambda done, total, row: progress(done))
    for r in train(list(configs), progress=tick, diagnostics=False):
        record = cell_record(r)
        theta = record.pop("final_weights")
        if s is not None and theta is not None:
            record["lambda_max"] = _top_eigenvalue(s, theta)
        records.append(record)
    return str(device), records



# ------------------------------------------------------------------------------------------------------ batched


def _train_batched(plan: _Plan, sink: _Sink, report: _Progress, should_stop: StopFn | None,
                   memory_budget_mb: float) -> str:
    """Train the grid chunk by chunk; each chunk's cells are one stacked ``train.train`` call.

    Cells that cannot share a stack (other widths: other parameter shapes) are grouped first (``group_key``), and
    each group is cut into chunks that fit the budget at its own model size.
    """
    if resolve_device(plan.base.device).type == "cpu":
        _retain_freed_memory(memory_budget_mb)
    chunks = _chunks(plan, memory_budget_mb)
    offset = 0
    for c, ks in enumerate(chunks):
        diverged_before = int((sink.diverged_step >= 0).sum())

        def tick(t: int, _total: int, row: Any, c: int = c, ks: list = ks, offset: int = offset,
                 before: int = diverged_before) -> None:
            report(offset + t * len(ks), {"phase": "train", "chunk": c, "n_chunks": len(chunks), "active": row.active,
                                          "diverged": before + row.diverged})

        runs = train([plan.cells[k] for k in ks], progress=tick, should_stop=should_stop, diagnostics=False)
        for k, r in zip(ks, runs):
            sink.add_run(k, r)
        offset += len(ks) * plan.steps
        if any(r.stopped for r in runs):
            sink.stopped = True
            break
    return str(resolve_device(plan.base.device))


def _chunks(plan: _Plan, memory_budget_mb: float, min_chunks: int = 1) -> list[list[int]]:
    """The flat cell indices of each stacked call: cells grouped by what a stack must share (in grid order), each
    group cut into even chunks within the budget (the last one is not a straggler of one or two cells), and into
    at least ``min_chunks`` where it has that many cells (so that that many workers share it)."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for k, cell in enumerate(plan.cells):
        groups.setdefault(group_key(cell), []).append(k)
    chunks = []
    for members in groups.values():
        size = chunk_size(plan.cells[members[0]], len(members), memory_budget_mb)
        n_chunks = max(math.ceil(len(members) / size), min(min_chunks, len(members)))
        size = math.ceil(len(members) / n_chunks)
        chunks += [members[start:start + size] for start in range(0, len(members), size)]
    return chunks


def _costliest(plan: _Plan) -> Config:
    """The cell that sets the strategy's timing: the widest on a width axis, else any (all cost alike)."""
    return max(plan.cells, key=lambda c: c.width) if "width" in (plan.x_name, plan.y_name) else plan.base


_RETAINED_MB = 0.0  # the heap size glibc has been asked to keep (see _retain_freed_memory)


def _retain_freed_memory(memory_budget_mb: float) -> None:
    """Ask glibc's malloc to keep freed memory (up to twice the budget) instead of returning it to the OS.

    A batched step allocates and frees ~20 MB of activations. By default glibc serves such blocks with mmap or
    trims them off the heap when freed, so every step faults ~4,000 fresh pages in again: in the VMs measured
    that was a third of the step time (28 → 18 ms for 49 moons cells). Process-wide and harmless elsewhere:
    the cost is that up to 2 × ``memory_budget_mb`` of freed memory stays mapped. A no-op off glibc.
    """
    global _RETAINED_MB
    if memory_budget_mb <= _RETAINED_MB or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return
    if not hasattr(libc, "gnu_get_libc_version"):  # only glibc has the mallopt parameters used here
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 * 2**20)  # blocks up to 32 MB (glibc's maximum) come from the heap
    libc.mallopt(m_trim_threshold, int(2 * memory_budget_mb * 2**20))
    _RETAINED_MB = memory_budget_mb


def chunk_size(config: Config, n_cells: int, memory_budget_mb: float) -> int:
    """How many cells of ``config``'s model one batched chunk may hold within ``memory_budget_mb``.

    The estimate counts ~12 parameter-sized tensors per cell, the layer outputs of a training batch kept for the
    backward pass, those of an evaluation pass and the per-step records.
    """
    s = setup(config.replace(steps=1))
    n_params = sum(p.numel() for p in s.model.parameters())
    per_sample = _outputs_per_sample(s)
    rows = s.x_train.shape[0] if config.batch_size == 0 else config.batch_size
    eval_rows = max(s.x_train.shape[0], s.x_test.shape[0])
    elements = (_PARAM_COPIES * n_params + _BACKWARD_COPIES * per_sample * rows + per_sample * eval_rows
                + len(STEP_FIELDS) * config.steps)
    per_cell = elements * s.x_train.element_size()
    return int(max(1, min(n_cells, memory_budget_mb * 2**20 // per_cell)))


def _outputs_per_sample(s: Setup) -> int:
    """Elements of every leaf module's output for one sample (what a forward pass keeps per sample)."""
    total = 0

    def count(_module: torch.nn.Module, _inputs: Any, output: Tensor) -> None:
        nonlocal total
        total += output.numel()

    leaves = [m for m in s.model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            s.model(s.x_train[:1])
    finally:
        for h in handles:
            h.remove()
    return max(total, 1)


# ------------------------------------------------------------------------------------------------------ one by one


def _train_sequential(plan: _Plan, sink: _Sink, report: _Progress, should_stop: StopFn | None,
                      cells: Sequence[int] | None = None) -> str:
    """``train.run`` on each cell in turn (all of them, or the flat indices ``cells``)."""
    device = str(resolve_device(plan.base.device))
    cells = range(len(plan.cells)) if cells is None else cells
    done_before = report.done
    for n, k in enumerate(cells):
        if should_stop is not None and should_stop():
            sink.stopped = True
            break
        offset = done_before + n * plan.steps
        info = {"phase": "train", "cell": k, "n_cells": len(plan.cells)}

        def step_done(step: int, _total: int, _row: Any, offset: int = offset, info: dict = info) -> None:
            report(offset + step, info)

        r = run(plan.cells[k], progress=step_done, should_stop=should_stop)
        sink.add_run(k, r)
        report(offset + plan.steps, info)
        if r.stopped:
            sink.stopped = True
            break
    return device


_STOP_EVENT: Any = None  # a worker's copy of the pool's stop flag
_INTERRUPTED = False  # a worker got Ctrl-C (SIGINT): its cells stop at their next step


def _worker_interrupted(_signum: int, _frame: Any) -> None:
    global _INTERRUPTED
    _INTERRUPTED = True


def _worker_init(stop_event: Any) -> None:
    global _STOP_EVENT
    _STOP_EVENT = stop_event
    torch.set_num_threads(1)  # the pool has one worker per core; intra-op threads would oversubscribe them
    # Ctrl-C in a terminal reaches the whole process group: a worker ends its cell as a stop request would (the
    # run is kept) instead of raising KeyboardInterrupt into the parent, which would lose the whole grid
    signal.signal(signal.SIGINT, _worker_interrupted)


def _worker_run(config: Config) -> Run:
    return run(config, should_stop=lambda: _INTERRUPTED or _STOP_EVENT.is_set())


def process_workers() -> int:
    """Workers of the process strategy: one per CPU core available to this process, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, 8))


def _train_process(plan: _Plan, sink: _Sink, report: _Progress, should_stop: StopFn | None) -> str:
    """``train.run`` on the cells in a pool of worker processes.

    Workers are spawned (forking a process whose torch thread pool has run can deadlock). Spawning re-imports
    the main module, which fails for code read from stdin; then the cells left run here, one after another.
    """
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    workers = min(process_workers(), len(plan.cells))
    delivered: set[int] = set()
    try:
        with futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init,
                                         initargs=(stop,)) as pool:
            jobs = {pool.submit(_worker_run, config): k for k, config in enumerate(plan.cells)}
            pending = set(jobs)
            while pending:
                done, pending = futures.wait(pending, timeout=0.05, return_when=futures.FIRST_COMPLETED)
                for job in done:
                    if not job.cancelled():
                        _deliver_run(plan, sink, report, jobs[job], job.result(), delivered)
                if pending and not stop.is_set() and should_stop is not None and should_stop():
                    stop.set()  # running cells stop at their next step; queued ones never start
                    sink.stopped = True
                    for job in pending:
                        job.cancel()
    except futures.BrokenExecutor as err:
        warnings.warn(f"process pool failed ({err}); training the remaining cells in this process", stacklevel=3)
        rest = [k for k in range(len(plan.cells)) if k not in delivered]
        return _train_sequential(plan, sink, report, should_stop, rest)
    return str(resolve_device(plan.base.device))


def _deliver_run(plan: _Plan, sink: _Sink, report: _Progress, k: int, r: Run, delivered: set[int]) -> None:
    sink.add_run(k, r)
    sink.stopped |= r.stopped
    delivered.add(k)
    report(len(delivered) * plan.steps, {"phase": "train", "cell": k, "n_cells": len(plan.cells)})


# ------------------------------------------------------------------------------------------------------ λ_max


def _lambda_max(plan: _Plan, sink: _Sink, report: _Progress) -> None:
    """Top Hessian eigenvalue and its residual at each cell's θ_n (full train set) into ``sink``; NaN for
    diverged cells."""
    setups: dict[int, Setup] = {}  # the architecture of each width swept; every cell's own θ_n is passed in
    for count, k in enumerate(sorted(sink.theta)):
        width = plan.cells[k].width
        if width not in setups:
            setups[width] = setup(plan.base.replace(steps=1, width=width))
        sink.lambda_max[k], sink.lambda_max_residual[k] = _top_eigenvalue(setups[width], sink.theta[k])
        report(report.total, {"phase": "lambda_max", "cell": k, "done": count + 1, "n_cells": len(sink.theta)})


def _top_eigenvalue(s: Setup, theta: np.ndarray) -> tuple[float, float]:
    """(λ_max, its Ritz residual) of the full train loss of ``s``'s model at the flat parameters ``theta``."""
    result = top_eigenvalues(s.model, s.loss, (s.x_train, s.y_train), k=1, weights=torch.as_tensor(theta))
    return float(result.eigenvalues[0]), float(result.residuals[0])


# ------------------------------------------------------------------------------------------------------ strategy


_TIMINGS: dict[tuple[Any, ...], dict[str, float]] = {}  # measured seconds, per model size / device (see _timing_key)


def choose_strategy(config: Config, n_cells: int, memory_budget_mb: float = 512) -> tuple[str, dict[str, float]]:
    """The fastest strategy for ``n_cells`` cells of ``config``, and the estimated seconds of each.

    CUDA always takes "batched" and a single cell "sequential". Otherwise a few steps of a batched chunk and of
    one ``train.run`` are timed (once per model size, batch size, optimizer, dtype and device: the result is
    cached) and the estimates compared; "process" adds the workers' start-up to the sequential time divided
    among ``process_workers()`` workers.

    Args:
        config: a cell's config (its steps and model set the cost).
        n_cells: cells in the grid.
        memory_budget_mb: as for ``run_grid`` (sets the chunk that is timed).

    Returns:
        (strategy, {strategy: estimated seconds}); the estimates are empty when nothing was timed.
    """
    if resolve_device(config.device).type == "cuda":
        return "batched", {}
    if n_cells == 1:
        return "sequential", {}
    size = chunk_size(config, n_cells, memory_budget_mb)
    key = _timing_key(config, size)
    if key not in _TIMINGS:
        _TIMINGS[key] = _measure(config, size)
    t = _TIMINGS[key]
    per_cell = t["sequential_step"] * config.steps + t["sequential_setup"]
    workers = min(process_workers(), n_cells)
    estimates = {
        "batched": t["batched_step"] * config.steps * n_cells + t["batched_setup"] * math.ceil(n_cells / size),
        "sequential": per_cell * n_cells,
        "process": PROCESS_STARTUP_S + per_cell * math.ceil(n_cells / workers) if workers > 1 else math.inf,
    }
    return min(estimates, key=estimates.get), estimates


def _timing_key(config: Config, size: int) -> tuple[Any, ...]:
    fields = ("device", "dtype", "optimizer", "task", "model", "depth", "width", "n_samples", "test_fraction",
              "batch_size", "eval_every", "fullgrad_every")
    return (*(getattr(config, f) for f in fields), config.hp.get("base"), size)


def _measure(config: Config, size: int) -> dict[str, float]:
    """Seconds per cell-step of a batched chunk of ``size`` cells and of ``train.run``, and their set-up costs.

    Each is the median over the probe's steps after the first (a warm-up), so one step delayed by another
    process on a shared machine does not decide the choice.
    """
    probe = config.replace(steps=PROBE_STEPS, snapshot_every=PROBE_STEPS)
    started = time.perf_counter()
    stamps: list[float] = []
    train([probe] * size, progress=lambda *_: stamps.append(time.perf_counter()), diagnostics=False)
    set_up = max(0.0, stamps[0] - started - (stamps[2] - stamps[1]))  # set-up and first step, less one step
    batched_step = float(np.median(np.diff(stamps[1:]))) / size
    started = time.perf_counter()
    r = run(probe)
    total = time.perf_counter() - started
    sequential_step = float(np.median(np.diff(r.elapsed)))
    return {"batched_step": batched_step, "batched_setup": set_up, "sequential_step": sequential_step,
            "sequential_setup": max(0.0, total - float(r.elapsed[-1]))}


# ------------------------------------------------------------------------------------------------------ command line


def add_sweep_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``sweep`` to a ``python -m sam_viz`` command line (run it with ``sweep_main``)."""
    parser = subparsers.add_parser(
        "sweep", help="train a grid of two hyperparameters × seeds; write PREFIX.npz and PREFIX.csv",
        description="Train every cell of a (y × x × seeds) hyperparameter grid; write OUT.npz (every array) and "
                    "OUT.csv (one row per cell), and print a JSON summary.")
    parser.add_argument("--x", default="rho", help="hyperparameter along the columns (default: rho)")
    parser.add_argument("--x-values", required=True, type=_numbers, help="comma-separated values, e.g. 0.01,0.05,0.1")
    parser.add_argument("--y", default="lr", help="hyperparameter along the rows (default: lr)")
    parser.add_argument("--y-values", required=True, type=_numbers, help="comma-separated values")
    parser.add_argument("--seeds", type=int, default=1, help=f"seeds per cell, 1 to {MAX_SEEDS} (default: 1)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                        help="a Config field or hyperparameter of the base config (repeatable), e.g. --set optimizer=fsam")
    parser.add_argument("--strategy", choices=STRATEGIES, default="auto", help="how to train the cells (default: auto)")
    parser.add_argument("--memory-budget-mb", type=float, default=512, help="memory per batched chunk (default: 512)")
    parser.add_argument("--no-lambda-max", action="store_true", help="skip the Hessian eigenvalue of each cell")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="where to train: this machine, or a Ray cluster (default: auto, Ray when --address or "
                             "RAY_ADDRESS is set)")
    parser.add_argument("--address", metavar="HOST:PORT", help="the Ray cluster's head (default: RAY_ADDRESS; "
                        "without either, --backend ray starts Ray inside this process)")
    parser.add_argument("--out", default="sweep", help="output path prefix (default: sweep → sweep.npz, sweep.csv)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


def sweep_main(args: argparse.Namespace) -> int:
    """Run the ``sweep`` command parsed by ``add_sweep_parser``.

    Returns:
        The exit code: 0, ``STOPPED_EXIT_CODE`` after Ctrl-C, 1 when cells could not be trained (``Grid.failed``).

    Raises:
        ValueError: a malformed ``--set``, or invalid settings (as ``run_grid``).
    """
    from .progress import STOPPED_EXIT_CODE, ProgressBar, StopOnInterrupt

    config = Config.from_flat(dict(_setting(item) for item in args.settings))
    cells = len(args.x_values) * len(args.y_values) * args.seeds
    bars = {"train": ProgressBar(cells * config.steps, "cell-steps", "sweep", quiet=args.quiet)}

    def progress(done: int, total: int, info: Mapping[str, Any]) -> None:
        phase = info.get("phase", "train")
        if phase == "train":
            bars[phase].total = max(1, total)
            bars[phase].update(done, diverged=info.get("diverged"))
            return
        if phase not in bars:  # λ_max: a bar over the cells, after the training's
            bars["train"].close()
            bars[phase] = ProgressBar(info.get("n_cells", 1), "cells", phase, quiet=args.quiet)
        bars[phase].update(info.get("done", 0))

    try:
        with StopOnInterrupt() as stop:
            grid = run_grid(config, (args.x, args.x_values), (args.y, args.y_values), args.seeds, progress=progress,
                            should_stop=stop, strategy=args.strategy, memory_budget_mb=args.memory_budget_mb,
                            lambda_max=not args.no_lambda_max, backend=args.backend, address=args.address)
    finally:
        for bar in bars.values():
            bar.close()
    out = Path(args.out)
    npz = grid.save(output_path(out, ".npz"))
    csv = grid.to_csv(output_path(out, ".csv"))
    summary = {"npz": str(npz), "csv": str(csv), "cells": int(np.prod(grid.shape)), "strategy": grid.strategy,
               "wall_time_s": round(grid.wall_time, 3), "diverged": int(grid.diverged.sum()), "stopped": grid.stopped,
               "failed": int(grid.failed.sum())}
    metric = "test_acc" if np.isfinite(grid.final_test_acc).any() else "train_loss"
    stats = robustness(grid, metric)
    summary.update({f"{metric}_mean": stats.mean, f"{metric}_std": stats.std, "share_near_best": stats.share_near_best})
    print(json.dumps(summary, default=_json_number))
    if grid.stopped:
        print(f"stopped after {int(grid.n_steps.sum()):,} of {int(np.prod(grid.shape)) * config.steps:,} cell-steps; "
              f"wrote {npz} and {csv}", file=sys.stderr)
        return STOPPED_EXIT_CODE
    if grid.failure:
        print(f"{grid.failure}; wrote {npz} and {csv}", file=sys.stderr)
        return 1
    return 0


def _numbers(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _setting(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"Invalid --set {item!r} (expected KEY=VALUE)")
    return key.strip().replace("-", "_"), value.strip()


def _json_number(value: Any) -> Any:
    return float(value) if isinstance(value, np.generic) else str(value)
