"""Sharpness metrics of a parameter vector: worst-case (ρ-ball), adaptive (ASAM), average-case (Gaussian).

All evaluate the model functionally at θ + ε (``torch.func.functional_call``): the caller's model is never
changed. λ_max and the Hessian trace live in ``sam_viz.hessian``.

- worst-case:   S_ρ(θ)   = max_{‖ε‖₂ ≤ ρ} L(θ + ε) − L(θ), by k steps of projected normalised gradient ascent.
- adaptive:     S^A_ρ(θ) = max_{‖T⁻¹ε‖₂ ≤ ρ} L(θ + ε) − L(θ), T = diag(|θ|) + η I (Kwon et al. 2021), ascent in δ = T⁻¹ε.
- average-case: S^avg_σ(θ) = E_{ε∼N(0, σ²I)} L(θ + ε) − L(θ), Monte-Carlo mean with its standard error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from .models import flatten, split_parameters

Batch = tuple[Tensor, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]

MAX_ASCENT_STEPS = 200
MAX_SAMPLES = 10_000


@dataclass(frozen=True)
class Sharpness:
    """A sharpness estimate.

    Attributes:
        value: the sharpness (perturbed loss minus loss).
        loss: L(θ).
        perturbed_loss: the worst (or mean) L(θ + ε) found.
        stderr: standard error of ``value`` (average-case; 0 for the deterministic ascent).
        eps_norm: ‖ε‖ of the worst perturbation found (worst-case and adaptive).
        method: "worst_case", "adaptive" or "average".
    """

    value: float
    loss: float
    perturbed_loss: float
    stderr: float
    eps_norm: float
    method: str


def _flat_params(model: nn.Module, weights: np.ndarray | Tensor | None) -> Tensor:
    p = next(model.parameters())
    if weights is None:
        return flatten(model)
    return torch.as_tensor(np.asarray(weights), dtype=p.dtype, device=p.device)


def _loss_at(model: nn.Module, loss_fn: LossFn, batch: Batch) -> Callable[[Tensor], Tensor]:
    def loss(flat: Tensor) -> Tensor:
        return loss_fn(functional_call(model, split_parameters(model, flat), (batch[0],)), batch[1])

    return loss


def _check(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"Invalid {name}: {value!r} (valid range [{low:g}, {high:g}])")


def worst_case(model: nn.Module, loss_fn: LossFn, batch: Batch, rho: float, *, steps: int = 10,
               weights: np.ndarray | None = None, adaptive: bool = False, eta: float = 0.01) -> Sharpness:
    """S_ρ(θ) = max_{‖ε‖ ≤ ρ} L(θ+ε) − L(θ) (``adaptive``: the ball ‖T⁻¹ε‖ ≤ ρ, T = |θ| + η).

    Projected ascent in δ (ε = T δ, T = I unless adaptive): δ ← Proj_ρ(δ + ρ·T∇L/‖T∇L‖) from δ = 0, so the first
    step is SAM's point ρ T∇L/‖T∇L‖ (k = 1 is SAM's first-order estimate). Steps of length ρ reach the far side
    of the ball at once; near a quadratic minimum this is a power iteration on the Hessian, which smaller steps
    (e.g. 2.5ρ/k) only slow down. The best iterate is kept, so more steps can only raise the estimate; it is a
    lower bound on the true maximum.

    Args:
        weights: flat parameter vector to evaluate at (default: the model's parameters).
        steps: ascent steps k, in [1, 200].

    Raises:
        ValueError: ρ negative or not finite, or steps outside [1, 200].
    """
    _check("rho", rho, 0.0, 1e6)
    _check("steps", steps, 1, MAX_ASCENT_STEPS)
    _check("eta", eta, 0.0, 1e6)
    theta = _flat_params(model, weights)
    loss_at = _loss_at(model, loss_fn, batch)
    scale = (theta.abs() + eta) if adaptive else torch.ones_like(theta)
    with torch.no_grad():
        base = float(loss_at(theta))
    best, best_eps = base, torch.zeros_like(theta)
    delta = torch.zeros_like(theta)
    for k in range(steps):
        eps = (scale * delta).requires_grad_(True)
        with torch.enable_grad():
            value = loss_at(theta + eps)
            (grad,) = torch.autograd.grad(value, eps)
        if k > 0 and float(value.detach()) > best:
            best, best_eps = float(value.detach()), eps.detach().clone()
        direction = scale * grad
        norm = direction.norm()
        if not torch.isfinite(norm) or float(norm) == 0.0:
            break
        delta = delta + rho * direction / norm
        delta_norm = float(delta.norm())
        if delta_norm > rho:
            delta = delta * (rho / delta_norm)
    with torch.no_grad():
        final_eps = scale * delta
        final = float(loss_at(theta + final_eps))
    if final > best:
        best, best_eps = final, final_eps
    return Sharpness(best - base, base, best, 0.0, float(best_eps.norm()), "adaptive" if adaptive else "worst_case")


def average_case(model: nn.Module, loss_fn: LossFn, batch: Batch, sigma: float, *, samples: int = 32, seed: int = 0,
                 weights: np.ndarray | None = None) -> Sharpness:
    """E_{ε∼N(0,σ²I)} L(θ+ε) − L(θ) by Monte Carlo; stderr = std(L(θ+ε_i)) / sqrt(samples).

    Raises:
        ValueError: σ negative or not finite, or samples outside [2, 10,000].
    """
    _check("sigma", sigma, 0.0, 1e6)
    _check("samples", samples, 2, MAX_SAMPLES)
    theta = _flat_params(model, weights)
    loss_at = _loss_at(model, loss_fn, batch)
    generator = torch.Generator().manual_seed(seed)
    values = []
    with torch.no_grad():
        base = float(loss_at(theta))
        for _ in range(samples):
            noise = torch.randn(theta.shape, generator=generator, dtype=torch.float64).to(theta)
            values.append(float(loss_at(theta + sigma * noise)))
    v = np.asarray(values)
    return Sharpness(float(v.mean() - base), base, float(v.mean()), float(v.std(ddof=1) / math.sqrt(samples)),
                     math.nan, "average")
