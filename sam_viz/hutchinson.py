"""Stochastic trace estimates of a symmetric operator with standard errors: Hutch++ and plain Hutchinson."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .linear_operator import Operator, check_operator, device_of, dim_of, dtype_of, matmat, rademacher

METHODS = ("hutch++", "hutchinson")


@dataclass(frozen=True)
class TraceResult:
    """A stochastic trace estimate.

    Attributes:
        estimate: the estimate of tr A.
        stderr: its standard error (see ``trace``).
        matvecs: products with A spent.
        method: "hutch++" or "hutchinson".
    """

    estimate: float
    stderr: float
    matvecs: int
    method: str = "hutch++"


def hutchpp_trace(A: Operator, matvecs: int = 99, *, seed: int = 0) -> TraceResult:
    """Hutch++ (Meyer et al. 2021) with Rademacher probes, and the standard error of its stochastic part.

    m/3 products build a sketch S, Q = orth(A S); then tr A ≈ tr(QᵀAQ) + (1/l) Σ_i z_i with
    z_i = g_iᵀ(I − QQᵀ)A(I − QQᵀ)g_i over the l ≈ m/3 remaining probes g_i. The first term is exact given Q, so
    stderr = sqrt(Σ_i (z_i − z̄)² / (l(l − 1))), the sample standard error of the Hutchinson part. Unlike
    curvlinops' ``hutchpp_trace`` it is seeded, returns that standard error, and takes any ``matvecs`` ≥ 4, also
    more than the dimension (the sketch then spans everything and the estimate is exact).

    Args:
        A: a symmetric square tensor or an operator with ``@`` and ``.dim``.
        matvecs: products to spend, at least 4.
        seed: seed of the sketch and the probes.

    Returns:
        A ``TraceResult`` with method "hutch++".

    Raises:
        ValueError: for fewer than 4 matvecs.
    """
    A = check_operator(A)
    if matvecs < 4:
        raise ValueError(f"Invalid matvecs: {matvecs}; Hutch++ needs at least 4")
    dim, dtype, device = dim_of(A), dtype_of(A), device_of(A)
    generator = torch.Generator().manual_seed(seed)
    n_sketch = matvecs // 3
    S = rademacher(dim, n_sketch, generator, dtype, device)
    G = rademacher(dim, matvecs - 2 * n_sketch, generator, dtype, device)
    Q, _ = torch.linalg.qr(matmat(A, S).to(dtype))  # (dim, min(dim, n_sketch)): narrower for tiny operators
    exact = float(torch.einsum("ij,ij->", Q, matmat(A, Q).to(dtype)))
    G = G - Q @ (Q.T @ G)  # probe only the complement of the sketched (dominant) subspace
    rest, stderr = _mean_and_stderr(A, G)
    return TraceResult(exact + rest, stderr, n_sketch + Q.shape[1] + G.shape[1], "hutch++")


def hutchinson_trace(A: Operator, matvecs: int = 99, *, seed: int = 0) -> TraceResult:
    """Hutchinson's estimate (1/m) Σ_i g_iᵀ A g_i over m Rademacher probes, with its sample standard error.

    Args:
        A: a symmetric square tensor or an operator with ``@`` and ``.dim``.
        matvecs: probes (= products), at least 2 for a standard error.
        seed: seed of the probes.

    Returns:
        A ``TraceResult`` with method "hutchinson".

    Raises:
        ValueError: for fewer than 2 matvecs.
    """
    A = check_operator(A)
    if matvecs < 2:
        raise ValueError(f"Invalid matvecs: {matvecs}; Hutchinson needs at least 2 for a standard error")
    G = rademacher(dim_of(A), matvecs, torch.Generator().manual_seed(seed), dtype_of(A), device_of(A))
    estimate, stderr = _mean_and_stderr(A, G)
    return TraceResult(estimate, stderr, matvecs, "hutchinson")


def trace(A: Operator, matvecs: int = 99, *, seed: int = 0, method: str = "hutch++") -> TraceResult:
    """``hutchpp_trace`` or ``hutchinson_trace`` by name.

    Args:
        A: a symmetric square tensor or an operator with ``@`` and ``.dim``.
        matvecs: products to spend.
        seed: seed of the probes.
        method: "hutch++" or "hutchinson".

    Returns:
        A ``TraceResult``.

    Raises:
        ValueError: for an unknown method or too few matvecs.
    """
    if method == "hutch++":
        return hutchpp_trace(A, matvecs, seed=seed)
    if method == "hutchinson":
        return hutchinson_trace(A, matvecs, seed=seed)
    raise ValueError(f"Invalid method: {method!r}; expected 'hutch++' or 'hutchinson'")


def _mean_and_stderr(A: Operator, G: Tensor) -> tuple[float, float]:
    """Mean and standard error of z_i = g_iᵀ A g_i over the columns of G."""
    z = torch.einsum("ij,ij->j", G, matmat(A, G).to(G.dtype)).double().cpu()
    stderr = float(z.std(correction=1) / math.sqrt(len(z))) if len(z) > 1 else math.nan
    return float(z.mean()), stderr
