"""SAMPa (Xie, Pethick, Cevher, NeurIPS 2024): SAM whose two gradients do not wait for each other.

SAM's perturbed gradient needs the ascent gradient first. SAMPa perturbs along the gradient taken at the previous
step's look-ahead point y_t instead, so the two gradients of a step are independent (the official code computes
them on two GPUs at once)::

    x̃_t     = θ_t + ρ ∇f(y_t)/‖∇f(y_t)‖
    y_{t+1} = θ_t − η ∇f(y_t)
    θ_{t+1} = θ_t − η [(1 − λ) ∇f(x̃_t) + λ ∇f(y_{t+1})]

This module is the single-device sequential form of LIONS-EPFL/SAMPa ``train.py`` (spec §6b). The state is g_y, the
gradient at the look-ahead point of the step before (zeros at the first step, so the first e is 0), and the oracle
remembers the previous batch::

    e      = ρ g_y / (‖g_y‖ + 1e−12)
    g_pert = ∇f(θ + e; B_prev)                  # the batch g_y was computed on
    y      = θ − η (g_y + wd·θ + μ·b)           # the SGD step g_y would take (momentum buffer b, weight decay)
    g_new  = ∇f(y; B_t)
    θ      ← SGD(θ, (1 − λ) g_pert + λ g_new)   # momentum μ, weight decay wd
    g_y    ← g_new

At the first step there is no previous batch: as in the code (``data1 = data``), it is the first batch itself, and
with e = 0 the perturbed gradient is θ_0's own gradient.

Where this differs from the official code, and why:

* the code recovers g_y from the all-reduced gradient sum divided by λ, so at λ = 0 its perturbation vanishes;
  here g_y is state, so λ = 0 still perturbs (and with ρ = 0 and full batches the step is SGD's);
* the code's look-ahead skips the weight-decay and momentum terms while the SGD buffer does not exist yet (the first
  step); here the buffer starts at zero and y takes the weight-decay term from the first step on, as the spec
  writes it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .functional import (
    _full,
    _normalized_ascent,
    _normalized_norm,
    _zeros_like,
    at,
    global_norm,
    per_run,
    sgd_init,
    sgd_update,
)
from .oracle import Oracle
from .programs import Program, Report
from .variant import MOMENTUM, HParamSpec, Variant, lr_spec, plain_gd, rho_spec


def sampa_init(params: Sequence[Tensor], hp: dict) -> dict:
    """SGD's state (momentum buffer, step counter) and g_y, the look-ahead gradient of the step before."""
    return {**sgd_init(params, hp), "g_y": _zeros_like(params)}


def lookahead(params: Sequence[Tensor], g_y: Sequence[Tensor], state: dict, hp: dict) -> list[Tensor]:
    """y = θ − η (g_y + wd·θ + μ·b): the step SGD would take with g_y as its gradient, the state left untouched."""
    wd, mom = hp.get("weight_decay", 0.0), hp.get("momentum", 0.0)
    out = []
    for i, (p, g, buf) in enumerate(zip(params, g_y, state["momentum_buffer"])):
        d = g + per_run(at(wd, i), p) * p + per_run(at(mom, i), p) * buf
        out.append(p - per_run(at(hp["lr"], i), p) * d)
    return out


def sampa_step(params: list[Tensor], state: dict, hp: dict, oracle: Oracle, names: Sequence[str]) -> Report:
    """One sequential SAMPa step in place (module docstring): two gradients, neither needing the other."""
    g_y, rho, lmbda = state["g_y"], hp["rho"], hp["lmbda"]
    g_y_norm = global_norm(g_y)
    eps = _normalized_ascent(g_y, rho, g_y_norm)  # exactly 0 at the first step (g_y = 0)
    if state["step"] == 0:  # no previous batch yet: the first batch is its own "previous" one, and θ + 0 = θ
        perturbed = oracle.grad()
    else:
        perturbed = oracle.grad(torch._foreach_add(list(params), eps), batch="previous")
    ahead = oracle.grad(lookahead(params, g_y, state, hp))  # ∇f(y_{t+1}; B_t)
    mixed = [(1 - per_run(at(lmbda, i), gp)) * gp + per_run(at(lmbda, i), gp) * gn
             for i, (gp, gn) in enumerate(zip(perturbed.grads, ahead.grads))]
    lr = sgd_update(params, mixed, state, hp)["effective_lr"]
    torch._foreach_copy_(g_y, ahead.grads)
    eps_norm = _normalized_norm(rho, g_y_norm)
    return {"grad_norm": g_y_norm, "eps_norm": global_norm(eps) if eps_norm is None else eps_norm,
            "effective_rho": _full(params, rho), "perturbed_grad_norm": global_norm(perturbed.grads),
            "effective_lr": lr, "perturbed_loss": perturbed.loss, "perturbation": eps}


VARIANT = Variant(
    name="sampa", label="SAMPa",
    description="Parallelised SAM: perturb along the previous look-ahead gradient, so a step's two gradients are "
                "independent and can run at the same time (sequential form here).",
    update_rule="e = ρ g_y/‖g_y‖; y = θ − η(g_y + wd·θ + μ b); θ ← SGD(θ, (1−λ)∇f(θ + e; B_prev) + λ∇f(y; B)); g_y ← ∇f(y; B)",
    paper="Xie, Pethick, Cevher, SAMPa: Sharpness-aware Minimization Parallelized (NeurIPS 2024)",
    paper_url="https://arxiv.org/abs/2410.10683", reference_code="LIONS-EPFL/SAMPa train.py (sequential form, spec §6b)",
    status="stable",
    hparams={
        "lr": lr_spec(0.1),
        "rho": rho_spec(0.1),
        "lmbda": HParamSpec(0.2, low=0.0, high=1.0, help="λ (the code's --og): weight of the look-ahead gradient "
                            "∇f(y) in the update; 0 descends with the perturbed gradient alone."),
        "momentum": MOMENTUM,
        # the paper trains with 5e-4; 0 here, as every other optimizer's default, so that a comparison in the app
        # differs in the method only
        "weight_decay": HParamSpec(0.0, low=0.0, high=1.0, help="Weight decay, added to the gradient (also in the "
                                   "look-ahead y). The paper's runs use 5e-4; 0 by default like the other optimizers."),
    },
    program=Program(sampa_init, sampa_step, two_pass=True),
    latex=r"e_t = \rho\,\frac{g^y_t}{\lVert g^y_t\rVert},\; y_{t+1} = \theta_t - \eta\,(g^y_t + \lambda_{wd}\theta_t"
          r" + \mu b_{t-1}),\; g^y_{t+1} = \nabla L_{B_t}(y_{t+1}),\qquad \theta_{t+1} = \mathrm{SGD}\big(\theta_t,\ "
          r"(1-\lambda)\nabla L_{B_{t-1}}(\theta_t + e_t) + \lambda\, g^y_{t+1}\big)",
    where="Perturbations: e_t follows the previous step's look-ahead gradient g_y (the first e is 0; grad norm shows "
          "‖g_y‖, since SAMPa never takes the gradient at θ_t) and is probed on the previous batch. Cost: two "
          "gradient evaluations per step, like SAM, but independent ones: on two devices a step takes one SGD "
          "step's time. The sequential form and its first step are this project's reading of the official code.",
    batch_closure=True,
    uses_previous_batch=True,
    gd_limit=plain_gd,
)
