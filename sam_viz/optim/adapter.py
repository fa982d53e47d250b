"""``SAMOptimizer``: a thin ``torch.optim.Optimizer`` around a registry step program, in davda54/sam's shape.

Calling convention (davda54/sam, pytorch-optimizer): backward at θ, then ``opt.step(closure)``, where the closure
zero-grads, recomputes the loss on the same batch, backpropagates and returns the loss. ``step`` runs the
optimizer's step program (``programs.Program``) with a ``ClosureOracle``: θ's gradient is the one in ``.grad``,
any other point is evaluated by the closure (θ is restored by copy, not by subtracting e, which would add
round-off). One-pass methods (sgd, adam) use the gradients already present and never call the closure.
``first_step`` / ``second_step`` are davda54's two phases, for programs of the ascent–descent shape.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .functional import PerTensor, global_norm, one_pass_info
from .oracle import BatchClosure, ClosureOracle
from .registry import OPTIMIZERS, make_rule, validate


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
        grad_calls: backward passes the step made (θ_t's, already in ``.grad``, included).
        grad_samples: samples in those passes (counted only through a ``BatchClosure``; a plain closure counts 1
            per pass).
        extra: the method's own diagnostics (``Run.extra``), as floats or lists of floats.

    Where parameter groups differ in ρ or lr, effective_rho and effective_lr are the first group's.
    """

    perturbation: list[Tensor]
    eps_norm: float
    grad_norm: float
    perturbed_grad_norm: float
    effective_rho: float
    effective_lr: float
    perturbed_loss: float | None
    grad_calls: int = 0
    grad_samples: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class SAMOptimizer(torch.optim.Optimizer):
    """Any registry optimizer as a ``torch.optim.Optimizer``.

    Parameter groups may set any hyperparameter of their own (``lr``, ``rho``, ``momentum``, ``weight_decay``,
    ``sigma``, ``eta``, ...), as in pytorch-optimizer's SAM family; ``base`` (and LightSAM-I's ``eps``, which
    starts its scalar accumulators) must be the same in every group. What is global and what is per group:

    - global, over the parameters of every group that have a gradient: the norms that scale the perturbation
      (‖s‖; ‖|θ|⊙s‖ with ``adaptive``, where only adaptive groups' tensors are weighted by |θ|; ASAM's ‖T s‖;
      F-SAM's ‖d‖; Monge-SAM's ‖s‖ in its radius), LightSAM-I's scalar accumulators u and v, and the step
      counters (Adam's bias correction, F-SAM's first step);
    - per group: everything else. Each tensor's e is its group's ρ (and σ, λ, η) times the global normalisation,
      so pytorch-optimizer's ``scale = group["rho"] / ‖s‖`` holds; the descent uses its group's lr, momentum,
      weight decay, betas, ...; LightSAM-I descends by its group's η/sqrt(v) with the global v.

    ``opt.last`` reports the first group's ρ and lr where these differ by group. LR schedulers change
    ``group["lr"]``, which the next step reads. Parameters whose ``.grad`` is None (frozen with
    ``requires_grad=False``, or unused by the loss) are neither perturbed nor updated, as if absent; the set of
    parameters with gradients must stay the same from step to step. ``state_dict`` holds per-parameter tensors
    under ``state[i]`` (``momentum_buffer``, ``exp_avg``, ``ema``, ...) and the rule's global entries (step
    counters, LightSAM-I's accumulators) under ``state["core"]`` (SAMPa: also the previous step's batch, under
    ``state["previous_batch"]``, which its next step probes on); loading it into an optimizer from ``make`` with
    the same parameters resumes the run exactly.

    Args:
        params: parameters, ``named_parameters()`` or parameter groups (ASAM scales only tensors whose name
            contains "weight"; without names, tensors of two or more dimensions count as weights).
        name: registry name (see ``sam_viz.optim.OPTIMIZERS``).
        **hparams: hyperparameters; the rest take the registry defaults.

    Raises:
        ValueError: unknown name or hyperparameter, a value outside its range (in any group), or a group whose
            ``base`` (LightSAM-I: ``eps``) differs from the first group's.

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
        self.info = OPTIMIZERS[name]
        self.program = self.info.program
        # the two phases apart, for first_step / second_step (None for programs of another shape)
        self.rule = make_rule(name, defaults.get("base", "sgd")) if self.program.phases is not None else None
        self.last: StepReport | None = None
        self._previous_closure: BatchClosure | None = None  # the last step's batch, for "previous" requests
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        specs = self.info.hparams
        group.update(validate(self.name, {key: group[key] for key in specs}))
        for key in _GLOBAL_HPARAMS.get(self.name, ()) + ("base",):
            if key in specs and not _same(group[key], self.param_groups[0][key]):
                raise ValueError(f"Invalid {key} for {self.name}: every parameter group must share it "
                                 f"(got {group[key]!r} and {self.param_groups[0][key]!r})")

    def state_dict(self) -> dict[str, Any]:
        saved = super().state_dict()
        if "core" in saved["state"]:  # a copy, so that the saved step counters stay those of this step
            saved["state"]["core"] = dict(saved["state"]["core"])
        return saved

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        core = self.state.get("core")
        if core is not None:  # torch copies only parameter-keyed state: copy the global entries and cast them
            ref = next(p for group in self.param_groups for p in group["params"])
            self.state["core"] = {key: _cast(value, ref) for key, value in core.items()}

    # ------------------------------------------------------------------ internals

    def _active(self) -> tuple[list[Tensor], list[str], list[int], dict[str, Any]]:
        """Parameters with gradients, their names, their positions over all groups, and the hyperparameters
        (a ``PerTensor`` where groups differ)."""
        params, names, positions, owners = [], [], [], []  # owners: the index of each tensor's group
        position = 0
        for k, group in enumerate(self.param_groups):
            group_names = group.get("param_names")
            for i, p in enumerate(group["params"]):
                position += 1
                if p.grad is None:
                    continue
                params.append(p)
                names.append(group_names[i] if group_names else ("weight" if p.dim() > 1 else "bias"))
                positions.append(position - 1)
                owners.append(k)
        if not params:
            raise RuntimeError(f"{self.name}: no parameter has a gradient; call backward() before step()")
        groups = [self.param_groups[k] for k in sorted(set(owners))]
        hp = {}
        for key in self.info.hparams:
            value = groups[0][key]
            same = all(_same(group[key], value) for group in groups[1:])
            hp[key] = value if same else PerTensor(self.param_groups[k][key] for k in owners)
        return params, names, positions, hp

    def _rule_state(self, params: list[Tensor], positions: list[int], hp: dict[str, Any]) -> dict[str, Any]:
        """The rule's state over ``params``: views (1, *shape) of the per-parameter tensors plus the global entries."""
        core = self.state.get("core")
        if core is None:
            init = self.program.init([p.detach().unsqueeze(0) for p in params], hp)
            tensor_keys = [key for key, value in init.items() if isinstance(value, list)]
            for key in tensor_keys:
                for p, t in zip(params, init[key]):
                    self.state[p][key] = t[0]
            core = {key: value for key, value in init.items() if key not in tensor_keys}
            core.update(active=positions, tensor_keys=tensor_keys)
            self.state["core"] = core
        elif core["active"] != positions:
            # the rule's state is aligned with the parameters that had gradients at the first step
            raise RuntimeError(f"{self.name}: the set of parameters with gradients changed between steps "
                               f"(positions {core['active']} at the first step, {positions} now)")
        state = {key: value for key, value in core.items() if key not in _CORE_KEYS}
        for key in core["tensor_keys"]:
            state[key] = [self.state[p][key].unsqueeze(0) for p in params]
        return state

    def _save_core(self, state: dict[str, Any]) -> None:
        core = self.state["core"]
        for key in core:
            if key not in _CORE_KEYS:
                core[key] = state[key]  # step counters are numbers: rebound, not changed in place

    # ------------------------------------------------------------------ the two phases

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Climb to θ + e_t using the gradients at θ_t; saves θ_t for ``second_step``.

        Raises:
            ValueError: a program that is not of the ascent–descent shape (use ``step(closure)``).
        """
        self._phases()
        params, names, positions, hp = self._active()
        state = self._rule_state(params, positions, hp)
        views = [p.unsqueeze(0) for p in params]
        grads = [p.grad.unsqueeze(0) for p in params]
        if self.rule.perturb is None:  # one-pass method: θ stays put, so there is nothing to save
            eps, info = [torch.zeros_like(g) for g in grads], one_pass_info(grads)
        else:
            extra = {"names": names} if self.rule.takes_names else {}
            eps, info = self.rule.perturb(views, grads, state, hp, **extra)
            self._save_core(state)
            for p in params:
                self.state[p]["old_p"] = p.detach().clone()
            torch._foreach_add_(params, [e[0] for e in eps])
        self._pending = (eps, info)
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False, perturbed_loss: float | None = None) -> None:
        """Return to θ_t and apply the descent with the gradients now present (taken at θ_t + e_t)."""
        self._phases()
        params, _, positions, hp = self._active()
        state = self._rule_state(params, positions, hp)
        if self.rule.perturb is not None:  # restore θ by copy: subtracting e would add round-off
            torch._foreach_copy_(params, [self.state[p].pop("old_p") for p in params])
        grads = [p.grad.unsqueeze(0) for p in params]
        perturbed_grad_norm = global_norm(grads)
        update_info = self.rule.update([p.unsqueeze(0) for p in params], grads, state, hp)
        self._save_core(state)
        eps, info = self._pending
        # one device-to-host transfer for all five scalars
        scalars = torch.stack([info["eps_norm"][0], info["grad_norm"][0], perturbed_grad_norm[0],
                               info["effective_rho"][0].to(perturbed_grad_norm.dtype),
                               update_info["effective_lr"][0].to(perturbed_grad_norm.dtype)]).tolist()
        self.last = StepReport([e[0] for e in eps], *scalars, perturbed_loss=perturbed_loss)
        if zero_grad:
            self.zero_grad()

    def _phases(self) -> None:
        if self.rule is None:
            raise ValueError(f"{self.name}: its step program has no separate ascent and descent phases; call step(closure)")

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """One optimizer step: the step program with an oracle built from ``closure``.

        Args:
            closure: zero-grads, recomputes the loss on the same batch, backpropagates and returns the loss.
                Required by two-pass (SAM-type) methods; ignored by sgd and adam, which step with the present
                gradients (recomputing them would double the cost for the same numbers).

        Returns:
            The closure's loss at the last point the program evaluated (θ_t + e_t for SAM types), or None for
            one-pass methods.

        Raises:
            ValueError: a two-pass method without a closure.
        """
        if self.program.two_pass and closure is None:
            raise ValueError(f"{self.name} needs a closure: step(closure) re-evaluates the loss at θ + e")
        params, names, positions, hp = self._active()
        state = self._rule_state(params, positions, hp)
        oracle = ClosureOracle(params, closure if self.program.two_pass else None, self.name,
                               previous=self._previous(closure), sized=closure)
        report = self.program.step([p.unsqueeze(0) for p in params], state, hp, oracle, names)
        self._save_core(state)
        self.last = _report(report, oracle)
        if isinstance(closure, BatchClosure):  # SAMPa's "previous" batch at the next step
            self._previous_closure = closure
            if self.info.uses_previous_batch:  # in the checkpoint too, so that a resumed run probes on it
                self.state[PREVIOUS_BATCH] = (closure.x, closure.y)
        return oracle.last_loss

    def _previous(self, closure: Callable[[], Tensor] | None) -> BatchClosure | None:
        """The previous step's closure; after ``load_state_dict``, one rebuilt from the checkpoint's batch."""
        if self._previous_closure is None and PREVIOUS_BATCH in self.state and isinstance(closure, BatchClosure):
            x, y = self.state[PREVIOUS_BATCH]
            self._previous_closure = BatchClosure(closure.model, closure.loss_fn, x, y, heldout=closure.heldout)
        return self._previous_closure


def _report(report: dict[str, Any], oracle: ClosureOracle) -> StepReport:
    """A program's (1,)-tensor report as host floats, in one device-to-host transfer."""
    ref = report["grad_norm"]
    scalars = torch.stack([report[k][0].to(ref.dtype) for k in
                           ("eps_norm", "grad_norm", "perturbed_grad_norm", "effective_rho", "effective_lr")]).tolist()
    eps = report["perturbation"]
    perturbation = [torch.zeros_like(g[0]) for g in oracle.grad().grads] if eps is None else [e[0] for e in eps]
    loss = oracle.last_loss
    perturbed_loss = float(loss.detach()) if isinstance(loss, Tensor) else None
    extra = {key: value[0].tolist() for key, value in report.get("extra", {}).items()}
    return StepReport(perturbation, *scalars, perturbed_loss=perturbed_loss, grad_calls=oracle.grad_calls,
                      grad_samples=oracle.grad_samples, extra=extra)


