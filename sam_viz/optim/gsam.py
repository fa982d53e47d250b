"""GSAM (Zhuang et al., ICLR 2022): SAM's gradient minus α times the part of the ascent gradient orthogonal to it,
which descends the surrogate gap h = L(θ + e) − L(θ) without changing the perturbed loss to first order.

    s = ∇L_B(θ)                      # ascent gradient, step batch
    ρ_t = ρ − (ρ − ρ_min)(1 − η_t/η_max)                     # ρ follows the learning rate (ProportionScheduler)
    e = ρ_t s/(‖s‖ + 1e-12)
    g = ∇L_B(θ + e)
    s_∥ = cos(s, g) ‖s‖ g/‖g‖,  s_⊥ = s − s_∥
    θ ← base(θ, g − α s_⊥)

The update follows pytorch-optimizer 4.1.0's ``GSAM`` (``gradient_decompose``: cos = ⟨s, g⟩/(‖g‖‖s‖ + 1e-12), s_∥ =
cos ‖s‖ g/(‖g‖ + 1e-12)) and the official juntang-zhuang/GSAM ``gsam/gsam.py``. The radius schedule is this
project's reading of their ``ProportionScheduler(max_lr, min_lr=0, max_value=ρ, min_value=ρ_min)``: η_max is the
largest learning rate the tensor's group has had so far (its first for a decaying schedule, so it equals the
reference set-up with ``max_lr`` = the initial learning rate), η_min = 0. With a constant learning rate ρ_t = ρ
exactly, whatever ρ_min. Each parameter group's ρ_t follows its own learning rate.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .functional import BASES, NORM_EPS, PerTensor, State, Tensors, _full, at, global_norm, per_run, sam_perturb
from .oracle import Oracle
from .programs import Program, Report
from .variant import ADAPTIVE, HParamSpec, Variant, plain_gd, sam_hparams

_LR_MAX = "gsam_lr_max"  # per tensor, (R,): the largest learning rate seen, η_max of the ρ schedule


def gsam_init(params: Tensors, hp: dict) -> State:
    base_init = BASES[hp.get("base", "sgd")][0]
    lr = hp["lr"]
    return {_LR_MAX: [_full([p], at(lr, i)) for i, p in enumerate(params)], **base_init(params, hp)}


def gsam_radius(state: State, hp: dict) -> Tensor | PerTensor:
    """ρ_t = ρ − (ρ − ρ_min)(1 − η_t/η_max) per run, after raising η_max to η_t (the schedule in the module
    docstring); one (R,) tensor, or a ``PerTensor`` where parameter groups differ in lr, ρ or ρ_min.

    1 − η_t/η_max is computed as (η_max − η_t)/η_max, so that a constant learning rate gives exactly ρ; a group
    whose learning rate has always been 0 (η_max = 0) keeps ρ.
    """
    lr, rho, rho_min = hp["lr"], hp["rho"], hp["rho_min"]
    maxima = state[_LR_MAX]
    if isinstance(lr, (Tensor, PerTensor)):
        for i, lr_max in enumerate(maxima):
            lr_i = at(lr, i)
            torch.maximum(lr_max, torch.as_tensor(lr_i, dtype=lr_max.dtype, device=lr_max.device), out=lr_max)
    else:  # one learning rate for every tensor (the training loop, a one-group optimizer): one fused kernel
        torch._foreach_clamp_min_(maxima, lr)

    def radius(i: int) -> Tensor:
        lr_max = maxima[i]
        decay = (lr_max - at(lr, i)) / lr_max.clamp_min(torch.finfo(lr_max.dtype).tiny)
        rho_i = at(rho, i)
        return rho_i - (rho_i - at(rho_min, i)) * decay

    if not any(isinstance(h, PerTensor) for h in (lr, rho, rho_min)):
        return radius(0)  # one radius for every tensor: SAM's fused perturbation and closed-form ‖e‖ apply
    return PerTensor(radius(i) for i in range(len(maxima)))


def decompose(s: Tensors, g: Tensors, alpha: object, s_norm: Tensor, g_norm: Tensor) -> list[Tensor]:
    """GSAM's descent direction g − α s_⊥, with s_⊥ = s − cos(s, g)‖s‖ g/‖g‖ (pytorch-optimizer's stabilisers).

    Args:
        s, g: the gradients at θ and at θ + e, (R, *shape) per tensor.
        alpha: α, a number, (R,) tensor or ``PerTensor``.
        s_norm, g_norm: their global norms, (R,).
    """
    runs = s[0].shape[0]
    if runs == 1:  # one run: one dot product over the concatenated tensors
        inner = torch.dot(torch.cat([a.reshape(-1) for a in s]), torch.cat([b.reshape(-1) for b in g])).reshape(1)
    else:
        inner = sum((a * b).reshape(runs, -1).sum(1) for a, b in zip(s, g))
    cosine = inner / (g_norm * s_norm + NORM_EPS)
    parallel = cosine * s_norm / (g_norm + NORM_EPS)  # s_∥ = parallel · g
    if runs == 1 and not isinstance(alpha, (Tensor, PerTensor)):  # fused kernels, pytorch-optimizer's order
        vertical = torch._foreach_mul(list(g), -parallel.reshape(()))
        torch._foreach_add_(vertical, list(s))
        return list(torch._foreach_add(list(g), vertical, alpha=-alpha))
    return [g_i - per_run(at(alpha, i), g_i) * (s_i - per_run(parallel, g_i) * g_i)
            for i, (s_i, g_i) in enumerate(zip(s, g))]


def gsam_step(params: list[Tensor], state: State, hp: dict, oracle: Oracle, names: Sequence[str]) -> Report:
    """One GSAM step (module docstring): two gradients on the step's batch, as SAM."""
    at_theta = oracle.grad()
    s = at_theta.grads
    rho_t = gsam_radius(state, hp)
    eps, info = sam_perturb(params, s, state, {**hp, "rho": rho_t})
    at_probe = oracle.grad(torch._foreach_add(list(params), list(eps)))
    g = at_probe.grads
    g_norm = global_norm(g)
    direction = decompose(s, g, hp["alpha"], info["grad_norm"], g_norm)
    lr = BASES[hp.get("base", "sgd")][1](params, direction, state, hp)["effective_lr"]
    # the surrogate gap GSAM descends; NaN in the torch.optim adapter, whose plain closure gives no loss at θ
    gap = at_probe.loss - at_theta.loss
    return {**info, "perturbed_grad_norm": g_norm, "effective_lr": lr, "perturbed_loss": at_probe.loss,
            "perturbation": eps, "extra": {"surrogate_gap": gap}}


