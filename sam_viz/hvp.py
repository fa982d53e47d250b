"""The Hessian of a model's loss as a matrix-free operator: ``make_hvp`` builds it once, ``H @ v`` multiplies."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vmap

from .models import split_parameters

MAX_DENSE_PARAMS = 5_000  # dense P×P: 5,000² float64 = 200 MB; 4,482 params took 13 s of HVPs + eigvalsh on 2 cores
BLOCK_SIZE = 32  # columns per vmapped HVP block: enough to amortise Python overhead, small enough for activations
MODES = ("cached", "stateless")
STRATEGIES = ("vmap", "loop")
# How a block of columns is multiplied, per (device type, mode), when the caller names no strategy. Measured on a
# 2-core CPU (MLP 2-64-64-2, 4,482 params, N = 2,000): a cached HVP costs 1.2 ms alone but 1.7-2.4 ms per column
# vmapped, while stateless HVPs are faster vmapped (1.9 vs 3.1 ms per column). A GPU runs a vmapped block as a
# few large kernels instead of many small launches, so it takes vmap in both modes (reasoned, not yet measured on a
# GPU: no GPU was lent when this was written). Both strategies give the same
# products to float rounding; only the time differs, and it never depends on a measurement at run time.
DEFAULT_STRATEGY = {("cpu", "cached"): "loop", ("cpu", "stateless"): "vmap"}
DEFAULT_STRATEGY_OTHER_DEVICES = "vmap"

Batch = tuple[Tensor, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]
ParamFilter = str | Callable[[str], bool] | None


def default_strategy(device: torch.device | str, mode: str) -> str:
    """The block strategy ``make_hvp`` uses on ``device`` in ``mode`` when none is named (see DEFAULT_STRATEGY)."""
    return DEFAULT_STRATEGY.get((torch.device(device).type, mode), DEFAULT_STRATEGY_OTHER_DEVICES)


class HessianOperator:
    """H = ∇²_θ loss_fn(model(x; θ), y) as a matrix-free operator over the selected parameters, flattened.

    Build it with ``make_hvp``. It holds detached copies of the parameters, so the model can change afterwards
    without changing the operator. ``product(v, batched)`` is the only thing that knows the model: H v for
    v of shape (P,), or H Vᵀ for a stack (k, P) of vectors when ``batched``.

    Attributes:
        names: selected parameter names, in ``named_parameters()`` order; shapes: their shapes.
        dim: P, the number of selected scalars; dtype, device: of the products.
        mode: "cached" or "stateless".
        n_samples: samples in the batch the Hessian is taken over; sample_indices: (n,) the subset, or None.
        matvecs: products so far (a block of k columns counts k).
        block_size: columns per HVP block; larger blocks are split.
        block_strategy: "vmap" (``torch.func.vmap`` over the columns) or "loop" (one product per column).
        vmap_fallback: with "vmap", switch to "loop" (and set ``block_strategy``) the first time an op has no
            batching rule, instead of raising. True when the strategy was the device default, not named.
        takes_blocks: always True: ``@`` accepts (P, k) blocks (the estimators then make one call per block).
    """

    takes_blocks = True

    def __init__(self, names: tuple[str, ...], shapes: tuple[torch.Size, ...], dtype: torch.dtype,
                 device: torch.device, mode: str, n_samples: int, sample_indices: np.ndarray | None,
                 product: Callable[[Tensor, bool], Tensor], *, strategy: str | None = None) -> None:
        if strategy is not None and strategy not in STRATEGIES:
            raise ValueError(f"Invalid strategy: {strategy!r}; expected one of {STRATEGIES} or None")
        self.names = names
        self.shapes = shapes
        self.dim = sum(math.prod(s) for s in shapes)
        self.dtype = dtype
        self.device = torch.device(device)
        self.mode = mode
        self.n_samples = n_samples
        self.sample_indices = sample_indices
        self.matvecs = 0
        self.block_size = BLOCK_SIZE
        self.block_strategy = strategy if strategy is not None else default_strategy(self.device, mode)
        self.vmap_fallback = strategy is None
        self.product = product

    def __repr__(self) -> str:
        return (f"HessianOperator(dim={self.dim}, mode={self.mode!r}, n_samples={self.n_samples}, "
                f"dtype={self.dtype}, device={self.device}, params={len(self.names)})")

    def __matmul__(self, v: Tensor | np.ndarray) -> Tensor:
        """H v for v of shape (P,), or H V for a block of shape (P, k).

        Args:
            v: (P,) or (P, k), a tensor or an array; cast to the operator's dtype and device.

        Returns:
            H v, of the same shape.

        Raises:
            ValueError: if v is not (P,) or (P, k).
        """
        v = torch.as_tensor(v).detach().to(device=self.device, dtype=self.dtype)
        if v.ndim not in (1, 2) or v.shape[0] != self.dim:
            raise ValueError(f"Expected a vector ({self.dim},) or a block ({self.dim}, k), got {tuple(v.shape)}")
        if v.ndim == 1:
            self.matvecs += 1
            return self.product(v, False)
        self.matvecs += v.shape[1]
        return torch.cat([self._block(v[:, i:i + self.block_size]) for i in range(0, v.shape[1], self.block_size)],
                         dim=1)

    def to_dense(self) -> Tensor:
        """The P×P matrix, from HVPs with blocks of unit vectors.

        Returns:
            (P, P) tensor on ``device``; symmetric up to rounding.

        Raises:
            ValueError: if P > MAX_DENSE_PARAMS.
        """
        check_dense(self.dim)
        H = torch.empty(self.dim, self.dim, dtype=self.dtype, device=self.device)
        for start in range(0, self.dim, self.block_size):
            stop = min(start + self.block_size, self.dim)
            E = torch.zeros(self.dim, stop - start, dtype=self.dtype, device=self.device)
            E[torch.arange(start, stop, device=self.device), torch.arange(stop - start, device=self.device)] = 1.0
            H[:, start:stop] = self @ E
        return H

    def _block(self, V: Tensor) -> Tensor:
        """H V, vmapped over the columns or looped, as ``block_strategy`` says."""
        if self.block_strategy == "vmap" and V.shape[1] > 1:
            try:
                return self._block_vmap(V)
            except (RuntimeError, NotImplementedError):
                if not self.vmap_fallback:
                    raise
                # Some ops (custom autograd Functions, .item() in a loss) have no batching rule: loop from now on.
                self.block_strategy = "loop"
        return self._block_loop(V)

    def _block_vmap(self, V: Tensor) -> Tensor:
        return self.product(V.T, True).T

    def _block_loop(self, V: Tensor) -> Tensor:
        return torch.stack([self.product(c, False) for c in V.T], dim=1)


def make_hvp(model: nn.Module, loss_fn: LossFn, batch: Batch, *, mode: str = "cached",
             param_filter: ParamFilter = None, max_samples: int | None = None, seed: int = 0,
             weights: Tensor | np.ndarray | None = None, dtype: torch.dtype | None = None,
             strategy: str | None = None) -> HessianOperator:
    """The Hessian of L(θ) = loss_fn(model(x; θ), y) w.r.t. the selected parameters, as an operator.

    The model is only read: products run through ``torch.func.functional_call`` on detached copies of its
    parameters and buffers, so its weights, ``.grad``, ``requires_grad`` flags and train/eval mode stay as they
    are. The model is evaluated in its current mode; dropout in training mode would make the loss random.

    Args:
        model: the network; its parameters set the device.
        loss_fn: ``loss_fn(outputs, y) -> scalar``.
        batch: ``(x, y)``; moved to the model's device.
        mode: "cached" builds ∇L with ``create_graph`` once and differentiates it again per product (reverse over
            reverse, cheaper); "stateless" recomputes ``jvp(grad(L))`` per product (forward over reverse, no graph
            held between products).
        param_filter: which parameters vary: a substring of their name, a predicate on the name, or None for all.
            The others are held fixed, giving the Hessian's diagonal block for a layer or group.
        max_samples: if set, use a random subset of that many samples, drawn with ``seed``.
        seed: seed of the subset.
        weights: evaluate at this flat θ (all parameters in ``named_parameters()`` order) instead of the model's.
        dtype: compute in this floating dtype (e.g. float64 for an exact reference of a float32 model).
        strategy: how blocks of vectors are multiplied: "vmap" or "loop"; None takes ``default_strategy`` for
            the device and mode (fixed, see DEFAULT_STRATEGY), falling back to the loop where vmap cannot run.

    Returns:
        A ``HessianOperator``.

    Raises:
        ValueError: for an unknown mode or strategy, a filter that selects nothing, a bad ``max_samples`` or
            ``weights``.
    """
    if mode not in MODES:
        raise ValueError(f"Invalid mode: {mode!r}; expected one of {MODES}")
    if strategy is not None and strategy not in STRATEGIES:
        raise ValueError(f"Invalid strategy: {strategy!r}; expected one of {STRATEGIES} or None")
    state = unflatten(model, weights, dtype=dtype) if weights is not None else _detached_params(model, dtype)
    names = _select(model, param_filter)
    device = next(iter(state.values())).device
    x, y, indices = _subsample(batch, max_samples, seed)
    x, y = _cast(x, device, dtype), _cast(y, device, dtype)
    params = {n: state[n] for n in names}
    fixed = {n: t for n, t in state.items() if n not in params}
    buffers = _detached_buffers(model, dtype)

    def loss_at(p: Mapping[str, Tensor]) -> Tensor:
        # Fresh buffer copies per call: BatchNorm in training mode updates its running statistics in place, which
        # torch.func forbids on tensors captured from outside the transformed function (and the model keeps its own).
        own = {n: b.clone() for n, b in buffers.items()}
        loss = loss_fn(functional_call(model, {**p, **fixed, **own}, (x,)), y)
        if loss.ndim != 0:
            raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
        return loss

    product = _cached_product(loss_at, params) if mode == "cached" else _stateless_product(loss_at, params)
    first = next(iter(params.values()))
    return HessianOperator(tuple(names), tuple(params[n].shape for n in names), first.dtype, first.device, mode,
                           int(x.shape[0]), indices, product, strategy=strategy)


def _cached_product(loss_at: Callable[[Mapping[str, Tensor]], Tensor],
                    params: dict[str, Tensor]) -> Callable[[Tensor, bool], Tensor]:
    """H v = ∂(∇L·v)/∂θ from a gradient graph built once with ``create_graph`` (reverse over reverse)."""
    inputs = [p.requires_grad_(True) for p in params.values()]
    with torch.enable_grad():
        loss = loss_at(params)
        grads = (torch.autograd.grad(loss, inputs, create_graph=True, allow_unused=True, materialize_grads=True)
                 if loss.requires_grad else [torch.zeros_like(p) for p in inputs])
    # Gradients that do not depend on θ (a linear loss, an unused layer) have no graph: their block of H is zero.
    live = [i for i, g in enumerate(grads) if g.requires_grad]
    offsets = np.cumsum([0] + [p.numel() for p in inputs])
    # One flat output: v goes in whole, without a split into per-tensor views on every product.
    flat_grad = torch.cat([grads[i].reshape(-1) for i in live]) if live else None
    rows = (None if not live or len(live) == len(inputs) else
            torch.cat([torch.arange(offsets[i], offsets[i + 1]) for i in live]).to(inputs[0].device))

    def product(v: Tensor, batched: bool) -> Tensor:
        if flat_grad is None:
            return torch.zeros_like(v)
        with torch.enable_grad():
            out = torch.autograd.grad(flat_grad, inputs, grad_outputs=v if rows is None else v[..., rows],
                                      retain_graph=True, allow_unused=True, is_grads_batched=batched)
        lead = v.shape[:-1]
        return torch.cat([(torch.zeros(*lead, p.numel(), dtype=v.dtype, device=v.device) if o is None
                           else o.detach().reshape(*lead, -1)) for o, p in zip(out, inputs, strict=True)], dim=-1)

    return product


def _stateless_product(loss_at: Callable[[Mapping[str, Tensor]], Tensor],
                       params: dict[str, Tensor]) -> Callable[[Tensor, bool], Tensor]:
    """H v = d/dt ∇L(θ + t v) at t = 0 with ``torch.func`` (forward over reverse), recomputed per product."""
    names = list(params)
    sizes = [p.numel() for p in params.values()]
    gradient = grad(loss_at)

    def one(v: Tensor) -> Tensor:
        tangent = {n: c.view(params[n].shape) for n, c in zip(names, torch.split(v, sizes), strict=True)}
        out = jvp(gradient, (params,), (tangent,))[1]
        return torch.cat([out[n].reshape(-1) for n in names])

    def product(v: Tensor, batched: bool) -> Tensor:
        with torch.enable_grad():
            return (vmap(one)(v) if batched else one(v)).detach()

    return product


# ---------------------------------------------------------------------------------------------------- parameters


def unflatten(model: nn.Module, flat: Tensor | np.ndarray, *, dtype: torch.dtype | None = None) -> dict[str, Tensor]:
    """Split a flat parameter vector into the model's named tensors (``named_parameters()`` order).

    Args:
        model: gives names, shapes, dtypes and the device; not modified.
        flat: (P,) values, e.g. a snapshot row of ``Run.weights``.
        dtype: cast to this dtype instead of each parameter's own.

    Returns:
        ``{name: tensor}``, fresh tensors on the model's device, not requiring grad.

    Raises:
        ValueError: if ``flat`` does not hold exactly P values.
    """
    named = list(model.named_parameters())
    total = sum(p.numel() for _, p in named)
    flat = torch.as_tensor(np.asarray(flat) if not isinstance(flat, Tensor) else flat).detach().reshape(-1)
    if flat.numel() != total:
        raise ValueError(f"Expected {total} values (the model's parameters), got {flat.numel()}")
    views = split_parameters(model, flat)
    return {n: views[n].to(device=p.device, dtype=dtype or p.dtype).clone() for n, p in named}


def _detached_params(model: nn.Module, dtype: torch.dtype | None) -> dict[str, Tensor]:
    return {n: p.detach().to(dtype=dtype or p.dtype).clone() for n, p in model.named_parameters()}


def _detached_buffers(model: nn.Module, dtype: torch.dtype | None) -> dict[str, Tensor]:
    return {n: _cast(b.detach(), b.device, dtype).clone() for n, b in model.named_buffers()}


def _select(model: nn.Module, param_filter: ParamFilter) -> list[str]:
    names = [n for n, _ in model.named_parameters()]
    if param_filter is None:
        chosen = names
    elif isinstance(param_filter, str):
        chosen = [n for n in names if param_filter in n]
    else:
        chosen = [n for n in names if param_filter(n)]
    if not chosen:
        raise ValueError(f"param_filter {param_filter!r} selects no parameter; names: {names}")
    return chosen


def _cast(t: Tensor, device: torch.device, dtype: torch.dtype | None) -> Tensor:
    # Only floating tensors follow `dtype`: class labels must stay integer.
    return t.to(device=device, dtype=dtype if dtype is not None and t.is_floating_point() else t.dtype)


def _subsample(batch: Batch, max_samples: int | None, seed: int) -> tuple[Tensor, Tensor, np.ndarray | None]:
    x, y = batch
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"Invalid max_samples: {max_samples}")
    if max_samples is None or max_samples >= x.shape[0]:
        return x, y, None
    idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:max_samples].sort().values
    return x[idx.to(x.device)], y[idx.to(y.device)], idx.numpy()




def check_dense(dim: int) -> None:
    """Raise unless a dense ``dim``×``dim`` Hessian is within MAX_DENSE_PARAMS.

    Raises:
        ValueError: if ``dim`` > MAX_DENSE_PARAMS.
    """
    if dim > MAX_DENSE_PARAMS:
        raise ValueError(f"A dense Hessian is limited to MAX_DENSE_PARAMS = {MAX_DENSE_PARAMS:,} parameters, "
                         f"got {dim:,}; use top_eigenvalues / trace / spectral_density instead")
