"""LETS (Wang, Jiang, Fu, Zhang, ECML-PKDD 2024): SAM whose radius ρ is learned on a validation split.

The paper poses a bilevel problem: the lower level is SAM training, the upper level chooses ρ to minimise the
squared generalisation gap ½(L_val − L_train)². Only that much is confirmed (its abstract; no official code was
found). The rule below is **this project's reading** (spec §6b, [INFERRED])::

    every step:          SAM with the current ρ_t:  e = ρ_t s/(‖s‖ + 1e−12),  θ ← base(θ, ∇L_B(θ + e))
    every ``every`` steps, at θ_t, with ŝ = s/(‖s‖ + 1e−12) and the step's batch B:
        θ⁺(ρ)  = θ_t − η ∇L_B(θ_t + ρ ŝ)                       # the one-step unrolled SAM update
        h(ρ)   = ½ (L_val(θ⁺(ρ)) − L_B(θ⁺(ρ)))²
        h'(ρ_t) ≈ (h(ρ_t + δ) − h(ρ_t − δ)) / (2δ)            # a central difference, δ = ``FD_STEP``
        ρ_{t+1} = clip(ρ_t − β h'(ρ_t), ρ_min, ρ_max)          # β = ``rho_lr``

Choices the paper does not settle, made here:

* the hypergradient is a central finite difference in ρ through one unrolled step (the abstract names no
  approximation): every quantity is a loss or gradient the oracle answers, at a cost of two backward passes (the
  gradients at θ_t + (ρ ± δ) ŝ) and four forward passes (L_val and L_B at the two θ⁺) per ρ-update; its error is
  O(δ²) (``tests/test_lets.py`` checks it against autograd through the unrolled step);
* the unrolled step is plain gradient descent with the run's η, whatever the base optimizer (momentum and Adam's
  scaling are left out of θ⁺(ρ)), and "L_train" is the step's minibatch loss;
* ρ is one number per run, its bounds apply to learned values only (with ``rho_lr`` = 0 nothing is learned and the
  run is SAM's to rounding, even with ρ outside them), and a non-finite hypergradient leaves ρ where it is.

The validation split is carved out of the training set (``Config.val_fraction``), never the test split: the
oracle's ``"heldout"`` batch (a ``BatchClosure``'s ``heldout`` in the ``torch.optim`` adapter).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .functional import BASES, _full, _normalized_ascent, at, global_norm, per_run, sam_perturb
from .oracle import Oracle
from .programs import Program, Report
from .variant import SAM_STEP, HParamSpec, Variant, plain_gd, sam_hparams

FD_STEP = 1e-3  # δ of the central difference in ρ: O(δ²) truncation, round-off still small in float32


def lets_init(params: Sequence[Tensor], hp: dict) -> dict:
    """The base optimizer's state, ρ per run (from the ``rho`` hyperparameter) and the step counter."""
    return {**BASES[hp.get("base", "sgd")][0](params, hp), "rho": _full(params, hp["rho"]), "lets_step": 0}


def unrolled_gap(params: Sequence[Tensor], direction: Sequence[Tensor], rho: Tensor, hp: dict,
                 oracle: Oracle) -> Tensor:
    """L_val(θ⁺) − L_B(θ⁺) with θ⁺ = θ − η ∇L_B(θ + ρ·direction), per run (R,): one backward, two forward passes."""
    point = [p + per_run(rho, d) * d for p, d in zip(params, direction)]
    g = oracle.grad(point).grads
    ahead = [p - per_run(at(hp["lr"], i), p) * gi for i, (p, gi) in enumerate(zip(params, g))]
    return oracle.loss(ahead, batch="heldout").loss - oracle.loss(ahead).loss


def radius_hypergradient(params: Sequence[Tensor], s: Sequence[Tensor], rho: Tensor, hp: dict, oracle: Oracle,
                         delta: float = FD_STEP) -> tuple[Tensor, Tensor]:
    """d/dρ of ½(L_val(θ⁺(ρ)) − L_B(θ⁺(ρ)))² at ρ, by a central difference through the unrolled SAM step.

    Args:
        params: θ_t, stacked (R, *shape).
        s: the ascent gradient ∇L_B(θ_t).
        rho: ρ_t per run, (R,).
        hp: the run's hyperparameters (``lr`` is the unrolled step's η).
        oracle: answers the step's batch and ``"heldout"`` (the validation split).
        delta: the difference step δ.

    Returns:
        The hypergradient (R,) and the gap L_val − L_B at θ⁺(ρ) (R,), the mean of the two evaluated (O(δ²)).
    """
    direction = _normalized_ascent(s, 1.0, global_norm(s))  # ŝ = s/(‖s‖ + 1e−12), as SAM's e = ρ ŝ
    above = unrolled_gap(params, direction, rho + delta, hp, oracle)
    below = unrolled_gap(params, direction, rho - delta, hp, oracle)
    return (above * above - below * below) / (4 * delta), (above + below) / 2