VARIANT = Variant(
    name="gsam", label="GSAM",
    description="Surrogate-gap guided SAM: descend with SAM's gradient minus α times the ascent gradient's part "
                "orthogonal to it, which shrinks the surrogate gap L(θ + e) − L(θ). Follows pytorch-optimizer's "
                "GSAM; the ρ schedule (ρ_t ∝ the learning rate, η_max the largest seen) is this project's reading.",
    update_rule="e = ρ_t s/‖s‖;  g = ∇L(θ + e);  s_⊥ = s − cos(s, g)‖s‖ g/‖g‖;  θ ← base_step(θ, g − α s_⊥)",
    paper="Zhuang et al., Surrogate Gap Guided Sharpness-Aware Minimization (ICLR 2022)",
    paper_url="https://arxiv.org/abs/2203.08065",
    reference_code="juntang-zhuang/GSAM gsam/gsam.py; pytorch-optimizer 4.1.0 GSAM", status="stable",
    hparams=sam_hparams(
        0.05,
        alpha=HParamSpec(0.4, low=0.0, high=1.0, help="α: how much of the ascent gradient's orthogonal part to "
                                                        "subtract (0 gives SAM)."),
        rho_min=HParamSpec(0.0, low=0.0, high=10.0, help="ρ_min: the radius as the learning rate goes to 0; ρ_t = ρ "
                                                          "while the learning rate stays at its largest value."),
        adaptive=ADAPTIVE,
    ),
    program=Program(gsam_init, gsam_step, two_pass=True),
    latex=r"e_t = \rho_t\,\frac{s_t}{\lVert s_t\rVert},\; g_t = \nabla L_B(\theta_t + e_t),\; "
          r"s_\perp = s_t - \frac{\langle s_t, g_t\rangle}{\lVert g_t\rVert^2}\, g_t,\qquad "
          r"\theta_{t+1} = \mathrm{base}\big(\theta_t,\ g_t - \alpha\, s_\perp\big)",
    where="Perturbations: the surrogate gap L(θ + e) − L(θ) on each step's batch (compare it with SAM's "
          "perturbed loss minus batch loss). The ρ schedule ρ_t = ρ − (ρ − ρ_min)(1 − η_t/η_max) is this "
          "project's reading of GSAM's ProportionScheduler (η_min = 0, η_max the largest learning rate seen); "
          "the app's runs keep a constant learning rate, so there ρ_t = ρ.",
    series={"surrogate_gap": "Surrogate gap L(θ + e) − L(θ) on the step's batch"},
    gd_limit=plain_gd,
)
