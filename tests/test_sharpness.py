"""Sharpness metrics against closed forms on quadratics and ASAM's scale invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sam_viz import sharpness


class Quadratic(nn.Module):
    """L(w) = ½ wᵀAw, as a "model" whose output is the loss (the batch is ignored)."""

    def __init__(self, a: np.ndarray, w0: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("a", torch.as_tensor(a, dtype=torch.float64))
        self.w = nn.Parameter(torch.as_tensor(w0, dtype=torch.float64))

    def forward(self, x):
        return 0.5 * self.w @ self.a @ self.w + 0 * x.sum()


def _mean(out, y):
    return out


BATCH = (torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1))


def test_worst_case_on_a_quadratic_matches_the_exact_maximum():
    a, w0, rho = np.diag([10.0, 1.0]), np.array([0.01, 0.5]), 1.0
    model = Quadratic(a, w0)
    angles = np.linspace(0, 2 * np.pi, 200_001)
    circle = w0 + rho * np.stack([np.cos(angles), np.sin(angles)], 1)
    exact = (0.5 * np.einsum("ni,ij,nj->n", circle, a, circle)).max() - 0.5 * w0 @ a @ w0
    one = sharpness.worst_case(model, _mean, BATCH, rho, steps=1)
    many = sharpness.worst_case(model, _mean, BATCH, rho, steps=50)
    assert one.value < 0.9 * exact  # SAM's one step follows the gradient, which points the wrong way here
    assert many.value == pytest.approx(exact, rel=1e-3) and many.value <= exact + 1e-6  # the grid maximum is itself ~1e-9 low
    assert many.eps_norm == pytest.approx(rho, rel=1e-6)
    assert torch.equal(model.w.detach(), torch.as_tensor(w0))  # the model is untouched


def test_worst_case_near_a_minimum_is_half_rho_squared_lambda_max():
    a = np.diag([4.0, 2.0, 0.5])
    rho = 0.1
    s = sharpness.worst_case(Quadratic(a, np.array([1e-6, 1e-4, 1e-4])), _mean, BATCH, rho, steps=100)
    assert s.value == pytest.approx(0.5 * rho**2 * 4.0, rel=1e-2)


def test_average_case_is_half_sigma_squared_trace():
    a = np.diag([3.0, 1.0, 0.5, 0.25])
    s = sharpness.average_case(Quadratic(a, np.ones(4)), _mean, BATCH, sigma=0.2, samples=2000, seed=1)
    expected = 0.5 * 0.2**2 * np.trace(a)
    assert abs(s.value - expected) < 3 * s.stderr and s.stderr > 0


def _relu_net(scale: float) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2)).double()
    with torch.no_grad():  # the same function: ReLU is positively homogeneous
        net[0].weight.mul_(scale)
        net[0].bias.mul_(scale)
        net[2].weight.div_(scale)
    return net


def test_adaptive_sharpness_is_scale_invariant_and_plain_is_not():
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(64, 2, generator=g, dtype=torch.float64), torch.randint(0, 2, (64,), generator=g))
    ce = nn.functional.cross_entropy
    a, b = _relu_net(1.0), _relu_net(5.0)
    assert float(ce(a(batch[0]), batch[1]).detach()) == pytest.approx(float(ce(b(batch[0]), batch[1]).detach()), rel=1e-12)
    ada = [sharpness.worst_case(m, ce, batch, 0.1, steps=5, adaptive=True, eta=0.0).value for m in (a, b)]
    plain = [sharpness.worst_case(m, ce, batch, 0.1, steps=5).value for m in (a, b)]
    assert ada[0] == pytest.approx(ada[1], rel=1e-6)
    assert abs(plain[0] - plain[1]) > 0.05 * abs(plain[0])


def test_bad_arguments_raise():
    model = Quadratic(np.eye(2), np.ones(2))
    with pytest.raises(ValueError, match="rho"):
        sharpness.worst_case(model, _mean, BATCH, -1.0)
    with pytest.raises(ValueError, match="steps"):
        sharpness.worst_case(model, _mean, BATCH, 0.1, steps=0)
    with pytest.raises(ValueError, match="samples"):
        sharpness.average_case(model, _mean, BATCH, 0.1, samples=1)
