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

    grad_calls: int | Tensor  # backward passes the program asked for this step (the step's cost), per run

    def grad(self, point: Sequence[Tensor] | None = None, *, batch: Batch = "step",
             per_sample: bool = False, mask: Tensor | None = None, for_runs: Tensor | None = None) -> Probe:
        """Loss and gradient at ``point`` on ``batch`` (see the module docstring); ``mask`` ((R, B) bool) keeps,
        per run, only the selected samples of the batch (the mean over them). ``for_runs`` ((R,) bool): the runs
        that need this pass; it is computed for the whole stack but counted only for them (SSAM-F's Fisher passes
        are not a sparsity-0 run's cost)."""
        ...

    def step_batch_size(self) -> int:
        """Samples in the step's batch."""
        ...

    def loss(self, point: Sequence[Tensor] | None = None, *, batch: Batch = "step",
             per_sample: bool = False) -> Probe:
        """Loss only (no backward pass): ``Probe(None, loss, per_sample)``."""
        ...


class BatchClosure:
    """davda54's closure that also knows its batch, for methods that ask for more than the step's mean loss: a
    sub-batch (mSAM, ESAM), per-sample losses (ESAM, SSAM's Fisher scores), a held-out batch (LETS) or the
    previous step's batch (SAMPa; the optimizer keeps the previous step's closure).

    ``closure()`` zero-grads, computes the mean loss on the batch, backpropagates and returns it, as any closure;
    the adapter's oracle also calls ``evaluate``.

    Args:
        model: the module whose parameters the optimizer steps.
        loss_fn: ``loss_fn(outputs, targets) -> (B,)`` per-sample losses (``reduction="none"``); their mean is
            the training loss.
        x, y: the step's batch.
        heldout: a held-out ``(x, y)`` (LETS' validation batch), or None.

    >>> import torch.nn.functional as F
    >>> closure = BatchClosure(model, lambda out, y: F.cross_entropy(out, y, reduction="none"), x, y)  # doctest: +SKIP
    >>> opt.step(closure)                                                                             # doctest: +SKIP
    """

    def __init__(self, model: torch.nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor,
                 *, heldout: tuple[Tensor, Tensor] | None = None) -> None:
        self.model, self.loss_fn, self.x, self.y, self.heldout = model, loss_fn, x, y, heldout

    def __call__(self) -> Tensor:
        return self.evaluate()[0]

    def evaluate(self, indices: Tensor | None = None, *, split: str = "step", per_sample: bool = False,
                 backward: bool = True) -> tuple[Tensor, Tensor | None]:
        """The mean loss on the batch (``split`` "step" or "heldout"), or on its samples ``indices``, with
        gradients in ``.grad`` when ``backward``; and the per-sample losses when ``per_sample``."""
        if split == "heldout":
            if self.heldout is None:
                raise ValueError("this closure has no held-out batch: BatchClosure(..., heldout=(x, y))")
            x, y = self.heldout
        else:
            x, y = self.x, self.y
        if indices is not None:
            x, y = x[indices], y[indices]
        with torch.set_grad_enabled(backward):
            losses = self.loss_fn(self.model(x), y)
            loss = losses.mean()
            if backward:
                self.model.zero_grad()
                loss.backward()
        return loss.detach(), (losses.detach() if per_sample else None)

    def size(self) -> int:
        return int(self.x.shape[0])


