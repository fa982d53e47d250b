"""The gradient oracle a step program asks for losses and gradients, and the adapter's oracle built from a closure.

A step program never touches a model or a data set: it asks an ``Oracle`` for the loss and gradient at a stacked
point (every tensor ``(R, *shape)``, R runs) on a named batch, and gets a ``Probe`` back. The training loop
(``sam_viz.oracle.ModelOracle``) answers every request; the ``torch.optim`` adapter (``ClosureOracle``) answers
what a user's closure can: the step's batch, the whole loss.

Batches a request may name:

* ``"step"``: the step's batch (the default);
* a tensor of indices into the step's batch, ``(B',)`` shared by every run or ``(R, B')`` per run: a sub-batch
  (mSAM's micro-batches, ESAM's selected samples);
* ``"previous"``: the batch of the step before (SAMPa's look-ahead);
* ``"heldout"``: a batch the step does not train on (LETS' validation gradient; the test split in the app);
* ``"train"``: the whole training set (full-gradient diagnostics).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

import torch
from torch import Tensor

Batch = str | Tensor


class Probe(NamedTuple):
    """What the oracle returns for one point.

    Attributes:
        grads: ∇L at the point per parameter tensor, ``(R, *shape)``; None for ``Oracle.loss``.
        loss: ``(R,)`` the mean loss on the batch (NaN where the adapter's closure gave none).
        per_sample: ``(R, B)`` per-sample losses when asked for, else None.
    """

    grads: list[Tensor] | None
    loss: Tensor
    per_sample: Tensor | None = None


class Oracle(Protocol):
    """Loss and gradient at any stacked point. ``point=None`` means θ_t itself; its step-batch gradient is computed
    once per step and shared (the loop needs it for the batch loss, a program for s_t)."""

    def grad(self, point: Sequence[Tensor] | None = None, *, batch: Batch = "step",
             per_sample: bool = False) -> Probe:
        """Loss and gradient at ``point`` on ``batch`` (see the module docstring)."""
        ...

    def loss(self, point: Sequence[Tensor] | None = None, *, batch: Batch = "step",
             per_sample: bool = False) -> Probe:
        """Loss only (no backward pass): ``Probe(None, loss, per_sample)``."""
        ...


class ClosureOracle:
    """The oracle of ``SAMOptimizer.step(closure)``: θ_t's gradient is the one the caller's backward left in ``.grad``;
    any other point is evaluated by copying it into the parameters, calling the closure (which zero-grads,
    recomputes the loss on the step's batch and backpropagates) and copying θ_t back. Only the step's batch and the
    mean loss exist here: a closure knows no other batch and returns one number.

    Args:
        params: the parameters with gradients (unstacked, as the model holds them).
        closure: the user's closure, or None (then only θ_t's gradient can be asked for).
        name: the optimizer's name, for error messages.
    """

    def __init__(self, params: Sequence[Tensor], closure: Callable[[], Tensor] | None, name: str) -> None:
        self.params, self.closure, self.name = list(params), closure, name
        self.last_loss: Tensor | float | None = None  # the closure's return value at the last point evaluated
        self._theta: list[Tensor] | None = None
        grads = [p.grad.detach() for p in self.params]
        # a closure that zero-grads in place (set_to_none=False) would clear s_t under the program's feet: copy it
        # (x·1 is exact, and one fused call costs less than a clone per tensor)
        if closure is not None:
            grads = torch._foreach_mul(grads, 1.0)
        self._at_theta = [g.unsqueeze(0) for g in grads]

    def grad(self, point: Sequence[Tensor] | None = None, *, batch: Batch = "step",
             per_sample: bool = False) -> Probe:
        self._supported(batch, per_sample)
        ref = self._at_theta[0]
        if point is None:
            return Probe(self._at_theta, torch.full((1,), math.nan, dtype=ref.dtype, device=ref.device))
        if self.closure is None:
            raise ValueError(f"{self.name} needs a closure: step(closure) re-evaluates the loss at θ + e")
        with torch.no_grad():
            if self._theta is None:
                self._theta = torch._foreach_mul([p.detach() for p in self.params], 1.0)
            torch._foreach_copy_(self.params, [q[0] for q in point])
        with torch.enable_grad():
            loss = self.closure()
        grads = [g.unsqueeze(0) for g in torch._foreach_mul([p.grad.detach() for p in self.params], 1.0)]
        with torch.no_grad():  # restore θ_t by copy: subtracting e would add round-off
            torch._foreach_copy_(self.params, self._theta)
        self.last_loss = loss
        value = float(loss.detach()) if isinstance(loss, Tensor) else math.nan
        return Probe(grads, torch.full((1,), value, dtype=ref.dtype, device=ref.device))

    def loss(self, point: Sequence[Tensor] | None = None, *, batch: Batch = "step",
             per_sample: bool = False) -> Probe:
        probe = self.grad(point, batch=batch, per_sample=per_sample)
        return Probe(None, probe.loss)

    def _supported(self, batch: Batch, per_sample: bool) -> None:
        if per_sample or not (isinstance(batch, str) and batch == "step"):
            raise NotImplementedError(
                f"{self.name}: the torch.optim adapter evaluates through your closure, which knows only the step's "
                f"batch and its mean loss (asked for batch={batch!r}, per_sample={per_sample})")
