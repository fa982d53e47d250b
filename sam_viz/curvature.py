"""Curvature over training: λ_max (with its Ritz residual) and the Hessian trace on a Run's snapshots."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
    if every < 1:
        raise ValueError(f"Invalid every: {every} (at least 1)")
    idx = sorted(set(range(0, len(run.snapshot_step), every)) | {len(run.snapshot_step) - 1})
    if len(idx) > MAX_SNAPSHOTS_EVALUATED:
        raise ValueError(f"Invalid every: {every} evaluates {len(idx)} snapshots (at most {MAX_SNAPSHOTS_EVALUATED})")
    if exact and run.n_params > MAX_DENSE_PARAMS:
        raise ValueError(f"Invalid exact: the dense Hessian is limited to {MAX_DENSE_PARAMS:,} parameters ({run.n_params:,} here)")
    s = setup(run.config)
    batch = (s.x_train, s.y_train)
    n = int(batch[0].shape[0]) if max_samples is None else min(max_samples, int(batch[0].shape[0]))
    out = {name: np.full(len(idx), np.nan) for name in ("lambda_max", "residual", "trace", "trace_stderr")}
    converged = np.zeros(len(idx), dtype=bool)
    n_done = len(idx)
    for row, i in enumerate(idx):
        if should_stop is not None and should_stop():
            n_done = row
            break
        weights = run.weights[i]
        if not np.all(np.isfinite(weights)):
            if progress is not None:
                progress(row + 1, len(idx))
            continue  # a diverged run's last snapshot
        op = make_hvp(s.model, s.loss, batch, weights=weights, max_samples=max_samples, seed=seed)
        if lambda_max and exact:
            out["lambda_max"][row] = dense_eigenvalues(op)[0]
            out["residual"][row], converged[row] = 0.0, True
        elif lambda_max:
            eig = top_eigenvalues(op, k=1, seed=seed)
            out["lambda_max"][row], out["residual"][row], converged[row] = eig.eigenvalues[0], eig.residuals[0], eig.converged[0]
        if with_trace:
            t = trace(op, matvecs=matvecs, seed=seed)
            out["trace"][row], out["trace_stderr"][row] = t.estimate, t.stderr
        if progress is not None:
            progress(row + 1, len(idx))
    kept = slice(0, n_done)
    return CurvatureTrace(run.snapshot_step[idx][kept], out["lambda_max"][kept], out["residual"][kept], converged[kept],
                          out["trace"][kept], out["trace_stderr"][kept], "dense" if exact else "lanczos", n)