class ClosureOracle:
    """The oracle of ``SAMOptimizer.step(closure)``: θ_t's gradient is the one the caller's backward left in ``.grad``;
    any other point is evaluated by copying it into the parameters, calling the closure (which zero-grads,
    recomputes the loss on the step's batch and backpropagates) and copying θ_t back. A plain closure knows only
    the step's batch and its mean loss; a ``BatchClosure`` also answers sub-batches, masks, per-sample losses,
    its held-out batch, and (through ``previous``, the last step's closure) the previous batch.

    Args:
        params: the parameters with gradients (unstacked, as the model holds them).
        closure: the user's closure, or None (then only θ_t's gradient can be asked for).
        name: the optimizer's name, for error messages.
        previous: the previous step's ``BatchClosure``, or None.
        sized: the caller's closure when ``closure`` is None (one-pass methods never call it): a ``BatchClosure``
            there still tells how many samples θ_t's gradient took.
    """

    def __init__(self, params: Sequence[Tensor], closure: Callable[[], Tensor] | None, name: str,
                 previous: BatchClosure | None = None, sized: Callable[[], Tensor] | None = None) -> None:
        self.params, self.closure, self.name, self.previous = list(params), closure, name, previous
        self._sized = closure if closure is not None else sized
        self.last_loss: Tensor | float | None = None  # the closure's return value at the last point evaluated
        self.grad_calls, self.grad_samples = 0, 0.0
        self._theta: list[Tensor] | None = None
        self._theta_counted = False
        grads = [p.grad.detach() for p in self.params]
        # a closure that zero-grads in place (set_to_none=False) would clear s_t under the program's feet: copy it
        # (x·1 is exact, and one fused call costs less than a clone per tensor)
        if closure is not None:
            grads = torch._foreach_mul(grads, 1.0)
        self._at_theta = [g.unsqueeze(0) for g in grads]

    def step_batch_size(self) -> int:
        return self._sized.size() if isinstance(self._sized, BatchClosure) else 1

    def grad(self, point: Sequence[Tensor] | None = None, *, batch: Batch = "step",
             per_sample: bool = False, mask: Tensor | None = None, for_runs: Tensor | None = None) -> Probe:
        ref = self._at_theta[0]
        counted = for_runs is None or bool(for_runs.reshape(-1)[0])  # one run: counted if it needs the pass
        plain = isinstance(batch, str) and batch == "step" and not per_sample and mask is None
        if point is None and plain:
            if not self._theta_counted:
                self._theta_counted = True
                self._count(self.step_batch_size(), counted)
            return Probe(self._at_theta, torch.full((1,), math.nan, dtype=ref.dtype, device=ref.device))
        if self.closure is None:
            raise ValueError(f"{self.name} needs a closure: step(closure) re-evaluates the loss at θ + e")
        if plain:
            loss, losses = self._at(point, lambda: (self.closure(), None))
            self._count(self.step_batch_size(), counted)
        else:
            closure, indices, split = self._request(batch, per_sample, mask)
            loss, losses = self._at(point, lambda: closure.evaluate(indices, split=split, per_sample=per_sample))
            self._count(closure.size() if indices is None else int(indices.numel()), counted)
        grads = [g.unsqueeze(0) for g in torch._foreach_mul([p.grad.detach() for p in self.params], 1.0)]
        self.last_loss = loss
        value = float(loss.detach()) if isinstance(loss, Tensor) else math.nan
        return Probe(grads, torch.full((1,), value, dtype=ref.dtype, device=ref.device),
                     None if losses is None else losses.unsqueeze(0))

    def loss(self, point: Sequence[Tensor] | None = None, *, batch: Batch = "step",
             per_sample: bool = False) -> Probe:
        ref = self._at_theta[0]
        if not isinstance(self.closure, BatchClosure):
            if per_sample or not (isinstance(batch, str) and batch == "step"):
                self._unsupported(batch, per_sample)
            probe = self.grad(point, batch=batch)
            return Probe(None, probe.loss)
        closure, indices, split = self._request(batch, per_sample, None)
        loss, losses = self._at(point, lambda: closure.evaluate(indices, split=split, per_sample=per_sample,
                                                                backward=False))
        return Probe(None, loss.reshape(1).to(ref.dtype), None if losses is None else losses.unsqueeze(0))

    # ------------------------------------------------------------------ internals

    def _at(self, point: Sequence[Tensor] | None, evaluate: Callable[[], tuple]) -> tuple:
        """``evaluate()`` with the parameters at ``point`` (θ_t when None), θ_t restored by copy after (subtracting
        e would add round-off)."""
        if point is None:
            with torch.enable_grad():
                return evaluate()
        with torch.no_grad():
            if self._theta is None:
                self._theta = torch._foreach_mul([p.detach() for p in self.params], 1.0)
            torch._foreach_copy_(self.params, [q[0] for q in point])
        try:
            with torch.enable_grad():
                return evaluate()
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.params, self._theta)

    def _request(self, batch: Batch, per_sample: bool, mask: Tensor | None) -> tuple[BatchClosure, Tensor | None, str]:
        """The closure, sample indices and split that answer a request for ``batch``."""
        if not isinstance(self.closure, BatchClosure):
            self._unsupported(batch, per_sample)
        closure, split, indices = self.closure, "step", None
        if isinstance(batch, Tensor):
            indices = batch.reshape(-1) if batch.dim() == 1 or batch.shape[0] == 1 else None
            if indices is None:
                raise ValueError(f"{self.name}: one run has one row of indices, got shape {tuple(batch.shape)}")
        elif batch == "heldout":
            split = "heldout"
        elif batch == "previous":
            if self.previous is None:
                raise ValueError("no previous batch at the first step")
            closure = self.previous
        elif batch != "step":
            raise NotImplementedError(f"{self.name}: the torch.optim adapter cannot evaluate batch={batch!r}")
        if mask is not None:
            selected = torch.nonzero(mask.reshape(-1)).reshape(-1)
            indices = selected if indices is None else indices[selected]
        return closure, indices, split

    def _count(self, samples: int, counted: bool = True) -> None:
        if counted:
            self.grad_calls += 1
            self.grad_samples += float(samples)

    def _unsupported(self, batch: Batch, per_sample: bool) -> None:
        raise NotImplementedError(
            f"{self.name}: a plain closure knows only the step's batch and its mean loss (asked for batch={batch!r}, "
            f"per_sample={per_sample}); pass a sam_viz.optim.BatchClosure(model, per_sample_loss, x, y) instead")
