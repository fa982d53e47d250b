"""Step programs: one optimizer step as a pure function over stacked parameters and a gradient oracle.

A ``Program`` is ``init(params, hp) -> state`` and ``step(params, state, hp, oracle, names) -> report``. ``step``
asks the oracle (``sam_viz.optim.oracle``) for whatever gradients the method needs, changes ``params`` and
``state`` in place and returns per-run diagnostics: the ``StepReport`` fields as ``(R,)`` tensors and the
perturbation e_t. The same program serves one run (the ``torch.optim`` adapter, R = 1), a run of the app and a
sweep's stacked cells (R > 1, hyperparameters as ``(R,)`` tensors).

Most methods are one of two shapes, built here once:

* ``descent(base)``: θ ← base(θ, ∇L(θ)) (SGD, Adam);
* ``ascent_descent(perturb)``: s = ∇L(θ); e = perturb(s); θ ← base(θ, ∇L(θ + e)) (SAM and its family). The
  base is the registry's ``base`` hyperparameter (sgd, adam, adamw) unless the method brings its own descent.

A method of another shape writes its own ``step`` (an example: ``sam_viz.optim``'s module docstring).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .functional import BASES, Rule, State, Tensors, global_norm, one_pass_info
from .oracle import Oracle

Report = dict[str, Any]  # (R,) tensors: REPORT_FIELDS; "perturbation": e_t per tensor (R, *shape) or None
REPORT_FIELDS = ("grad_norm", "perturbed_grad_norm", "eps_norm", "effective_rho", "effective_lr", "perturbed_loss")


@dataclass(frozen=True)
class Program:
    """One optimizer as a step program.

    Attributes:
        init: ``init(params, hp) -> state``; allocates every state tensor once.
        step: ``step(params, state, hp, oracle, names) -> report``: one step in place; ``names`` are the
            parameter names (ASAM scales only weights).
        two_pass: whether a step evaluates the loss away from θ_t (then the adapter needs a closure).
        phases: ``phases(base) -> Rule`` for methods of the ascent–descent shape: the perturbation and the
            descent apart, for davda54's ``first_step`` / ``second_step``; None otherwise.
    """

    init: Callable[[Tensors, dict], State]
    step: Callable[..., Report]
    two_pass: bool
    phases: Callable[[str], Rule] | None = None


def _no_state(params: Tensors, hp: dict) -> State:
    return {}


def _base(hp: dict, own: tuple[Callable, Callable] | None) -> tuple[Callable, Callable]:
    return own if own is not None else BASES[hp.get("base", "sgd")]


def descent(base: tuple[Callable, Callable]) -> Program:
    """θ ← base(θ, s) with s = ∇L(θ) on the step's batch; ``base`` is an ``(init, update)`` pair."""
    init, update = base

    def step(params: list[Tensor], state: State, hp: dict, oracle: Oracle, names: Sequence[str]) -> Report:
        s = oracle.grad().grads
        info = one_pass_info(s)
        lr = update(params, s, state, hp)["effective_lr"]
        nan = torch.full_like(info["grad_norm"], math.nan)
        return {**info, "perturbed_grad_norm": info["grad_norm"], "effective_lr": lr, "perturbed_loss": nan,
                "perturbation": None}

    return Program(init, step, two_pass=False, phases=lambda _base_name: Rule(init, None, update))


def ascent_descent(perturb: Callable, perturb_init: Callable = _no_state,
                   base: tuple[Callable, Callable] | None = None, takes_names: bool = False) -> Program:
    """s = ∇L(θ); (e, info) = perturb(θ, s); g = ∇L(θ + e); θ ← base(θ, g), all on the step's batch.

    Args:
        perturb: ``perturb(params, s, state, hp[, names=]) -> (e, info)`` (``functional``'s ``*_perturb``).
        perturb_init: the perturbation's own state.
        base: an ``(init, update)`` pair that replaces the registry's ``base`` (LightSAM, AdaSAM).
        takes_names: whether ``perturb`` reads the parameter names.
    """

    def init(params: Tensors, hp: dict) -> State:
        return {**perturb_init(params, hp), **_base(hp, base)[0](params, hp)}

    def step(params: list[Tensor], state: State, hp: dict, oracle: Oracle, names: Sequence[str]) -> Report:
        s = oracle.grad().grads
        extra = {"names": names} if takes_names else {}
        eps, info = perturb(params, s, state, hp, **extra)
        at_probe = oracle.grad(torch._foreach_add(list(params), list(eps)))  # the gradient at θ_t + e_t
        g = at_probe.grads
        lr = _base(hp, base)[1](params, g, state, hp)["effective_lr"]
        return {**info, "perturbed_grad_norm": global_norm(g), "effective_lr": lr,
                "perturbed_loss": at_probe.loss, "perturbation": eps}

    def phases(base_name: str) -> Rule:
        update = base[1] if base is not None else BASES[base_name][1]
        return Rule(init=lambda params, hp: init(params, {**hp, "base": base_name}), perturb=perturb,
                    update=update, takes_names=takes_names)

    return Program(init, step, two_pass=True, phases=phases)
