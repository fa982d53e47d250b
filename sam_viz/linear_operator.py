"""What the curvature estimators accept as a matrix: a square tensor or anything with ``A @ v`` and ``.dim``.

Lanczos, Hutch++, SLQ and the dense eigensolver only ever multiply by A, so tests pass plain matrices and the
app passes a ``HessianOperator``. The helpers here read an operator's size, dtype and device and apply it to a
block of vectors, whatever kind of operator it is.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor


class LinearOperator(Protocol):
    """Anything the estimators accept besides a square tensor: ``A @ v`` for v of shape (dim,), and ``dim``.

    Optional attributes ``dtype`` and ``device`` say where the estimators draw their vectors (default: float64 on
    the CPU); an operator that also takes blocks (dim, k) gets one call per block instead of one per column.
    """

    dim: int

    def __matmul__(self, v: Tensor) -> Tensor: ...


Operator = Tensor | LinearOperator


def check_operator(A: Operator) -> Operator:
    """``A`` itself, once it is known to be a square tensor or an operator with ``@`` and an integer ``dim``.

    Args:
        A: the candidate operator.

    Returns:
        ``A``, unchanged.

    Raises:
        ValueError: a tensor that is not square.
        TypeError: anything else without ``@`` and ``.dim``.
    """
    if isinstance(A, Tensor):
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"Expected a square matrix, got shape {tuple(A.shape)}")
        return A
    if not isinstance(getattr(A, "dim", None), int) or not hasattr(A, "__matmul__"):
        raise TypeError(f"Expected a square tensor or an operator with `@` and `.dim`, got {type(A)}")
    return A


def dim_of(A: Operator) -> int:
    """The operator's dimension."""
    return A.shape[0] if isinstance(A, Tensor) else A.dim


def dtype_of(A: Operator) -> torch.dtype:
    """The dtype the estimators compute in: the operator's, or float64."""
    return getattr(A, "dtype", torch.float64)


def device_of(A: Operator) -> torch.device:
    """The device the estimators put their vectors on: the operator's, or the CPU."""
    return torch.device(getattr(A, "device", "cpu"))


def matmat(A: Operator, V: Tensor) -> Tensor:
    """A V for a block (dim, k); operators that only take vectors get one product per column.

    Args:
        A: the operator.
        V: (dim, k) block.

    Returns:
        (dim, k) tensor.
    """
    if isinstance(A, Tensor) or getattr(A, "takes_blocks", False):
        return A @ V
    return torch.stack([A @ c for c in V.T], dim=1)


def randn(dim: int, generator: torch.Generator, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A Gaussian vector, drawn on the CPU in float64 so a seed gives the same vector on every device."""
    return torch.randn(dim, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)


def rademacher(dim: int, k: int, generator: torch.Generator, dtype: torch.dtype, device: torch.device) -> Tensor:
    """(dim, k) random signs ±1, drawn on the CPU (the same for a seed on every device)."""
    signs = torch.randint(0, 2, (dim, k), generator=generator, dtype=torch.int8)
    return (2 * signs - 1).to(device=device, dtype=dtype)
