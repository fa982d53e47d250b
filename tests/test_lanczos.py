"""Lanczos top-k against numpy's ``eigh`` and scipy's ``eigsh`` of a dense float64 Hessian (autograd's)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.sparse.linalg import LinearOperator, eigsh
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from sam_viz.hvp import make_hvp
from sam_viz.lanczos import top_eigenvalues

pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
              pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def case():
    """A float64 MLP (131 parameters), its operator, and the dense Hessian from torch.autograd.functional."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 2, generator=g, dtype=torch.float64), torch.randint(0, 3, (64,), generator=g)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]

    def loss(flat: torch.Tensor) -> torch.Tensor:
        parts = torch.split(flat, [math.prod(s) for s in shapes])
        return F.cross_entropy(functional_call(model, dict(zip(names, (c.view(s) for c, s in zip(parts, shapes)))),
                                               (x,)), y)

    H = torch.autograd.functional.hessian(loss, torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    return make_hvp(model, F.cross_entropy, (x, y)), H.numpy()


def test_top_k_and_lowest_equal_numpy_eigh(case):
    op, H = case
    exact = np.linalg.eigh(H)[0]
    r = top_eigenvalues(op, k=4, smallest=2, method="lanczos")
    assert r.converged.all() and r.smallest_converged.all()
    scale = abs(exact).max()
    np.testing.assert_allclose(r.eigenvalues, exact[::-1][:4], rtol=0, atol=1e-6 * scale)
    np.testing.assert_allclose(r.smallest, exact[:2], rtol=0, atol=1e-6 * scale)


def test_top_k_equals_scipy_eigsh(case):
    op, H = case
    A = LinearOperator(H.shape, matvec=lambda v: H @ v, dtype=np.float64)
    theirs = np.sort(eigsh(A, k=4, which="LA", tol=1e-12, v0=np.ones(H.shape[0]), return_eigenvectors=False))[::-1]
    ours = top_eigenvalues(op, k=4)
    np.testing.assert_allclose(ours.eigenvalues, theirs, rtol=0, atol=1e-6 * abs(theirs).max())
    # the same Ritz vectors: |⟨q_ours, q_exact⟩| ≈ 1 for a well-separated top eigenvalue
    vals, vecs = np.linalg.eigh(H)
    assert abs(ours.eigenvectors[:, 0] @ vecs[:, -1]) == pytest.approx(1.0, abs=1e-6)


def test_estimators_take_an_operator_not_a_model(case):
    op, _ = case
    with pytest.raises(TypeError):
        top_eigenvalues(nn.Linear(2, 2))
