"""LookSAM (Liu et al., CVPR 2022): a full SAM step only every k steps; in between, reuse the part of SAM's gradient
orthogonal to the plain gradient, so those steps cost one gradient instead of two.

    every k-th step (t mod k = 0):                  the other steps:
        s = ∇L_B(θ); e = ρ s/(‖s‖ + 1e-12)              s = ∇L_B(θ)
        g = ∇L_B(θ + e)                                  d = s + α (‖s‖/(‖g_v‖ + 1e-8)) g_v
        g_v = g − ‖g‖ cos(s, g) s/‖s‖                    θ ← base(θ, d)
        θ ← base(θ, g)

As pytorch-optimizer 4.1.0's ``LookSAM`` (the reference this rule is checked against), every norm and cosine of
the projection and of the reuse is taken **per parameter tensor**, not over the whole model (ŝ = s/max(‖s‖,
1e-12) per tensor); the perturbation's norm is SAM's global one. The paper has no official code; pytorch-
optimizer follows rollovd/LookSAM.

A tensor whose gradients span one direction (the output bias of a two-class cross-entropy: entries (a, −a)) has
g ∥ s, so its g_v is rounding noise; the 1e-8 in the reuse keeps that noise at ~‖s‖·1e-9.

On the steps in between the report has ‖e‖ = 0, ρ_eff = 0, no perturbed loss (NaN) and, as the "perturbed"
gradient norm, that of the reconstructed SAM gradient d the step descends with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .functional import BASES, State, Tensors, _zeros_like, at, global_norm, per_run, sam_perturb
from .oracle import Oracle
from .programs import Program, Report
from .variant import ADAPTIVE, HParamSpec, Variant, plain_gd, sam_hparams

PERTURB_EPS = 1e-12  # pytorch-optimizer's perturb_eps: the clamp of the per-tensor norms in the projection
REUSE_EPS = 1e-8  # pytorch-optimizer adds this to ‖g_v‖ when it reuses g_v


def looksam_init(params: Tensors, hp: dict) -> State:
    base_init = BASES[hp.get("base", "sgd")][0]
    return {"gv": _zeros_like(params), "looksam_step": 0, **base_init(params, hp)}


def _norms(tensor: Tensor) -> Tensor:
    """The L2 norm of one parameter tensor per run, (R,)."""
    return tensor.reshape(tensor.shape[0], -1).norm(dim=1)


def orthogonal_part(s: Tensors, g: Tensors) -> list[Tensor]:
    """g_v = g − ‖g‖ ⟨ŝ, ĝ⟩ ŝ per tensor, with ŝ = s/max(‖s‖, 1e-12) and ĝ likewise: SAM's gradient minus its
    projection on the plain gradient's direction."""
    out = []
    for s_i, g_i in zip(s, g):
        g_norm = _norms(g_i)
        s_unit = s_i / per_run(_norms(s_i).clamp_min(PERTURB_EPS), s_i)
        g_unit = g_i / per_run(g_norm.clamp_min(PERTURB_EPS), g_i)
        cosine = (s_unit * g_unit).reshape(s_i.shape[0], -1).sum(1)
        out.append(g_i - per_run(g_norm * cosine, g_i) * s_unit)
    return out


def reuse(s: Tensors, gv: Tensors, alpha: object) -> list[Tensor]:
    """d = s + α (‖s‖/(‖g_v‖ + 1e-8)) g_v per tensor: the plain gradient plus the stored orthogonal part, rescaled
    to the plain gradient's size."""
    return [s_i + per_run(at(alpha, i), s_i) * per_run(_norms(s_i) / (_norms(v_i) + REUSE_EPS), s_i) * v_i
            for i, (s_i, v_i) in enumerate(zip(s, gv))]


def looksam_step(params: list[Tensor], state: State, hp: dict, oracle: Oracle, names: Sequence[str]) -> Report:
    """One LookSAM step: SAM plus storing g_v when t mod k = 0 (two gradients), else the reuse (one gradient)."""
    s = oracle.grad().grads
    update = BASES[hp.get("base", "sgd")][1]
    refresh = state["looksam_step"] % hp["k"] == 0
    state["looksam_step"] += 1
    if refresh:
        eps, info = sam_perturb(params, s, state, hp)
        at_probe = oracle.grad(torch._foreach_add(list(params), list(eps)))
        g = at_probe.grads
        for stored, v in zip(state["gv"], orthogonal_part(s, g)):
            stored.copy_(v)
        lr = update(params, g, state, hp)["effective_lr"]
        return {**info, "perturbed_grad_norm": global_norm(g), "effective_lr": lr,
                "perturbed_loss": at_probe.loss, "perturbation": eps}
    direction = reuse(s, state["gv"], hp["alpha"])
    grad_norm = global_norm(s)
    lr = update(params, direction, state, hp)["effective_lr"]
    zero = torch.zeros_like(grad_norm)
    return {"grad_norm": grad_norm, "eps_norm": zero, "effective_rho": zero, "perturbed_grad_norm": global_norm(direction),
            "effective_lr": lr, "perturbed_loss": torch.full_like(grad_norm, math.nan), "perturbation": None}


VARIANT = Variant(
    name="looksam", label="LookSAM",
    description="SAM every k steps only; in between, the plain gradient plus the stored part of SAM's gradient "
                "orthogonal to it (one gradient per step instead of two). Follows pytorch-optimizer's LookSAM: "
                "the projection is per parameter tensor.",
    update_rule="t mod k = 0: SAM, g_v = g − ‖g‖cos(s, g) s/‖s‖;  else θ ← base_step(θ, s + α (‖s‖/‖g_v‖) g_v)",
    paper="Liu, Mai, Chen, Hsieh, You, Towards Efficient and Scalable Sharpness-Aware Minimization (CVPR 2022)",
    paper_url="https://arxiv.org/abs/2203.02714",
    reference_code="pytorch-optimizer 4.1.0 LookSAM (after rollovd/LookSAM); no official code", status="stable",
    hparams=sam_hparams(
        0.1,
        k=HParamSpec(10, kind="int", low=1, high=1000, help="k: a full SAM step every k steps (1 gives SAM)."),
        alpha=HParamSpec(0.7, low=0.0, high=1.0, help="α: weight of the reused orthogonal part of SAM's gradient "
                                                        "on the steps in between."),
        adaptive=ADAPTIVE,
    ),
    program=Program(looksam_init, looksam_step, two_pass=True),
    latex=r"t \bmod k = 0:\; g_t = \nabla L_B\!\big(\theta_t + \rho\tfrac{s_t}{\lVert s_t\rVert}\big),\; "
          r"g_v = g_t - \lVert g_t\rVert \cos(s_t, g_t)\,\frac{s_t}{\lVert s_t\rVert},\; \theta_{t+1} = "
          r"\mathrm{base}(\theta_t, g_t);\qquad \text{else}\; \theta_{t+1} = \mathrm{base}\Big(\theta_t,\ "
          r"s_t + \alpha\,\frac{\lVert s_t\rVert}{\lVert g_v\rVert}\, g_v\Big)",
    where="Perturbations and cost: ‖e‖ is ρ on every k-th step and 0 in between, and the gradient evaluations per "
          "step read 2, 1, 1, …; the per-tensor projection (not a global one) is pytorch-optimizer's.",
    gd_limit=plain_gd,
)