def lets_step(params: list[Tensor], state: dict, hp: dict, oracle: Oracle, names: Sequence[str]) -> Report:
    """SAM with ρ_t; every ``every`` steps ρ moves against the hypergradient (module docstring)."""
    rho = state["rho"]
    s = oracle.grad().grads
    eps, info = sam_perturb(params, s, state, {**hp, "rho": rho})
    at_probe = oracle.grad(torch._foreach_add(list(params), list(eps)))  # the gradient at θ_t + e_t
    learn = state["lets_step"] % int(hp["every"]) == 0
    gap = torch.full_like(rho, math.nan)
    if learn:  # at θ_t, before the descent moves it
        hypergrad, gap = radius_hypergradient(params, s, rho, hp, oracle)
    lr = BASES[hp.get("base", "sgd")][1](params, at_probe.grads, state, hp)["effective_lr"]
    if learn:
        rho_lr = _full(params, hp["rho_lr"])
        moved = torch.clamp(rho - rho_lr * hypergrad, _full(params, hp["rho_min"]), _full(params, hp["rho_max"]))
        # rebound, not changed in place: a saved state_dict keeps the ρ it was saved with
        state["rho"] = torch.where((rho_lr != 0) & torch.isfinite(hypergrad), moved, rho)
    state["lets_step"] += 1
    return {**info, "perturbed_grad_norm": global_norm(at_probe.grads), "effective_lr": lr,
            "perturbed_loss": at_probe.loss, "perturbation": eps,
            "extra": {"rho_t": rho.clone(), "val_train_gap": gap}}


VARIANT = Variant(
    name="lets", label="LETS",
    description="SAM whose radius ρ is learned on a validation split: every few steps ρ moves to shrink the "
                "squared validation–training gap after one unrolled SAM step (the update rule is this project's "
                "reading of the paper).",
    update_rule="SAM with ρ_t;  every k steps: ρ ← clip(ρ − β d/dρ ½(L_val(θ⁺) − L_B(θ⁺))², ρ_min, ρ_max),  "
                "θ⁺ = θ − η∇L_B(θ + ρ s/‖s‖)",
    paper="Wang, Jiang, Fu, Zhang, Enhancing Sharpness-Aware Minimization by Learning Perturbation Radius "
          "(ECML-PKDD 2024)",
    paper_url="https://arxiv.org/abs/2408.08222",
    reference_code="no official code; rule inferred from the abstract (spec §6b)",
    status="experimental",
    hparams=sam_hparams(
        0.05,
        rho_lr=HParamSpec(1.0, low=0.0, high=1e4, log=True, ui_low=1e-3,
                          help="β: step size of ρ against its hypergradient (0 keeps ρ fixed: plain SAM)."),
        every=HParamSpec(1, kind="int", low=1, high=1000,
                         help="Update ρ every k steps (each update costs 2 backward and 4 forward passes)."),
        rho_min=HParamSpec(0.0, low=0.0, high=10.0, help="Smallest ρ the learning may reach."),
        rho_max=HParamSpec(1.0, low=0.0, high=10.0, help="Largest ρ the learning may reach (wins if below ρ_min)."),
    ),
    program=Program(lets_init, lets_step, two_pass=True),
    latex=r"e_t = \rho_t\,\frac{s_t}{\lVert s_t\rVert},\qquad " + SAM_STEP + r",\qquad "
          r"\rho_{t+1} = \mathrm{clip}\Big(\rho_t - \beta\,\frac{d}{d\rho}\tfrac12\big(L_{val}(\theta^+) - "
          r"L_B(\theta^+)\big)^2,\ \rho_{min},\ \rho_{max}\Big),\; \theta^+ = \theta_t - \eta\nabla L_B\big(\theta_t"
          r" + \rho\tfrac{s_t}{\lVert s_t\rVert}\big)",
    where="Perturbations: ρ_t over training and the validation − training gap it is learned from. This project's "
          "reading of the paper (no official code): the hypergradient is a central difference in ρ through one "
          "unrolled gradient step (2 extra backward passes per ρ-update, counted; 4 forward passes, not). The "
          "validation split is carved out of the training set (every compared run loses the same samples); the "
          "test split stays unseen.",
    series={"rho_t": "LETS: the learned radius ρ_t", "val_train_gap": "LETS: L_val − L_B after one unrolled step"},
    batch_closure=True,
    gd_limit=plain_gd,
    needs_validation=True,
)
