"""The spectral density of a symmetric operator by stochastic Lanczos quadrature (SLQ), Gaussian-smoothed."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .lanczos import Lanczos, extend
from .linear_operator import Operator, check_operator, device_of, dim_of, dtype_of, rademacher


@dataclass(frozen=True, eq=False)
class Density:
    """A spectral density from stochastic Lanczos quadrature.

    Attributes:
        nodes: (n_vectors, m) Ritz values of each start vector's Lanczos run (quadrature nodes). A run that broke
            down early (an invariant subspace) is padded with node 0 and weight 0.
        weights: (n_vectors, m) quadrature weights, each row sums to 1.
        grid: (n_grid,) eigenvalue axis.
        density: (n_grid,) Gaussian-smoothed density on ``grid``; integrates to ~1.
        sigma: the Gaussian width used.
        matvecs: products with A spent.
    """

    nodes: np.ndarray
    weights: np.ndarray
    grid: np.ndarray
    density: np.ndarray
    sigma: float
    matvecs: int


def spectral_density(A: Operator, *, iters: int = 80, n_vectors: int = 4, seed: int = 0,
                     grid: np.ndarray | None = None, n_grid: int = 500, sigma: float | None = None) -> Density:
    """Stochastic Lanczos quadrature: φ(t) = (1/n_v) Σ_v Σ_j τ_vj N(t; θ_vj, σ²) over Gauss nodes θ, weights τ.

    Each unit Rademacher start vector v gives Ritz values θ_vj and weights τ_vj = (first component of T's j-th
    eigenvector)², so Σ_j τ_vj θ_vj = vᵀAv, an unbiased estimate of tr A / dim.

    Args:
        A: a symmetric square tensor or an operator with ``@`` and ``.dim`` (e.g. ``make_hvp(model, loss, batch)``).
        iters: Lanczos steps per vector (capped at the dimension).
        n_vectors: start vectors.
        seed: seed of the start vectors.
        grid: eigenvalue axis; None: ``n_grid`` points spanning the nodes with 5% margins.
        n_grid: points of the default grid.
        sigma: Gaussian width; None: two default-grid spacings.

    Returns:
        A ``Density``.

    Raises:
        ValueError: for iters, n_vectors or n_grid < 1, or sigma ≤ 0.
    """
    A = check_operator(A)
    if iters < 1 or n_vectors < 1 or n_grid < 2 or (sigma is not None and sigma <= 0):
        raise ValueError(f"Invalid iters={iters}, n_vectors={n_vectors}, n_grid={n_grid} or sigma={sigma}")
    dim, dtype, device = dim_of(A), dtype_of(A), device_of(A)
    m = min(iters, dim)
    generator = torch.Generator().manual_seed(seed)
    nodes, weights = np.zeros((n_vectors, m)), np.zeros((n_vectors, m))
    used = 0
    for v in range(n_vectors):
        start = rademacher(dim, 1, generator, dtype, device)[:, 0]
        run = Lanczos(A, start)
        extend(run, m)
        theta, S, _ = run.ritz()
        nodes[v, : run.m], weights[v, : run.m] = theta, S[0] ** 2
        used += run.matvecs
    grid, sigma = _grid(nodes, weights, grid, n_grid, sigma)
    gauss = np.exp(-0.5 * ((grid[:, None] - nodes.reshape(-1)[None]) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    density = gauss @ weights.reshape(-1) / n_vectors
    return Density(nodes, weights, grid, density, float(sigma), used)


def _grid(nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray | None, n_grid: int,
          sigma: float | None) -> tuple[np.ndarray, float]:
    real = nodes[weights > 0] if np.any(weights > 0) else nodes.reshape(-1)
    lo, hi = float(real.min()), float(real.max())
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    if grid is None:
        grid = np.linspace(lo - 0.05 * span, hi + 0.05 * span, n_grid)
    grid = np.asarray(grid, dtype=np.float64)
    # Two spacings of the default grid: narrow enough to resolve outliers, wide enough to integrate on the grid.
    return grid, sigma if sigma is not None else 2 * 1.1 * span / (n_grid - 1)
