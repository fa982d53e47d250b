"""The exact spectrum of a small operator from its dense matrix: the oracle the matrix-free estimators are held to."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .hvp import MAX_DENSE_PARAMS, check_dense
from .linear_operator import Operator, check_operator, device_of, dim_of, dtype_of, matmat

__all__ = ["MAX_DENSE_PARAMS", "dense_eigenvalues", "dense_eigh", "dense_matrix"]


def dense_matrix(A: Operator) -> Tensor:
    """A as a dense (dim, dim) tensor: itself for a tensor, ``to_dense()`` where the operator has it, else A I.

    Args:
        A: a square tensor or an operator with ``@`` and ``.dim``.

    Returns:
        (dim, dim) tensor in the operator's dtype, on its device.

    Raises:
        ValueError: if dim > MAX_DENSE_PARAMS (a tensor already in memory is returned whatever its size).
    """
    A = check_operator(A)
    if isinstance(A, Tensor):
        return A
    if hasattr(A, "to_dense"):
        return A.to_dense()  # checks the size itself
    check_dense(dim_of(A))
    return matmat(A, torch.eye(dim_of(A), dtype=dtype_of(A), device=device_of(A)))


def dense_eigh(A: Operator) -> tuple[Tensor, Tensor, Tensor, torch.dtype]:
    """Every eigenpair of the symmetrised ½(A + Aᵀ), in float64.

    Args:
        A: a square tensor or an operator with ``@`` and ``.dim``.

    Returns:
        ``(eigenvalues, eigenvectors, M, dtype)``: ascending (dim,) eigenvalues and (dim, dim) eigenvectors from
        ``torch.linalg.eigh``, the symmetrised float64 matrix M they belong to, and A's own dtype.

    Raises:
        ValueError: if dim > MAX_DENSE_PARAMS.
    """
    M = dense_matrix(A)
    M64 = 0.5 * (M + M.T).double()
    evals, evecs = torch.linalg.eigh(M64)
    return evals, evecs, M64, M.dtype


def dense_eigenvalues(A: Operator) -> np.ndarray:
    """All eigenvalues, descending, from the dense symmetrised matrix ½(A + Aᵀ) (``eigvalsh`` in float64).

    Args:
        A: a square tensor or an operator with ``@`` and ``.dim`` (e.g. ``make_hvp(model, loss, batch)``).

    Returns:
        (dim,) numpy float64, descending.

    Raises:
        ValueError: if dim > MAX_DENSE_PARAMS.
    """
    A = check_operator(A)
    check_dense(dim_of(A))
    M = dense_matrix(A).double()
    return torch.linalg.eigvalsh(0.5 * (M + M.T)).flip(0).cpu().numpy()
