"""Curvature over training: λ_max (with its Ritz residual) and the Hessian trace on a Run's snapshots."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .hessian import MAX_DENSE_PARAMS, dense_eigenvalues, make_hvp, top_eigenvalues, trace
from .records import Run
from .train import setup

MAX_SNAPSHOTS_EVALUATED = 200


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


class _SnapshotCurvature:
    """One run's curvature at its chosen snapshots, evaluated one snapshot at a time."""

    def __init__(self, run: Run, every: int, *, with_trace: bool = False, exact: bool = False,
                 max_samples: int | None = None, matvecs: int = 99, seed: int = 0, lambda_max: bool = True) -> None:
        if every < 1:
            raise ValueError(f"Invalid every: {every} (at least 1)")
        self.idx = sorted(set(range(0, len(run.snapshot_step), every)) | {len(run.snapshot_step) - 1})
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