# hyperparameters a rule reads once for all tensors (beyond "base", which picks the rule)
# (LookSAM's k paces one step counter; WSAM's decouple picks the form of the whole step, as in pytorch-optimizer;
# LETS learns one ρ per run, from one starting value)
_GLOBAL_HPARAMS: dict[str, tuple[str, ...]] = {"lightsam1": ("eps",), "looksam": ("k",), "wsam": ("decouple",),
                                               "lets": ("rho", "rho_lr", "every", "rho_min", "rho_max")}
# SAMPa's previous step's batch (x, y) in ``state``: its next step probes on it, so a checkpoint must hold it
PREVIOUS_BATCH = "previous_batch"
# bookkeeping entries of state["core"] that are not the rule's
_CORE_KEYS = ("active", "tensor_keys")


def _same(a: Any, b: Any) -> bool:
    """Whether two hyperparameter values are equal (numbers, strings, pairs, per-run tensors)."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return isinstance(a, Tensor) and isinstance(b, Tensor) and a.shape == b.shape and bool((a == b).all())
    return a == b


def _cast(value: Any, ref: Tensor) -> Any:
    """A copy of ``value`` with floating tensors in ``ref``'s dtype and every tensor on its device."""
    if isinstance(value, Tensor):
        return value.to(device=ref.device, dtype=ref.dtype if value.is_floating_point() else value.dtype, copy=True)
    return copy.deepcopy(value)


def make(name: str, params: Iterable[Any], **hparams: Any) -> SAMOptimizer:
    """The registry optimizer ``name`` over ``params`` (a ``torch.optim.Optimizer``).

    Args:
        name: one of ``sam_viz.optim.OPTIMIZERS`` (sgd, adam, sam, asam, fsam, lightsam1, lightsam2, lightsam3,
            adasam, msam, ssam, esam, mbsam, sampa, lets, mup2, gsam, looksam, wsam; ``python -m sam_viz
            optimizers`` lists them with their hyperparameters). Methods with ``batch_closure`` (ssam, esam, mbsam,
            sampa, lets) take a ``BatchClosure`` in ``step``; lets also its held-out batch; mup2 expects an MLP's
            weight matrices and biases (``mup2.linear_layers``) and its ``base_width``.
        params: parameters or named parameters.
        **hparams: lr, rho, momentum, weight_decay, betas, eps, sigma, lmbda, eta, adaptive, base, ... as the
            registry lists for ``name``.

    Raises:
        ValueError: unknown name, unknown hyperparameter, or a value outside its range.
    """
    return SAMOptimizer(params, name, **hparams)
