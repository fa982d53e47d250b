"""The Hessian engine's public names in one place, and the call forms that take a model instead of an operator.

Each concept lives in its own module; this one only gathers them, so ``from sam_viz.hessian import ...`` keeps
working:

- ``sam_viz.hvp``: the operator (``make_hvp``, ``HessianOperator``, ``unflatten``);
- ``sam_viz.lanczos``: Lanczos and the extreme eigenpairs (``lanczos``, ``top_eigenvalues``, ``EigenResult``);
- ``sam_viz.hutchinson``: the trace (``hutchpp_trace``, ``hutchinson_trace``, ``TraceResult``);
- ``sam_viz.density``: stochastic Lanczos quadrature (``spectral_density``, ``Density``);
- ``sam_viz.dense``: the exact spectrum of small operators (``dense_eigenvalues``, ``MAX_DENSE_PARAMS``);
- ``sam_viz.linear_operator``: what the estimators accept (``LinearOperator``, ``Operator``).

The estimators there take an operator only. The functions of the same name here also take a model with its loss
and batch (and ``make_hvp``'s options), build the operator, and call them: the form older callers use.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor, nn

from . import dense as _dense
from . import density as _density
from . import hutchinson as _hutchinson
from . import lanczos as _lanczos
from .dense import dense_eigh, dense_matrix
from .density import Density
from .hutchinson import TraceResult, hutchinson_trace, hutchpp_trace
from .hvp import (
    BLOCK_SIZE,
    DEFAULT_STRATEGY,
    MAX_DENSE_PARAMS,
    MODES,
    STRATEGIES,
    Batch,
    HessianOperator,
    LossFn,
    ParamFilter,
    default_strategy,
    make_hvp,
    unflatten,
)
from .lanczos import (
    DEFAULT_TOL,
    FALLBACK_TOL,
    LANCZOS_MAX_BYTES,
    LANCZOS_MAX_ITERS,
    METHODS,
    VERIFY_BELOW,
    EigenResult,
    Lanczos,
    lanczos,
)
from .linear_operator import LinearOperator, Operator

__all__ = [
    "BLOCK_SIZE", "DEFAULT_STRATEGY", "DEFAULT_TOL", "FALLBACK_TOL", "LANCZOS_MAX_BYTES", "LANCZOS_MAX_ITERS",
    "MAX_DENSE_PARAMS", "METHODS", "MODES", "STRATEGIES", "VERIFY_BELOW", "Batch", "Density", "EigenResult",
    "HessianOperator", "Lanczos", "LinearOperator", "LossFn", "Operator", "ParamFilter", "TraceResult",
    "default_strategy", "dense_eigenvalues", "dense_eigh", "dense_hessian", "dense_matrix", "eigen_at",
    "hutchinson_trace", "hutchpp_trace", "lanczos", "make_hvp", "spectral_density", "top_eigenvalues", "trace",
    "unflatten",
]


def _operator(A: Any, loss_fn: LossFn | None, batch: Batch | None, hvp_kwargs: dict[str, Any]) -> Operator:
    """A model (with loss and batch) becomes its HessianOperator; a tensor or operator passes through."""
    if isinstance(A, nn.Module):
        if loss_fn is None or batch is None:
            raise ValueError("A model needs loss_fn and batch")
        return make_hvp(A, loss_fn, batch, **hvp_kwargs)
    if loss_fn is not None or batch is not None or hvp_kwargs:
        raise TypeError("loss_fn, batch and HVP options only apply to a model, not to an operator")
    return A


def top_eigenvalues(model_or_operator: nn.Module | Operator, loss_fn: LossFn | None = None,
                    batch: Batch | None = None, k: int = 1, *, iters: int | None = None, tol: float | None = None,
                    seed: int = 0, smallest: int = 0, max_iters: int | None = None, method: str = "auto",
                    verify: bool | None = None, **hvp_kwargs: Any) -> EigenResult:
    """``sam_viz.lanczos.top_eigenvalues`` of an operator, or of a model's Hessian built with ``make_hvp``.

    Args:
        model_or_operator: a model (then also pass ``loss_fn``, ``batch`` and any ``make_hvp`` options), a
            symmetric square tensor, or an operator with ``@`` and ``.dim``.
        loss_fn: see ``make_hvp``.
        batch: see ``make_hvp``.
        k: how many of the largest eigenvalues.
        iters: see ``sam_viz.lanczos.top_eigenvalues``.
        tol: see ``sam_viz.lanczos.top_eigenvalues``.
        seed: see ``sam_viz.lanczos.top_eigenvalues``.
        smallest: see ``sam_viz.lanczos.top_eigenvalues``.
        max_iters: see ``sam_viz.lanczos.top_eigenvalues``.
        method: see ``sam_viz.lanczos.top_eigenvalues``.
        verify: see ``sam_viz.lanczos.top_eigenvalues``.
        **hvp_kwargs: passed to ``make_hvp`` (mode, param_filter, max_samples, weights, dtype, strategy).

    Returns:
        An ``EigenResult``.

    Raises:
        ValueError: see ``sam_viz.lanczos.top_eigenvalues``; also a model without ``loss_fn`` or ``batch``.
        TypeError: HVP options given with an operator.
    """
    A = _operator(model_or_operator, loss_fn, batch, hvp_kwargs)
    return _lanczos.top_eigenvalues(A, k, iters=iters, tol=tol, seed=seed, smallest=smallest, max_iters=max_iters,
                                    method=method, verify=verify)


def eigen_at(model: nn.Module, loss_fn: LossFn, batch: Batch, weights: Tensor | np.ndarray, k: int = 1, *,
             iters: int | None = None, tol: float | None = None, seed: int = 0, smallest: int = 0,
             verify: bool | None = None, **hvp_kwargs: Any) -> EigenResult:
    """``top_eigenvalues`` at a flat parameter vector (e.g. a training snapshot), leaving the model untouched.

    Args:
        model: gives the architecture; its own weights are not used or changed.
        loss_fn: see ``make_hvp``.
        batch: see ``make_hvp``.
        weights: (P,) θ in ``named_parameters()`` order, e.g. ``run.weights[i]``.
        k: see ``top_eigenvalues``.
        iters: see ``top_eigenvalues``.
        tol: see ``top_eigenvalues``.
        seed: see ``top_eigenvalues``.
        smallest: see ``top_eigenvalues``.
        verify: see ``top_eigenvalues``.
        **hvp_kwargs: other ``make_hvp`` options.

    Returns:
        An ``EigenResult``.
    """
    op = make_hvp(model, loss_fn, batch, weights=weights, **hvp_kwargs)
    return _lanczos.top_eigenvalues(op, k=k, iters=iters, tol=tol, seed=seed, smallest=smallest, verify=verify)


def trace(model_or_operator: nn.Module | Operator, loss_fn: LossFn | None = None, batch: Batch | None = None,
          matvecs: int = 99, *, seed: int = 0, method: str = "hutch++", **hvp_kwargs: Any) -> TraceResult:
    """``sam_viz.hutchinson.trace`` (Hutch++ by default) of an operator, or of a model's Hessian.

    Args:
        model_or_operator: a model (with ``loss_fn``, ``batch``), a square tensor, or an operator.
        loss_fn: see ``make_hvp``.
        batch: see ``make_hvp``.
        matvecs: products to spend (≥ 4 for Hutch++, ≥ 2 for Hutchinson).
        seed: seed of the probes.
        method: "hutch++" or "hutchinson".
        **hvp_kwargs: passed to ``make_hvp``.

    Returns:
        A ``TraceResult``.

    Raises:
        ValueError: for an unknown method or too few matvecs; a model without ``loss_fn`` or ``batch``.
        TypeError: HVP options given with an operator.
    """
    A = _operator(model_or_operator, loss_fn, batch, hvp_kwargs)
    return _hutchinson.trace(A, matvecs, seed=seed, method=method)


def spectral_density(model_or_operator: nn.Module | Operator, loss_fn: LossFn | None = None,
                     batch: Batch | None = None, *, iters: int = 80, n_vectors: int = 4, seed: int = 0,
                     grid: np.ndarray | None = None, n_grid: int = 500, sigma: float | None = None,
                     **hvp_kwargs: Any) -> Density:
    """``sam_viz.density.spectral_density`` (SLQ) of an operator, or of a model's Hessian.

    Args:
        model_or_operator: a model (with ``loss_fn``, ``batch``), a square tensor, or an operator.
        loss_fn: see ``make_hvp``.
        batch: see ``make_hvp``.
        iters: Lanczos steps per vector (capped at the dimension).
        n_vectors: start vectors.
        seed: seed of the start vectors.
        grid: eigenvalue axis; None: ``n_grid`` points spanning the nodes with 5% margins.
        n_grid: points of the default grid.
        sigma: Gaussian width; None: two default-grid spacings.
        **hvp_kwargs: passed to ``make_hvp``.

    Returns:
        A ``Density``.

    Raises:
        ValueError: see ``sam_viz.density.spectral_density``; a model without ``loss_fn`` or ``batch``.
        TypeError: HVP options given with an operator.
    """
    A = _operator(model_or_operator, loss_fn, batch, hvp_kwargs)
    return _density.spectral_density(A, iters=iters, n_vectors=n_vectors, seed=seed, grid=grid, n_grid=n_grid,
                                     sigma=sigma)


def dense_hessian(model: nn.Module, loss_fn: LossFn, batch: Batch, **hvp_kwargs: Any) -> Tensor:
    """The exact Hessian as a dense (P, P) matrix, built from blocks of HVPs; for P ≤ MAX_DENSE_PARAMS.

    Args:
        model: the network (not modified).
        loss_fn: see ``make_hvp``.
        batch: see ``make_hvp``.
        **hvp_kwargs: passed to ``make_hvp`` (e.g. ``dtype=torch.float64``, ``param_filter``).

    Returns:
        (P, P) tensor on the model's device.

    Raises:
        ValueError: if P > MAX_DENSE_PARAMS.
    """
    return make_hvp(model, loss_fn, batch, **hvp_kwargs).to_dense()  # to_dense checks the size


def dense_eigenvalues(model_or_operator: nn.Module | Operator, loss_fn: LossFn | None = None,
                      batch: Batch | None = None, **hvp_kwargs: Any) -> np.ndarray:
    """``sam_viz.dense.dense_eigenvalues`` (all of them, descending) of an operator, or of a model's Hessian.

    Args:
        model_or_operator: a model (with ``loss_fn``, ``batch``), a square tensor, or an operator.
        loss_fn: see ``make_hvp``.
        batch: see ``make_hvp``.
        **hvp_kwargs: passed to ``make_hvp``.

    Returns:
        (P,) numpy float64, descending.

    Raises:
        ValueError: if P > MAX_DENSE_PARAMS.
    """
    return _dense.dense_eigenvalues(_operator(model_or_operator, loss_fn, batch, hvp_kwargs))
