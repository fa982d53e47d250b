"""WSAM (Yue et al., KDD 2023): the loss plus a weighted sharpness term, L + γ/(1−γ)·(L(θ + e) − L(θ)), so its
gradient is s + α (g − s) with α = γ/(1 − γ).

    s = ∇L_B(θ); e = ρ s/(‖s‖ + 1e-12); g = ∇L_B(θ + e); α = γ/(1 − γ)
    decoupled (default):  θ ← base(θ, s);  θ ← θ − η α (g − s)     # the sharpness term outside the base optimizer
    coupled:              θ ← base(θ, g + (1 − α)(s − g))          # = s + α (g − s)

As pytorch-optimizer 4.1.0's ``WSAM`` and the official dlrover ``atorch/optimizers/wsam.py``: in the decoupled form
the base optimizer (its momentum, weight decay, Adam moments) sees only s, and the sharpness step uses the group's
learning rate. γ = 0 is the base optimizer; coupled with γ = ½ (α = 1) it is SAM. pytorch-optimizer's ``max_norm``
gradient clipping is not offered.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .functional import BASES, State, Tensors, _map, at, global_norm, per_run, sam_perturb
from .oracle import Oracle
from .programs import Program, Report
from .variant import ADAPTIVE, HParamSpec, Variant, plain_gd, sam_hparams


def wsam_init(params: Tensors, hp: dict) -> State:
    return BASES[hp.get("base", "sgd")][0](params, hp)


def sharpness_weight(gamma: object) -> object:
    """α = γ/(1 − γ): the weight of the sharpness term (a number, (R,) tensor or ``PerTensor``)."""
    return _map(gamma, lambda g: g / (1 - g))


def wsam_step(params: list[Tensor], state: State, hp: dict, oracle: Oracle, names: Sequence[str]) -> Report:
    """One WSAM step (module docstring): two gradients on the step's batch, as SAM."""
    s = oracle.grad().grads
    eps, info = sam_perturb(params, s, state, hp)
    at_probe = oracle.grad(torch._foreach_add(list(params), list(eps)))
    g = at_probe.grads
    alpha = sharpness_weight(hp["gamma"])
    update = BASES[hp.get("base", "sgd")][1]
    if hp["decouple"]:
        lr = update(params, s, state, hp)["effective_lr"]
        rate = hp["lr"]
        for i, (p, s_i, g_i) in enumerate(zip(params, s, g)):
            p.sub_(per_run(at(rate, i), p) * per_run(at(alpha, i), p) * (g_i - s_i))
    else:  # pytorch-optimizer's lerp: g + (1 − α)(s − g)
        mixed = [torch.lerp(g_i, s_i, per_run(1 - at(alpha, i), g_i)) for i, (s_i, g_i) in enumerate(zip(s, g))]
        lr = update(params, mixed, state, hp)["effective_lr"]
    return {**info, "perturbed_grad_norm": global_norm(g), "effective_lr": lr, "perturbed_loss": at_probe.loss,
            "perturbation": eps}


VARIANT = Variant(
    name="wsam", label="WSAM",
    description="Weighted SAM: the loss plus γ/(1−γ) times the sharpness L(θ + e) − L(θ); decoupled, the sharpness "
                "term is a step of its own after the base optimizer's. Follows pytorch-optimizer's WSAM.",
    update_rule="α = γ/(1−γ);  decoupled: θ ← base_step(θ, s) − η α (g − s);  else θ ← base_step(θ, s + α (g − s))",
    paper="Yue et al., Sharpness-Aware Minimization Revisited: Weighted Sharpness as a Regularization Term (KDD 2023)",
    paper_url="https://arxiv.org/abs/2305.15817",
    reference_code="intelligent-machine-learning/dlrover atorch/optimizers/wsam.py; pytorch-optimizer 4.1.0 WSAM",
    status="stable",
    hparams=sam_hparams(
        0.05,
        gamma=HParamSpec(0.9, low=0.0, high=0.99, help="γ: weight of the sharpness term, α = γ/(1−γ) (0 gives the "
                                                         "base optimizer; ½ with decouple off gives SAM)."),
        decouple=HParamSpec(True, kind="bool", help="Apply the sharpness term −η α (g − s) after the base step, "
                                                    "outside its momentum and moments."),
        adaptive=ADAPTIVE,
    ),
    program=Program(wsam_init, wsam_step, two_pass=True),
    latex=r"\alpha = \tfrac{\gamma}{1-\gamma},\; g_t = \nabla L_B(\theta_t + e_t),\qquad "
          r"\theta_{t+1} = \mathrm{base}(\theta_t, s_t) - \eta\,\alpha\,(g_t - s_t)\ \text{(decoupled)},\quad "
          r"\theta_{t+1} = \mathrm{base}\big(\theta_t,\ s_t + \alpha (g_t - s_t)\big)",
    where="Perturbations: SAM's probe; Loss surface: γ sets how strongly the path is pushed away from sharp "
          "regions (γ = 0 is the base optimizer).",
    gd_limit=plain_gd,
)
