"""``SAMOptimizer``: a thin ``torch.optim.Optimizer`` around a functional rule, in davda54/sam's shape.

Calling convention (davda54/sam, pytorch-optimizer): backward at θ, then ``opt.step(closure)``, where the closure
zero-grads, recomputes the loss on the same batch, backpropagates and returns the loss. ``first_step`` climbs to
θ + e and saves θ; ``second_step`` restores θ by copy (not by subtracting e, which would add round-off) and
applies the descent. One-pass methods (sgd, adam) use the gradients already present and never call the closure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .functional import global_norm, make_rule, one_pass_info
from .registry import OPTIMIZERS, validate


@dataclass(frozen=True)
class StepReport:
    """What the last step did (the views read this; optax's "transparent mode").

    Attributes:
        perturbation: e_t per parameter tensor (zeros for one-pass methods), detached copies in parameter shapes.
        eps_norm: ‖e_t‖₂ over all parameters.
        grad_norm: ‖s_t‖₂, the gradient at θ_t.
        perturbed_grad_norm: ‖g_t‖₂, the gradient at θ_t + e_t (equals grad_norm for one-pass methods).
        effective_rho: ρ for SAM types, ρ/sqrt(u_t) for LightSAM-I, the median over coordinates of ρ/sqrt(u_t) for
            LightSAM-II/III, ρ/sqrt(1 + ‖s‖²) for Monge-SAM, 0 for one-pass methods.
        effective_lr: lr for SGD/Adam bases, η/sqrt(v_t) for LightSAM-I, the median over coordinates of η/sqrt(v_t)
            (LightSAM-II/III) or η/sqrt(v̂_t) (AdaSAM).
        perturbed_loss: the closure's loss at θ_t + e_t (None for one-pass methods).
    """

    perturbation: list[Tensor]
    eps_norm: float
    grad_norm: float
    perturbed_grad_norm: float
    effective_rho: float
    effective_lr: float
    perturbed_loss: float | None


class SAMOptimizer(torch.optim.Optimizer):
    """Any registry optimizer as a ``torch.optim.Optimizer``.

    All parameter groups share one set of hyperparameters (global norms and LightSAM-I's scalar accumulators span
    every parameter); LR schedulers may change ``lr`` in all groups alike.

    Args:
        params: parameters, or ``named_parameters()`` (ASAM scales only tensors whose name contains "weight";
            without names, tensors of two or more dimensions count as weights).
        name: registry name (see ``sam_viz.optim.OPTIMIZERS``).
        **hparams: hyperparameters; the rest take the registry defaults.

    Raises:
        ValueError: unknown name or hyperparameter, or a value outside its range.

    >>> model = torch.nn.Linear(2, 1)
    >>> opt = SAMOptimizer(model.parameters(), "sam", lr=0.1, rho=0.05)
    >>> x, y = torch.randn(8, 2), torch.randn(8, 1)
    >>> def closure():
    ...     opt.zero_grad(); loss = ((model(x) - y) ** 2).mean(); loss.backward(); return loss
    >>> _ = closure(); _ = opt.step(closure)
    """

    def __init__(self, params: Iterable[Any], name: str, **hparams: Any) -> None:
        defaults = validate(name, hparams)
        self.name = name
        self.rule = make_rule(name, defaults.get("base", "sgd"))
        self.info = OPTIMIZERS[name]
        self.last: StepReport | None = None
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        reference = self.param_groups[0]
        for key in self.defaults:
            if self.param_groups[-1][key] != reference[key]:
                raise ValueError(f"All parameter groups must share {key}; got {self.param_groups[-1][key]!r} and {reference[key]!r}")

    # ------------------------------------------------------------------ internals

    def _hparams(self) -> dict[str, Any]:
        group = self.param_groups[0]
        return {key: group[key] for key in self.defaults}

    def _params_and_names(self) -> tuple[list[Tensor], list[str]]:
        params, names = [], []
        for group in self.param_groups:
            group_names = group.get("param_names")
            for i, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                params.append(p)
                names.append(group_names[i] if group_names else ("weight" if p.dim() > 1 else "bias"))
        if not params:
            raise RuntimeError(f"{self.name}: no parameter has a gradient; call backward() before step()")
        return params, names

    def _core_state(self, params: list[Tensor], hp: dict[str, Any]) -> dict[str, Any]:
        core = self.state.get("core")
        ids = [id(p) for p in params]
        if core is None:
            core = self.rule.init([p.detach().unsqueeze(0) for p in params], hp)
            self.state["core"] = core
            self.state["core_param_ids"] = ids
        elif self.state.get("core_param_ids") != ids:
            # The functional state is a list aligned with the parameters that had gradients at the first step.
            raise RuntimeError(f"{self.name}: the set of parameters with gradients changed between steps")
        return core

    # ------------------------------------------------------------------ the two phases

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Climb to θ + e_t using the gradients at θ_t; saves θ_t for ``second_step``."""
        hp = self._hparams()
        params, names = self._params_and_names()
        core = self._core_state(params, hp)
        views = [p.unsqueeze(0) for p in params]
        grads = [p.grad.unsqueeze(0) for p in params]
        if self.rule.perturb is None:  # one-pass method: θ stays put, so there is nothing to save
            eps, info = [torch.zeros_like(g) for g in grads], one_pass_info(grads)
        else:
            extra = {"names": names} if self.rule.takes_names else {}
            eps, info = self.rule.perturb(views, grads, core, hp, **extra)
            for p in params:
                self.state[p]["old_p"] = p.detach().clone()
            torch._foreach_add_(params, [e[0] for e in eps])
        self._pending = (eps, info)
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False, perturbed_loss: float | None = None) -> None:
        """Return to θ_t and apply the descent with the gradients now present (taken at θ_t + e_t)."""
        hp = self._hparams()
        params, _ = self._params_and_names()
        core = self._core_state(params, hp)
        if self.rule.perturb is not None:  # restore θ by copy: subtracting e would add round-off
            torch._foreach_copy_(params, [self.state[p]["old_p"] for p in params])
        grads = [p.grad.unsqueeze(0) for p in params]
        perturbed_grad_norm = global_norm(grads)
        update_info = self.rule.update([p.unsqueeze(0) for p in params], grads, core, hp)
        eps, info = self._pending
        # one device-to-host transfer for all five scalars
        scalars = torch.stack([info["eps_norm"][0], info["grad_norm"][0], perturbed_grad_norm[0],
                               info["effective_rho"][0].to(perturbed_grad_norm.dtype),
                               update_info["effective_lr"][0].to(perturbed_grad_norm.dtype)]).tolist()
        self.last = StepReport([e[0] for e in eps], *scalars, perturbed_loss=perturbed_loss)
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """One optimizer step.

        Args:
            closure: zero-grads, recomputes the loss on the same batch, backpropagates and returns the loss.
                Required by two-pass (SAM-type) methods; ignored by sgd and adam, which step with the present
                gradients (recomputing them would double the cost for the same numbers).

        Returns:
            The closure's loss at θ_t + e_t, or None for one-pass methods.

        Raises:
            ValueError: a two-pass method without a closure.
        """
        if self.rule.perturb is None:
            self.first_step()
            self.second_step()
            return None
        if closure is None:
            raise ValueError(f"{self.name} needs a closure: step(closure) re-evaluates the loss at θ + e")
        self.first_step(zero_grad=True)
        with torch.enable_grad():
            loss = closure()
        self.second_step(perturbed_loss=float(loss.detach()) if isinstance(loss, Tensor) else None)
        return loss


def make(name: str, params: Iterable[Any], **hparams: Any) -> SAMOptimizer:
    """The registry optimizer ``name`` over ``params`` (a ``torch.optim.Optimizer``).

    Args:
        name: one of ``sam_viz.optim.OPTIMIZERS`` (sgd, adam, sam, asam, fsam, lightsam1, lightsam2, lightsam3,
            adasam, msam).
        params: parameters or named parameters.
        **hparams: lr, rho, momentum, weight_decay, betas, eps, sigma, lmbda, eta, adaptive, base, ... as the
            registry lists for ``name``.

    Raises:
        ValueError: unknown name, unknown hyperparameter, or a value outside its range.
    """
    return SAMOptimizer(params, name, **hparams)
