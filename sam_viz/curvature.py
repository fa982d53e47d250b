"""Curvature over training: λ_max (with its Ritz residual) and the Hessian trace on a Run's snapshots."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .hessian import MAX_DENSE_PARAMS, dense_eigenvalues, make_hvp, top_eigenvalues, trace
from .records import Run
from .train import setup

MAX_SNAPSHOTS_EVALUATED = 200
# Hessian-vector products one top-1 Lanczos run takes, for the estimate made before a job starts: measured 5–18 on
# the moons MLP and the digits CNN over training (residual 1e-4·‖H‖), so 20 errs on the slow side
LANCZOS_PRODUCTS = 20


@dataclass(frozen=True, eq=False)
class CurvatureTrace:
    """Hessian statistics at a run's snapshots (full train set unless ``n_samples`` says otherwise).

    Attributes:
        step: (S,) training steps of the snapshots evaluated.
        lambda_max: (S,) largest Hessian eigenvalue; ``residual`` (S,) its Ritz residual ‖Hq − λq‖ (a true
            eigenvalue lies within it); ``converged`` (S,) bool.
        trace, trace_stderr: (S,) Hutch++ estimate of tr H and its standard error (NaN when not asked for).
        method: "lanczos" or "dense" (exact: every eigenvalue from the dense Hessian, residual 0).
        n_samples: samples the loss was averaged over.
    """

    step: np.ndarray
    lambda_max: np.ndarray
    residual: np.ndarray
    converged: np.ndarray
    trace: np.ndarray
    trace_stderr: np.ndarray
    method: str
    n_samples: int


def over_training(run: Run, *, every: int = 1, with_trace: bool = False, exact: bool = False,
                  max_samples: int | None = None, matvecs: int = 99, seed: int = 0,
                  lambda_max: bool = True, progress: Callable[[int, int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> CurvatureTrace:
    """λ_max (and optionally the trace) at every ``every``-th snapshot of ``run``, on its own train set.

    Args:
        run: a finished run; its config rebuilds the model and data.
        every: evaluate every k-th snapshot (the final one is always included).
        with_trace: also estimate tr H with Hutch++ (``matvecs`` products each).
        exact: dense eigendecomposition (models up to ``MAX_DENSE_PARAMS`` parameters) instead of Lanczos.
        max_samples: a seeded subset of the train set (state it: λ_max depends on the sample).
        lambda_max: False skips the eigenvalue (its columns stay NaN) when only the trace is wanted.
        progress: called as ``progress(done, total)`` after each snapshot, in snapshots to evaluate.
        should_stop: polled before each snapshot; True ends early and the trace holds only the snapshots
            evaluated so far (``step`` says which).

    Raises:
        ValueError: more than ``MAX_SNAPSHOTS_EVALUATED`` snapshots requested, or ``exact`` on a model that is
            too large.
    """
    return interleaved([run], every=every, with_trace=with_trace, exact=exact, max_samples=max_samples,
                       matvecs=matvecs, seed=seed, lambda_max=lambda_max, progress=progress,
                       should_stop=should_stop)[0]


def interleaved(runs: Sequence[Run], *, every: int = 1, progress: Callable[[int, int], None] | None = None,
                should_stop: Callable[[], bool] | None = None, **options: Any) -> list[CurvatureTrace]:
    """``over_training`` of several runs, a snapshot of each in turn (snapshot 0 of every run, then snapshot 1,
    ...), so that a stop leaves every run's curve covering the same part of training.

    Args:
        runs: finished runs.
        every, options: as ``over_training``.
        progress: ``progress(done, total)`` in snapshots over all runs.
        should_stop: polled before each snapshot.
    """
    curves = [_SnapshotCurvature(r, every, **options) for r in runs]
    total, done = sum(len(c.idx) for c in curves), 0
    for row in range(max(len(c.idx) for c in curves)):
        for c in curves:
            if row >= len(c.idx):
                continue
            if should_stop is not None and should_stop():
                return [c.result() for c in curves]
            c.evaluate(row)
            done += 1
            if progress is not None:
                progress(done, total)
    return [c.result() for c in curves]


@dataclass(frozen=True)
class CurvatureEstimate:
    """What a curvature job will cost, before it starts.

    Attributes:
        snapshots: snapshots to evaluate over all runs.
        products: Hessian-vector products over all runs (Lanczos: ``LANCZOS_PRODUCTS`` per snapshot, dense: one per
            parameter, Hutch++: ``matvecs``).
        product_seconds: the time of one product, measured on the first run's last snapshot.
        seconds: their product: the expected duration.
    """

    snapshots: int
    products: int
    product_seconds: float
    seconds: float


def planned_products(runs: Sequence[Run], *, every: int = 1, with_trace: bool = False, exact: bool = False,
                     matvecs: int = 99, lambda_max: bool = True) -> tuple[int, int]:
    """(snapshots, Hessian-vector products) an ``interleaved`` call with these options will evaluate."""
    snapshots = products = 0
    for run in runs:
        n = len(_snapshot_rows(len(run.snapshot_step), every))
        per_snapshot = (run.n_params if exact else LANCZOS_PRODUCTS) * lambda_max + matvecs * with_trace
        snapshots, products = snapshots + n, products + n * per_snapshot
    return snapshots, products


def estimate(runs: Sequence[Run], *, every: int = 1, with_trace: bool = False, exact: bool = False,
             matvecs: int = 99, lambda_max: bool = True, max_samples: int | None = None,
             repeats: int = 3) -> CurvatureEstimate:
    """The expected cost of ``interleaved(runs, ...)``, from timing Hessian-vector products (the median of
    ``repeats``, after a warm-up) at the first run's last snapshot: a fraction of a second, so a page can say how
    long a job will take, and warn, before starting it. ``exact`` times a block of products, as the dense Hessian
    is built, and adds the eigendecomposition (timed at ≤ 400 rows and scaled by P³)."""
    snapshots, products = planned_products(runs, every=every, with_trace=with_trace, exact=exact, matvecs=matvecs,
                                           lambda_max=lambda_max)
    run = runs[0]
    s = setup(run.config)
    op = make_hvp(s.model, s.loss, (s.x_train, s.y_train), weights=run.weights[-1], max_samples=max_samples)
    columns = min(op.block_size, op.dim) if exact else 1
    block = torch.ones(op.dim, columns, dtype=op.dtype, device=op.device).squeeze(1)
    per_product = _median_seconds(lambda: op @ block, repeats) / columns
    seconds = products * per_product
    if exact and lambda_max:
        n = min(op.dim, 400)
        sym = torch.eye(n, dtype=op.dtype) + torch.ones(n, n, dtype=op.dtype) / n
        seconds += snapshots * _median_seconds(lambda: torch.linalg.eigvalsh(sym), repeats) * (op.dim / n) ** 3
    return CurvatureEstimate(snapshots, products, per_product, seconds)


def _median_seconds(work: Callable[[], Any], repeats: int) -> float:
    work()  # warm-up: builds what the operator caches
    times = []
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def _snapshot_rows(n_snapshots: int, every: int) -> list[int]:
    """The snapshot indices evaluated: every ``every``-th and the last."""
    return sorted(set(range(0, n_snapshots, every)) | {n_snapshots - 1})


class _SnapshotCurvature:
    """One run's curvature at its chosen snapshots, evaluated one snapshot at a time."""

    def __init__(self, run: Run, every: int, *, with_trace: bool = False, exact: bool = False,
                 max_samples: int | None = None, matvecs: int = 99, seed: int = 0, lambda_max: bool = True) -> None:
        if every < 1:
            raise ValueError(f"Invalid every: {every} (at least 1)")
        self.idx = _snapshot_rows(len(run.snapshot_step), every)
        if len(self.idx) > MAX_SNAPSHOTS_EVALUATED:
            raise ValueError(f"Invalid every: {every} evaluates {len(self.idx)} snapshots (at most {MAX_SNAPSHOTS_EVALUATED})")
        if exact and run.n_params > MAX_DENSE_PARAMS:
            raise ValueError(f"Invalid exact: the dense Hessian is limited to {MAX_DENSE_PARAMS:,} parameters ({run.n_params:,} here)")
        self.run, self.with_trace, self.exact, self.lambda_max = run, with_trace, exact, lambda_max
        self.max_samples, self.matvecs, self.seed = max_samples, matvecs, seed
        s = setup(run.config)
        self.model, self.loss, self.batch = s.model, s.loss, (s.x_train, s.y_train)
        n = int(self.batch[0].shape[0])
        self.n = n if max_samples is None else min(max_samples, n)
        self.out = {name: np.full(len(self.idx), np.nan) for name in ("lambda_max", "residual", "trace", "trace_stderr")}
        self.converged = np.zeros(len(self.idx), dtype=bool)
        self.done = 0

    def evaluate(self, row: int) -> None:
        weights = self.run.weights[self.idx[row]]
        self.done = row + 1
        if not np.all(np.isfinite(weights)):
            return  # a diverged run's last snapshot
        op = make_hvp(self.model, self.loss, self.batch, weights=weights, max_samples=self.max_samples, seed=self.seed)
        if self.lambda_max and self.exact:
            self.out["lambda_max"][row] = dense_eigenvalues(op)[0]
            self.out["residual"][row], self.converged[row] = 0.0, True
        elif self.lambda_max:
            eig = top_eigenvalues(op, k=1, seed=self.seed)
            self.out["lambda_max"][row], self.out["residual"][row] = eig.eigenvalues[0], eig.residuals[0]
            self.converged[row] = eig.converged[0]
        if self.with_trace:
            t = trace(op, matvecs=self.matvecs, seed=self.seed)
            self.out["trace"][row], self.out["trace_stderr"][row] = t.estimate, t.stderr

    def result(self) -> CurvatureTrace:
        kept = slice(0, self.done)
        out = self.out
        return CurvatureTrace(self.run.snapshot_step[self.idx][kept], out["lambda_max"][kept], out["residual"][kept],
                              self.converged[kept], out["trace"][kept], out["trace_stderr"][kept],
                              "dense" if self.exact else "lanczos", self.n)
