"""``ModelOracle``: the training loop's gradient oracle, a model's loss and gradient at stacked points.

Every point is a list of tensors ``(R, *param_shape)`` (R runs). With R = 1, θ_t is the model's own parameters
(``adopt``) and any other point is copied into a second copy of the model; both are differentiated with plain
autograd (functorch's ``vmap`` costs ~6× a small MLP's step there); with
R > 1 ``vmap(grad_and_value(functional_call))`` takes every run's gradient in one call. Batches are shared by all
runs (x ``(B, ...)``) or one per run (x ``(R, B, ...)``, runs with different seeds draw different minibatches).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.func import functional_call, grad_and_value, vmap

from .models import ANALYTIC
from .optim.oracle import Batch, Probe

Data = tuple[Tensor, Tensor, int | None]  # (x, y, in_dim): in_dim 0 when the batch has a leading runs dimension


def per_sample_loss(kind: str) -> Callable[[Tensor, Tensor], Tensor]:
    """Per-sample losses whose mean is ``models.loss_fn(kind)``: cross-entropy per sample, or the point model's
    outputs themselves (they are per-sample losses)."""
    if kind == ANALYTIC:
        return lambda out, y: out.reshape(out.shape[0], -1).mean(1) if out.dim() > 1 else out
    return lambda out, y: F.cross_entropy(out, y, reduction="none")


class ModelOracle:
    """Loss and gradient of ``model`` at stacked points on the step's batches.

    Args:
        model: the architecture; with one run its parameters are overwritten by each point evaluated.
        loss: ``loss(outputs, y)``, the mean training loss.
        kind: the data set's kind (``models.loss_fn``), for per-sample losses.
        train, heldout: the whole training set and a held-out set, as ``(x, y)`` (the training loop passes the
            validation split carved out of the training set, ``Config.val_fraction``; empty without one).
    """

    def __init__(self, model: torch.nn.Module, loss: Callable[[Tensor, Tensor], Tensor], kind: str,
                 train: tuple[Tensor, Tensor], heldout: tuple[Tensor, Tensor]) -> None:
        self.model, self.mean_loss, self.sample_loss = model, loss, per_sample_loss(kind)
        self.names = [n for n, _ in model.named_parameters()]
        self.module_params = [p for _, p in model.named_parameters()]
        # one run: θ_t lives in ``model`` itself (``adopt``), other points are copied into a second copy of it
        self.probe_model = copy.deepcopy(model)
        self.probe_params = [p for _, p in self.probe_model.named_parameters()]
        self.home: list[Tensor] = []
        self.train: Data = (*train, None)
        self.heldout: Data = (*heldout, None)
        self.params: list[Tensor] = []
        self.step_batch: Data | None = None
        self.previous_batch: Data | None = None
        self._cache: dict[str, tuple[Probe, Tensor]] = {}
        self._loaded: list[tuple[Tensor, int]] | None = None  # the point the probe model's parameters hold
        # the step's cost, as the program asked for it: backward passes and the samples in them, per run (numbers
        # while every pass serves every run; (R,) tensors once a pass serves only some, ``for_runs``)
        self.grad_calls: Tensor | int = 0
        self.grad_samples: Tensor | float = 0.0
        self._counted: set[str] = set()  # θ_t's shared probes already counted this step

        def value(p: dict[str, Tensor], x: Tensor, y: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
            out = functional_call(model, p, (x,))
            value = loss(out, y)
            return value, (value, out)

        def per_sample(p: dict[str, Tensor], x: Tensor, y: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
            losses = self.sample_loss(functional_call(model, p, (x,)), y)
            return losses.mean(), (losses.mean(), losses)

        self._vmapped = {
            (kind_, in_dim): vmap(grad_and_value(fn, has_aux=True), in_dims=(0, in_dim, in_dim))
            for kind_, fn in (("mean", value), ("per_sample", per_sample)) for in_dim in (None, 0)
        }
        self._forward = {d: vmap(lambda p, x: functional_call(model, p, (x,)), in_dims=(0, d)) for d in (None, 0)}

    # ------------------------------------------------------------------ the loop's side

    @torch.no_grad()
    def adopt(self, params: list[Tensor]) -> list[Tensor]:
        """One run: θ as views (1, ...) of the model's own parameters, so that evaluating θ_t copies nothing.
        The loop then updates the model in place through them. Several runs: ``params`` unchanged."""
        if params[0].shape[0] != 1:
            return params
        torch._foreach_copy_(self.module_params, [q[0] for q in params])
        self.home = [p.detach().unsqueeze(0) for p in self.module_params]
        return self.home

    def begin(self, params: list[Tensor], batch: Data) -> None:
        """A new step at θ_t = ``params`` on ``batch``."""
        if self.step_batch is not None:
            self.previous_batch = self.step_batch
        self.params, self.step_batch = params, batch
        self._cache.clear()
        self.grad_calls, self.grad_samples = 0, 0.0
        self._counted.clear()

    def step_batch_size(self) -> int:
        """Samples in the step's batch (every run's batch has the same size)."""
        x, _, in_dim = self.step_batch
        return int(x.shape[1] if in_dim == 0 else x.shape[0])

    def drop(self, keep: Tensor, params: list[Tensor]) -> None:
        """Keep only the runs in ``keep`` (diverged runs leave the stack); ``params`` are the loop's kept runs.
        θ_t's probes of this step are kept for those runs, so nothing is computed twice."""
        self.params = params
        if isinstance(self.grad_samples, Tensor):
            self.grad_samples = self.grad_samples[keep]
        if isinstance(self.grad_calls, Tensor):
            self.grad_calls = self.grad_calls[keep]
        self.step_batch = _take_batch(self.step_batch, keep)
        self.previous_batch = _take_batch(self.previous_batch, keep)
        self._cache = {key: (_take_probe(probe, keep), None if out is None else out[keep])
                       for key, (probe, out) in self._cache.items()}

    def at_theta(self, batch: str) -> tuple[Probe, Tensor]:
        """θ_t's probe on ``batch`` ("step" or "train") and its outputs (R, N, ...), computed once per step."""
        if batch not in self._cache:
            self._cache[batch] = self._evaluate(self.params, self._data(batch), grads=True, per_sample=False)
        return self._cache[batch]

    @torch.no_grad()
    def outputs(self, point: Sequence[Tensor], x: Tensor, *, stacked: bool = False) -> Tensor:
        """Model outputs (R, N, ...) at ``point`` on a shared input ``x``; ``stacked`` takes the vmapped forward
        even for one point (so a point's outputs do not depend on how many were evaluated with it)."""
        if point[0].shape[0] == 1 and not stacked:
            model, _ = self._load(point)
            return model(x).unsqueeze(0)
        return self._forward[None](self._named(point), x)

    def metric(self, fn: Callable[[Tensor, Tensor], Tensor], outputs: Tensor, y: Tensor, *,
               stacked: bool = False) -> Tensor:
        """``fn(outputs, y)`` per run, shape (R,) (loss or accuracy of shared labels ``y``)."""
        if outputs.shape[0] == 1 and not stacked:
            return fn(outputs[0], y).reshape(1)
        return vmap(fn, in_dims=(0, None))(outputs, y)

    # ------------------------------------------------------------------ the program's side (``optim.Oracle``)

    def grad(self, point: Sequence[Tensor] | None = None, *, batch: Batch = "step",
             per_sample: bool = False, mask: Tensor | None = None, for_runs: Tensor | None = None) -> Probe:
        if mask is not None:
            return self._masked(self.params if point is None else point, batch, mask, for_runs)
        data = self._data(batch)
        shared = point is None and not per_sample and isinstance(batch, str) and batch in ("step", "train")
        if not shared or batch not in self._counted:
            self._count(data, None, for_runs)
            if shared:
                self._counted.add(batch)
        if shared:
            return self.at_theta(batch)[0]
        return self._evaluate(self.params if point is None else point, data, grads=True, per_sample=per_sample)[0]

    @torch.no_grad()
    def loss(self, point: Sequence[Tensor] | None = None, *, batch: Batch = "step",
             per_sample: bool = False) -> Probe:
        point = self.params if point is None else point
        x, y, in_dim = self._data(batch)
        if point[0].shape[0] == 1:
            model, _ = self._load(point)
            xs, ys = (x[0], y[0]) if in_dim == 0 else (x, y)
            out = model(xs)
            mean = self.mean_loss(out, ys).reshape(1)
            losses = self.sample_loss(out, ys).unsqueeze(0) if per_sample else None
        else:
            out = self._forward[in_dim](self._named(point), x)
            mean = vmap(self.mean_loss, in_dims=(0, in_dim))(out, y)
            losses = vmap(self.sample_loss, in_dims=(0, in_dim))(out, y) if per_sample else None
        return Probe(None, mean, losses)

    # ------------------------------------------------------------------ internals

    def _count(self, data: Data, mask: Tensor | None, for_runs: Tensor | None = None) -> None:
        """One backward pass, and the samples in it, for every run or (``for_runs``) only the runs it serves: the
        others' share of a stacked pass is computed and thrown away, which a run of its own would not do."""
        x, _, in_dim = data
        samples = mask.sum(1).to(self.params[0].dtype) if mask is not None else float(x.shape[1] if in_dim == 0 else x.shape[0])
        if for_runs is None:
            self.grad_calls = self.grad_calls + 1
            self.grad_samples = self.grad_samples + samples
        else:
            served = for_runs.to(self.params[0].dtype)
            self.grad_calls = self.grad_calls + served
            self.grad_samples = self.grad_samples + served * samples

    def _masked(self, point: Sequence[Tensor], batch: Batch, mask: Tensor, for_runs: Tensor | None = None) -> Probe:
        """The loss over the samples of ``batch`` selected by ``mask`` ((R, B) bool, per run), and its gradient:
        one run differentiates only its selected samples (the saving ESAM's selection is for); several runs take
        the masked mean of per-sample losses (the same numbers; stacked runs need one batch shape)."""
        data = self._data(batch)
        x, y, in_dim = data
        self._count(data, mask, for_runs)
        if point[0].shape[0] == 1:
            index = torch.nonzero(mask[0]).squeeze(1)
            xs, ys = (x[0], y[0]) if in_dim == 0 else (x, y)
            return self._evaluate(point, (xs[index], ys[index], None), grads=True, per_sample=False)[0]
        weights = mask.to(point[0].dtype)
        weights = weights / weights.sum(1, keepdim=True).clamp_min(1.0)

        def weighted(p: dict[str, Tensor], x: Tensor, y: Tensor, w: Tensor) -> Tensor:
            return (self.sample_loss(functional_call(self.model, p, (x,)), y) * w).sum()

        g, value = vmap(grad_and_value(weighted), in_dims=(0, in_dim, in_dim, 0))(self._named(point), x, y, weights)
        return Probe([g[n] for n in self.names], value)

    def _data(self, batch: Batch) -> Data:
        if isinstance(batch, Tensor):  # a sub-batch of the step's batch: (B',) shared or (R, B') per run
            x, y, in_dim = self.step_batch
            if in_dim is None and batch.dim() == 1:
                return x[batch], y[batch], None
            if in_dim is None:
                x, y = x.expand(batch.shape[0], *x.shape), y.expand(batch.shape[0], *y.shape)
            if batch.dim() == 1:
                return x[:, batch], y[:, batch], 0
            rows = torch.arange(batch.shape[0], device=batch.device).unsqueeze(1)
            return x[rows, batch], y[rows, batch], 0
        if batch == "step":
            return self.step_batch
        if batch == "train":
            return self.train
        if batch == "heldout":
            if self.heldout[0].shape[0] == 0:
                raise ValueError("no held-out batch: this run has no validation split (set Config.val_fraction > 0; "
                                 "the test split is never used for training decisions)")
            return self.heldout
        if batch == "previous":
            if self.previous_batch is None:
                raise ValueError("no previous batch at the first step")
            return self.previous_batch
        raise ValueError(f"Invalid batch: {batch!r}; valid: 'step', 'previous', 'heldout', 'train' or indices")

    def _evaluate(self, point: Sequence[Tensor], data: Data, *, grads: bool, per_sample: bool) -> tuple[Probe, Tensor]:
        x, y, in_dim = data
        if point[0].shape[0] == 1:
            model, leaves = self._load(point)
            xs, ys = (x[0], y[0]) if in_dim == 0 else (x, y)
            with torch.enable_grad():
                out = model(xs)
                losses = self.sample_loss(out, ys) if per_sample else None
                value = losses.mean() if per_sample else self.mean_loss(out, ys)
                g = torch.autograd.grad(value, leaves)
            probe = Probe([t.unsqueeze(0) for t in g], value.detach().reshape(1),
                          None if losses is None else losses.detach().unsqueeze(0))
            return probe, out.detach().unsqueeze(0)
        fn = self._vmapped[("per_sample" if per_sample else "mean", in_dim)]
        g, (_, (value, aux)) = fn(self._named(point), x, y)
        probe = Probe([g[n] for n in self.names], value, aux if per_sample else None)
        return probe, (None if per_sample else aux)

    @torch.no_grad()
    def _load(self, point: Sequence[Tensor]) -> tuple[torch.nn.Module, list[Tensor]]:
        """The model holding ``point`` and its parameters: the model itself for θ (``adopt``), else the probe
        model, into which ``point`` is copied unless it holds it already (same tensors, unchanged since: a
        tensor's ``_version`` counts its in-place changes)."""
        if len(point) == len(self.home) and all(q is h for q, h in zip(point, self.home)):
            return self.model, self.module_params
        key = [(q, q._version) for q in point]
        if self._loaded is None or len(key) != len(self._loaded) or not all(
                a is b and va == vb for (a, va), (b, vb) in zip(key, self._loaded)):
            torch._foreach_copy_(self.probe_params, [q[0] for q in point])
            self._loaded = key
        return self.probe_model, self.probe_params

    def _named(self, tensors: Sequence[Tensor]) -> dict[str, Tensor]:
        return dict(zip(self.names, tensors))


def _take_probe(probe: Probe, keep: Tensor) -> Probe:
    return Probe(None if probe.grads is None else [g[keep] for g in probe.grads], probe.loss[keep],
                 None if probe.per_sample is None else probe.per_sample[keep])


def _take_batch(batch: Data | None, keep: Tensor) -> Data | None:
    if batch is None or batch[2] is None:
        return batch
    return batch[0][keep], batch[1][keep], 0

