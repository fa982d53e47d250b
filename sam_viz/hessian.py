"""Curvature of a model's loss as a matrix-free Hessian operator: HVPs, Lanczos eigenvalues, Hutch++ trace, SLQ."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vmap

from .models import split_parameters

MAX_DENSE_PARAMS = 5_000  # dense P×P: 5,000² float64 = 200 MB; 4,482 params took 13 s of HVPs + eigvalsh on 2 cores
BLOCK_SIZE = 32  # columns per vmapped HVP block: enough to amortise Python overhead, small enough for activations
MODES = ("cached", "stateless")
METHODS = ("auto", "lanczos", "dense")
# Lanczos keeps every basis vector (full re-orthogonalisation), so its default length is capped by memory too.
LANCZOS_MAX_ITERS = 300
LANCZOS_MAX_BYTES = 2**29
# Default `tol` per dtype. The Ritz residual cannot drop below the HVP's own rounding error (measured 6e-7·‖H‖ ≈ 5ε
# on the float32 tanh MLP of benchmarks/bench_hessian.py), so float32 asks for 1e-4, not a 1e-6 it may never reach;
# the eigenvalue error is then ≤ 1e-4·|λ_max| and typically ≈ residual²/gap (4e-7 relative on that MLP).
DEFAULT_TOL = {torch.float64: 1e-6, torch.float32: 1e-4}
FALLBACK_TOL = 1e-2  # float16 / bfloat16
# With full re-orthogonalisation the Lanczos bound |β_m s_mi| equals ‖A q − θ q‖ up to that rounding floor, so the
# residuals are recomputed with explicit products only when tol < VERIFY_BELOW·ε, i.e. within 100× of the floor.
VERIFY_BELOW = 500

_BLOCK_TIMINGS: dict[tuple, dict[str, float]] = {}  # see make_hvp

Batch = tuple[Tensor, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]
ParamFilter = str | Callable[[str], bool] | None


class LinearOperator(Protocol):
    """Anything the estimators accept besides a square tensor: ``A @ v`` for v of shape (dim,), and ``dim``."""

    dim: int

    def __matmul__(self, v: Tensor) -> Tensor: ...


Operator = Tensor | LinearOperator


# ---------------------------------------------------------------------------------------------------- records


@dataclass(frozen=True, eq=False)
class EigenResult:
    """Extreme eigenvalues of a symmetric operator with their Ritz residuals.

    Attributes:
        eigenvalues: (k,) the largest eigenvalues, descending.
        residuals: (k,) ‖A q − λ q‖ of each Ritz pair: recomputed with explicit products if ``verified``, else the
            Lanczos bound |β_m s_mi|, which equals it up to the HVP's rounding error.
        converged: (k,) bool, residual ≤ tol·‖A‖ (‖A‖ estimated by the largest |Ritz value|); then some true
            eigenvalue lies within the residual of the reported one (typically within residual²/gap).
        eigenvectors: (dim, k) unit Ritz vectors, in the operator's dtype.
        smallest: (s,) the smallest eigenvalues, ascending (most negative first); empty unless asked for.
        smallest_residuals, smallest_converged: (s,) as above, for ``smallest``.
        smallest_eigenvectors: (dim, s).
        matvecs: products with A spent, including any residual check.
        method: "lanczos" or "dense".
        iters: Lanczos steps taken (the dimension for "dense").
        tol: the tolerance used.
        verified: whether ``residuals`` come from explicit products (always for "dense").
    """

    eigenvalues: np.ndarray
    residuals: np.ndarray
    converged: np.ndarray
    eigenvectors: np.ndarray
    smallest: np.ndarray
    smallest_residuals: np.ndarray
    smallest_converged: np.ndarray
    smallest_eigenvectors: np.ndarray
    matvecs: int
    method: str
    iters: int
    tol: float
    verified: bool


@dataclass(frozen=True)
class TraceResult:
    """A stochastic trace estimate.

    Attributes:
        estimate: the estimate of tr A.
        stderr: its standard error (see ``trace``).
        matvecs: products with A spent.
        method: "hutch++" or "hutchinson".
    """

    estimate: float
    stderr: float
    matvecs: int
    method: str = "hutch++"


@dataclass(frozen=True, eq=False)
class Density:
    """A spectral density from stochastic Lanczos quadrature.

    Attributes:
        nodes: (n_vectors, m) Ritz values of each start vector's Lanczos run (quadrature nodes). A run that broke
            down early (an invariant subspace) is padded with node 0 and weight 0.
        weights: (n_vectors, m) quadrature weights, each row sums to 1.
        grid: (n_grid,) eigenvalue axis.
        density: (n_grid,) Gaussian-smoothed density on ``grid``; integrates to ~1.
        sigma: the Gaussian width used.
        matvecs: products with A spent.
    """

    nodes: np.ndarray
    weights: np.ndarray
    grid: np.ndarray
    density: np.ndarray
    sigma: float
    matvecs: int


# ---------------------------------------------------------------------------------------------------- operator


class HessianOperator:
    """H = ∇²_θ loss_fn(model(x; θ), y) as a matrix-free operator over the selected parameters, flattened.

    Build it with ``make_hvp``. It holds detached copies of the parameters, so the model can change afterwards
    without changing the operator.

    Attributes:
        names: selected parameter names, in ``named_parameters()`` order; shapes: their shapes.
        dim: P, the number of selected scalars; dtype, device: of the products.
        mode: "cached" or "stateless".
        n_samples: samples in the batch the Hessian is taken over; sample_indices: (n,) the subset, or None.
        matvecs: products so far (a block of k columns counts k).
        block_size: columns per HVP block; larger blocks are split.
        block_strategy: "vmap" (``torch.func.vmap`` over the columns), "loop", or "auto" (time both on the first
            blocks, keep the faster; vmap also falls back to the loop when an op has no batching rule).
    """

    def __init__(self, names: tuple[str, ...], shapes: tuple[torch.Size, ...], dtype: torch.dtype,
                 device: torch.device, mode: str, n_samples: int, sample_indices: np.ndarray | None,
                 product: Callable[[Tensor, bool], Tensor]) -> None:
        self.names = names
        self.shapes = shapes
        self.dim = sum(math.prod(s) for s in shapes)
        self.dtype = dtype
        self.device = device
        self.mode = mode
        self.n_samples = n_samples
        self.sample_indices = sample_indices
        self.matvecs = 0
        self.block_size = BLOCK_SIZE
        self.block_strategy = "auto"
        self._product = product
        self._block_calls = 0
        self._seconds_per_column: dict[str, float] = {}  # make_hvp shares it between operators of one set-up

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
            return self._product(v, False)
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
        _check_dense(self.dim)
        H = torch.empty(self.dim, self.dim, dtype=self.dtype, device=self.device)
        for start in range(0, self.dim, self.block_size):
            stop = min(start + self.block_size, self.dim)
            E = torch.zeros(self.dim, stop - start, dtype=self.dtype, device=self.device)
            E[torch.arange(start, stop, device=self.device), torch.arange(stop - start, device=self.device)] = 1.0
            H[:, start:stop] = self @ E
        return H

    def _block(self, V: Tensor) -> Tensor:
        """H V, vmapped over the columns or looped, whichever ``_pick_strategy`` found faster."""
        strategy = self._pick_strategy() if V.shape[1] > 1 else "loop"
        timed = self.block_strategy == "auto" and strategy not in self._seconds_per_column and self._block_calls > 0
        self._block_calls += 1
        start = _now(self.device) if timed else 0.0  # a GPU sync only for the blocks that are timed
        if strategy == "vmap":
            try:
                out = self._block_vmap(V)
            except (RuntimeError, NotImplementedError):
                if self.block_strategy == "vmap":
                    raise
                # Some ops (custom autograd Functions, .item() in a loss) have no batching rule: loop from now on.
                self._seconds_per_column["vmap"] = math.inf
                return self._block_loop(V)
        else:
            out = self._block_loop(V)
        if timed:
            self._seconds_per_column[strategy] = (_now(self.device) - start) / V.shape[1]
        return out

    def _pick_strategy(self) -> str:
        # Measured on a 2-core CPU: a cached HVP costs 1.2 ms alone but 1.7-2.4 ms per column vmapped, while
        # stateless HVPs are faster vmapped (1.9 vs 3.1 ms); a GPU should favour vmap. So time both on real blocks
        # (the first vmap call is a warm-up) and keep the faster.
        if self.block_strategy != "auto":
            return self.block_strategy
        for strategy in ("vmap", "loop"):
            if strategy not in self._seconds_per_column:
                return strategy
        return min(self._seconds_per_column, key=self._seconds_per_column.__getitem__)

    def _block_vmap(self, V: Tensor) -> Tensor:
        return self._product(V.T, True).T

    def _block_loop(self, V: Tensor) -> Tensor:
        return torch.stack([self._product(c, False) for c in V.T], dim=1)


def make_hvp(model: nn.Module, loss_fn: LossFn, batch: Batch, *, mode: str = "cached",
             param_filter: ParamFilter = None, max_samples: int | None = None, seed: int = 0,
             weights: Tensor | np.ndarray | None = None, dtype: torch.dtype | None = None) -> HessianOperator:
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

    Returns:
        A ``HessianOperator``.

    Raises:
        ValueError: for an unknown mode, a filter that selects nothing, a bad ``max_samples`` or ``weights``.
    """
    if mode not in MODES:
        raise ValueError(f"Invalid mode: {mode!r}; expected one of {MODES}")
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
    op = HessianOperator(tuple(names), tuple(params[n].shape for n in names), first.dtype, first.device, mode,
                         int(x.shape[0]), indices, product)
    # Operators for the same model, data size, mode and device share their block timings: the app builds a fresh
    # operator per call (trace, density, each snapshot), and measuring both strategies every time would cost more
    # than it saves.
    key = (id(model), op.dim, op.n_samples, mode, str(op.dtype), str(op.device))
    if len(_BLOCK_TIMINGS) > 256:  # ids of collected models pile up in a long session; a rare re-timing is cheap
        _BLOCK_TIMINGS.clear()
    op._seconds_per_column = _BLOCK_TIMINGS.setdefault(key, {})
    return op


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


# ---------------------------------------------------------------------------------------------------- operator helpers


def _as_operator(A: Any, loss_fn: LossFn | None, batch: Batch | None, hvp_kwargs: dict[str, Any]) -> Operator:
    """A model (with loss and batch) becomes its HessianOperator; a tensor or operator passes through."""
    if isinstance(A, nn.Module):
        if loss_fn is None or batch is None:
            raise ValueError("A model needs loss_fn and batch")
        return make_hvp(A, loss_fn, batch, **hvp_kwargs)
    if loss_fn is not None or batch is not None or hvp_kwargs:
        raise TypeError("loss_fn, batch and HVP options only apply to a model, not to an operator")
    if isinstance(A, Tensor):
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"Expected a square matrix, got shape {tuple(A.shape)}")
        return A
    if not isinstance(getattr(A, "dim", None), int):
        raise TypeError(f"Expected a model, a square tensor or an operator with `@` and `.dim`, got {type(A)}")
    return A


def _dim(A: Operator) -> int:
    return A.shape[0] if isinstance(A, Tensor) else A.dim


def _dtype(A: Operator) -> torch.dtype:
    return getattr(A, "dtype", torch.float64)


def _device(A: Operator) -> torch.device:
    return torch.device(getattr(A, "device", "cpu"))


def _matmat(A: Operator, V: Tensor) -> Tensor:
    """A V for a block; operators that only take vectors get one product per column."""
    if isinstance(A, (Tensor, HessianOperator)):
        return A @ V
    return torch.stack([A @ c for c in V.T], dim=1)


def _now(device: torch.device) -> float:
    if device.type == "cuda":  # kernels run asynchronously: wait for them before reading the clock
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _check_dense(dim: int) -> None:
    if dim > MAX_DENSE_PARAMS:
        raise ValueError(f"A dense Hessian is limited to MAX_DENSE_PARAMS = {MAX_DENSE_PARAMS:,} parameters, "
                         f"got {dim:,}; use top_eigenvalues / trace / spectral_density instead")


def _dense(A: Operator) -> Tensor:
    if isinstance(A, Tensor):
        return A
    if isinstance(A, HessianOperator):
        return A.to_dense()
    _check_dense(_dim(A))
    return _matmat(A, torch.eye(_dim(A), dtype=_dtype(A), device=_device(A)))


def _randn(dim: int, generator: torch.Generator, dtype: torch.dtype, device: torch.device) -> Tensor:
    # Drawn on the CPU so a seed gives the same vectors on every device.
    return torch.randn(dim, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)


def _rademacher(dim: int, k: int, generator: torch.Generator, dtype: torch.dtype, device: torch.device) -> Tensor:
    signs = torch.randint(0, 2, (dim, k), generator=generator, dtype=torch.int8)
    return (2 * signs - 1).to(device=device, dtype=dtype)


def _default_tol(dtype: torch.dtype) -> float:
    return DEFAULT_TOL.get(dtype, FALLBACK_TOL)


# ---------------------------------------------------------------------------------------------------- Lanczos


class _Lanczos:
    """Lanczos, one step at a time, keeping the full basis: A Q_m = Q_m T_m + β_m q_{m+1} e_mᵀ.

    With ``restart`` set, a breakdown (an invariant subspace) continues from a fresh random vector orthogonal to
    the basis, with a zero coupling in T: a single start vector only ever sees one copy of a repeated eigenvalue.
    """

    def __init__(self, A: Operator, v0: Tensor, restart: torch.Generator | None = None) -> None:
        self.A = A
        self.dim = v0.shape[0]
        self.restart = restart
        self.Q = torch.empty(min(self.dim, 16), self.dim, dtype=v0.dtype, device=v0.device)  # rows: basis vectors
        self.Q[0] = v0 / v0.norm()
        self.alpha: list[float] = []
        self.beta: list[float] = []
        self.matvecs = 0
        self.exhausted = False  # no new direction: an invariant subspace (without restart) or the whole space
        self._scale = 0.0

    @property
    def m(self) -> int:
        return len(self.alpha)

    def step(self) -> None:
        j = self.m
        q = self.Q[j]
        w = (self.A @ q).to(q.dtype)
        self.matvecs += 1
        a = float(q @ w)
        w = w - a * q
        if j > 0:
            w = w - self.beta[j - 1] * self.Q[j - 1]
        w = self._orthogonalise(w, j + 1)
        b = float(w.norm())
        self.alpha.append(a)
        self._scale = max(self._scale, abs(a), b)
        if j + 1 == self.dim:
            self.beta.append(b)
            self.exhausted = True
        elif b > _breakdown(q.dtype) * self._scale:
            self.beta.append(b)
            self._store(j + 1, w / b)
        elif self.restart is not None:
            self._restart(j + 1)
        else:
            self.beta.append(b)
            self.exhausted = True

    def ritz(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ritz values (ascending), T's eigenvectors S, and the residual bounds |β_m S[m-1, i]|."""
        theta, S = eigh_tridiagonal(np.asarray(self.alpha), np.asarray(self.beta[:-1]))
        return theta, S, np.abs(self.beta[-1] * S[-1])

    def vectors(self, S: np.ndarray) -> Tensor:
        """Ritz vectors Q_m S, shape (dim, columns of S)."""
        return self.Q[: self.m].T @ torch.as_tensor(S, dtype=self.Q.dtype, device=self.Q.device)

    def _orthogonalise(self, w: Tensor, n: int) -> Tensor:
        basis = self.Q[:n]
        for _ in range(2):  # "twice is enough" (Kahan, Parlett): one pass leaves O(ε·κ) overlap
            w = w - basis.T @ (basis @ w)
        return w

    def _restart(self, j: int) -> None:
        r = self._orthogonalise(_randn(self.dim, self.restart, self.Q.dtype, self.Q.device), j)
        norm = float(r.norm())
        self.beta.append(0.0)
        if norm < math.sqrt(self.dim) * 1e-3:  # the basis already spans (numerically) everything
            self.exhausted = True
        else:
            self._store(j, r / norm)

    def _store(self, j: int, q: Tensor) -> None:
        if j == self.Q.shape[0]:
            grown = torch.empty(min(2 * j, self.dim), self.dim, dtype=self.Q.dtype, device=self.Q.device)
            grown[:j] = self.Q
            self.Q = grown
        self.Q[j] = q


def _breakdown(dtype: torch.dtype) -> float:
    # β below this (relative to ‖T‖) is rounding noise, not a new Krylov direction. Keep it tiny: a restart drops
    # the coupling, which moves the eigenvalues by up to β (sqrt(ε) = 3e-4 in float32 would exceed the tolerance).
    return 100 * torch.finfo(dtype).eps


def lanczos(A: Operator, iters: int, *, seed: int = 0, v0: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Lanczos tridiagonalisation with full re-orthogonalisation (twice per step): A Q = Q T + β_m q_{m+1} e_mᵀ.

    Stops early on breakdown (β ≈ 0: the Krylov space is invariant and T's eigenvalues are exact).

    Args:
        A: a symmetric square tensor, or an operator with ``A @ v`` and ``.dim``.
        iters: steps m (capped at the dimension).
        seed: seed of the Gaussian start vector, if ``v0`` is None.
        v0: start vector (normalised here).

    Returns:
        ``(alpha, beta, Q)``: alpha (m,) T's diagonal and beta (m,) with T's off-diagonal in ``beta[:-1]`` and
        the final residual norm β_m in ``beta[-1]`` (both float64 on the CPU); Q (dim, m) orthonormal basis.

    Raises:
        ValueError: if ``iters`` < 1 or ``v0`` is zero.
    """
    A = _as_operator(A, None, None, {})
    if iters < 1:
        raise ValueError(f"Invalid iters: {iters}")
    dim = _dim(A)
    if v0 is None:
        v0 = _randn(dim, torch.Generator().manual_seed(seed), _dtype(A), _device(A))
    if not bool(torch.any(v0 != 0)):
        raise ValueError("v0 must be non-zero")
    run = _Lanczos(A, v0.to(device=_device(A), dtype=_dtype(A)))
    _extend(run, min(iters, dim))
    alpha, beta = (torch.tensor(values, dtype=torch.float64) for values in (run.alpha, run.beta))
    return alpha, beta, run.Q[: run.m].T.contiguous()


# ---------------------------------------------------------------------------------------------------- eigenvalues


def top_eigenvalues(model_or_operator: nn.Module | Operator, loss_fn: LossFn | None = None,
                    batch: Batch | None = None, k: int = 1, *, iters: int | None = None, tol: float | None = None,
                    seed: int = 0, smallest: int = 0, max_iters: int | None = None, method: str = "auto",
                    verify: bool | None = None, **hvp_kwargs: Any) -> EigenResult:
    """The k largest (and ``smallest`` lowest) eigenpairs A q = λ q by Lanczos, with residuals ‖A q − λ q‖.

    ``iters=None`` grows the Krylov space one step at a time from 2(k + smallest) + 3 steps (checking costs a
    tridiagonal eigensolve, ~20 µs, against ~1 ms per HVP) and stops once every requested Ritz pair's bound
    |β_m s_mi| is ≤ tol·‖A‖. Near the HVP's rounding floor (tol < 500·ε, or ``verify=True``) that bound is too
    optimistic, so it then confirms with explicit products (one block): if they disagree it keeps going, unless the
    true residual has stopped falling (it sits on the floor). A value that did not converge within ``max_iters`` is
    reported as such (``converged`` False), never silently. Like any Krylov method it can miss an eigenvalue whose
    eigenvector is nearly orthogonal to the random start; another ``seed`` is a cheap check. Small operators
    (dim ≤ max(2(k + smallest) + 10, 20)) and ``method="dense"`` use a full eigendecomposition instead.

    Args:
        model_or_operator: a model (then also pass ``loss_fn``, ``batch`` and any ``make_hvp`` options), a
            symmetric square tensor, or an operator with ``@`` and ``.dim``.
        loss_fn: see ``make_hvp``.
        batch: see ``make_hvp``.
        k: how many of the largest eigenvalues.
        iters: fixed number of Lanczos steps; None chooses adaptively.
        tol: relative residual tolerance; None: 1e-6 in float64, 1e-4 in float32 (HVP rounding sets the floor).
        seed: seed of the start vector.
        smallest: how many of the lowest eigenvalues (negative curvature), from the same run.
        max_iters: cap for the adaptive run; None: min(dim, 300, what fits in 512 MiB of basis vectors).
        method: "auto", "lanczos" or "dense".
        verify: recompute the residuals with explicit products; None: only when tol < 500·ε (see above).
        **hvp_kwargs: passed to ``make_hvp`` (mode, param_filter, max_samples, weights, dtype).

    Returns:
        An ``EigenResult``.

    Raises:
        ValueError: for k < 1, smallest < 0, k + smallest > dim, iters < 1, an unknown method, or a dense request
            too large.
    """
    A = _as_operator(model_or_operator, loss_fn, batch, hvp_kwargs)
    dim, dtype, device = _dim(A), _dtype(A), _device(A)
    if k < 1 or smallest < 0 or k + smallest > dim:
        raise ValueError(f"Invalid k={k}, smallest={smallest} for dimension {dim}")
    if iters is not None and iters < 1:
        raise ValueError(f"Invalid iters: {iters}")
    if method not in METHODS:
        raise ValueError(f"Invalid method: {method!r}; expected one of {METHODS}")
    tol = _default_tol(dtype) if tol is None else tol
    n_want = k + smallest
    if method == "dense" or (method == "auto" and iters is None and dim <= max(2 * n_want + 10, 20)):
        return _dense_eigen(A, k, smallest, tol)
    if max_iters is None:
        itemsize = torch.finfo(dtype).bits // 8
        max_iters = min(dim, LANCZOS_MAX_ITERS, max(n_want + 2, LANCZOS_MAX_BYTES // (dim * itemsize)))
    verify = tol < VERIFY_BELOW * torch.finfo(dtype).eps if verify is None else verify
    generator = torch.Generator().manual_seed(seed)
    run = _Lanczos(A, _randn(dim, generator, dtype, device), restart=generator)
    if iters is not None:
        _extend(run, min(iters, dim))
        return _finish(A, run, k, smallest, tol, verify)
    _extend(run, min(max_iters, 2 * n_want + 3))
    verify_after, last_checked = 0, math.inf
    while True:
        theta, S, bounds = run.ritz()
        pick = _pick(len(theta), k, smallest)
        scale = float(np.abs(theta).max())
        out_of_steps = run.exhausted or run.m >= max_iters
        if bool(np.all(bounds[pick] <= tol * scale)) and (not verify or run.m >= verify_after):
            if not verify:
                return _finish(A, run, k, smallest, tol, verify)
            checked = _residuals(A, run, theta, S, pick)
            worst = float(checked[1].max())
            # Stop when confirmed, out of steps, or stagnant: the bound says converged but the true residual did not
            # halve since the last check, i.e. it sits on the HVP's rounding floor and more steps will not help.
            if worst <= tol * scale or out_of_steps or worst > 0.5 * last_checked:
                return _finish(A, run, k, smallest, tol, verify, checked)
            verify_after, last_checked = run.m + max(2, run.m // 4), worst
        if out_of_steps:
            return _finish(A, run, k, smallest, tol, verify)
        run.step()


def _extend(run: _Lanczos, m: int) -> None:
    while run.m < m and not run.exhausted:
        run.step()


def _pick(m: int, k: int, smallest: int) -> np.ndarray:
    """Indices into ascending Ritz values: the top k (descending), then the lowest ``smallest`` (ascending)."""
    top = np.arange(m - 1, max(m - 1 - k, -1), -1)
    low = np.arange(min(smallest, max(m - len(top), 0)))
    return np.concatenate([top, low]).astype(int)


def _residuals(A: Operator, run: _Lanczos, theta: np.ndarray, S: np.ndarray,
               pick: np.ndarray) -> tuple[Tensor, np.ndarray]:
    """Ritz vectors of ``pick`` and their explicit residual norms ‖A y − θ y‖ (one block product)."""
    Y = run.vectors(S[:, pick])
    AY = _matmat(A, Y).to(Y.dtype)
    run.matvecs += Y.shape[1]
    th = torch.as_tensor(theta[pick], dtype=Y.dtype, device=Y.device)
    return Y, torch.linalg.vector_norm(AY - Y * th, dim=0).cpu().double().numpy()


def _finish(A: Operator, run: _Lanczos, k: int, smallest: int, tol: float, verify: bool,
            checked: tuple[Tensor, np.ndarray] | None = None) -> EigenResult:
    theta, S, bounds = run.ritz()
    pick = _pick(len(theta), k, smallest)
    if checked is None:
        checked = _residuals(A, run, theta, S, pick) if verify else (run.vectors(S[:, pick]), bounds[pick])
    scale = float(np.abs(theta).max())
    return _result(theta[pick], checked[1], checked[0], k, tol, scale, run.matvecs, "lanczos", run.m, verify)


def _dense_eigen(A: Operator, k: int, smallest: int, tol: float) -> EigenResult:
    M = _dense(A)
    dim = M.shape[0]
    M64 = 0.5 * (M + M.T).double()
    evals, evecs = torch.linalg.eigh(M64)
    pick = torch.as_tensor(_pick(dim, k, smallest), device=evals.device)
    theta, Y = evals[pick], evecs[:, pick]
    res = torch.linalg.vector_norm(M64 @ Y - Y * theta, dim=0).cpu().numpy()
    scale = float(evals.abs().max())
    return _result(theta.cpu().numpy(), res, Y.to(M.dtype), k, tol, scale, dim if not isinstance(A, Tensor) else 0,
                   "dense", dim, True)


def _result(theta: np.ndarray, res: np.ndarray, Y: Tensor, k: int, tol: float, scale: float, matvecs: int,
            method: str, iters: int, verified: bool) -> EigenResult:
    ok = res <= tol * scale
    vectors = Y.detach().cpu().numpy()
    return EigenResult(eigenvalues=theta[:k], residuals=res[:k], converged=ok[:k], eigenvectors=vectors[:, :k],
                       smallest=theta[k:], smallest_residuals=res[k:], smallest_converged=ok[k:],
                       smallest_eigenvectors=vectors[:, k:], matvecs=matvecs, method=method, iters=iters, tol=tol,
                       verified=verified)


def eigen_at(model: nn.Module, loss_fn: LossFn, batch: Batch, weights: Tensor | np.ndarray, k: int = 1, *,
             iters: int | None = None, tol: float | None = None, seed: int = 0, smallest: int = 0,
             verify: bool | None = None, **hvp_kwargs: Any) -> EigenResult:
    """``top_eigenvalues`` at a flat parameter vector (e.g. a training snapshot), leaving the model untouched.

    Args:
        model: gives the architecture; its own weights are not used or changed.
        loss_fn: see ``make_hvp``.
        batch: see ``make_hvp``.
        weights: (P,) θ in ``named_parameters()`` order, e.g. ``run.weights[i]``.
        k: see ``top_eigenvalues``.
        iters: see ``top_eigenvalues``.
        tol: see ``top_eigenvalues``.
        seed: see ``top_eigenvalues``.
        smallest: see ``top_eigenvalues``.
        verify: see ``top_eigenvalues``.
        **hvp_kwargs: other ``make_hvp`` options.

    Returns:
        An ``EigenResult``.
    """
    op = make_hvp(model, loss_fn, batch, weights=weights, **hvp_kwargs)
    return top_eigenvalues(op, k=k, iters=iters, tol=tol, seed=seed, smallest=smallest, verify=verify)


# ---------------------------------------------------------------------------------------------------- trace


def trace(model_or_operator: nn.Module | Operator, loss_fn: LossFn | None = None, batch: Batch | None = None,
          matvecs: int = 99, *, seed: int = 0, method: str = "hutch++", **hvp_kwargs: Any) -> TraceResult:
    """Stochastic trace with Rademacher probes: Hutch++ (Meyer et al. 2021) or plain Hutchinson.

    Hutch++ spends m/3 products on a sketch S, Q = orth(A S), then tr A ≈ tr(QᵀAQ) + (1/l) Σ_i z_i with
    z_i = g_iᵀ(I − QQᵀ)A(I − QQᵀ)g_i over l ≈ m/3 probes g_i. The first term is exact given Q, so
    stderr = sqrt(Σ_i (z_i − z̄)² / (l(l − 1))), the sample standard error of the Hutchinson part (plain
    Hutchinson: the same formula over all m probes, without the sketch).

    Args:
        model_or_operator: a model (with ``loss_fn``, ``batch``), a square tensor, or an operator.
        loss_fn: see ``make_hvp``.
        batch: see ``make_hvp``.
        matvecs: products to spend (≥ 4 for Hutch++, ≥ 2 for Hutchinson).
        seed: seed of the probes.
        method: "hutch++" or "hutchinson".
        **hvp_kwargs: passed to ``make_hvp``.

    Returns:
        A ``TraceResult``.

    Raises:
        ValueError: for an unknown method or too few matvecs.
    """
    A = _as_operator(model_or_operator, loss_fn, batch, hvp_kwargs)
    dim, dtype, device = _dim(A), _dtype(A), _device(A)
    generator = torch.Generator().manual_seed(seed)
    if method == "hutchinson":
        if matvecs < 2:
            raise ValueError(f"Invalid matvecs: {matvecs}; Hutchinson needs at least 2 for a standard error")
        G = _rademacher(dim, matvecs, generator, dtype, device)
        estimate, stderr = _hutchinson(A, G)
        return TraceResult(estimate, stderr, matvecs, "hutchinson")
    if method != "hutch++":
        raise ValueError(f"Invalid method: {method!r}; expected 'hutch++' or 'hutchinson'")
    if matvecs < 4:
        raise ValueError(f"Invalid matvecs: {matvecs}; Hutch++ needs at least 4")
    n_sketch = matvecs // 3
    S = _rademacher(dim, n_sketch, generator, dtype, device)
    G = _rademacher(dim, matvecs - 2 * n_sketch, generator, dtype, device)
    Q, _ = torch.linalg.qr(_matmat(A, S).to(dtype))  # (dim, min(dim, n_sketch)): narrower for tiny operators
    exact = float(torch.einsum("ij,ij->", Q, _matmat(A, Q).to(dtype)))
    G = G - Q @ (Q.T @ G)  # probe only the complement of the sketched (dominant) subspace
    rest, stderr = _hutchinson(A, G)
    return TraceResult(exact + rest, stderr, n_sketch + Q.shape[1] + G.shape[1], "hutch++")


def _hutchinson(A: Operator, G: Tensor) -> tuple[float, float]:
    """Mean and standard error of z_i = g_iᵀ A g_i over the columns of G."""
    z = torch.einsum("ij,ij->j", G, _matmat(A, G).to(G.dtype)).double().cpu()
    stderr = float(z.std(correction=1) / math.sqrt(len(z))) if len(z) > 1 else math.nan
    return float(z.mean()), stderr


# ---------------------------------------------------------------------------------------------------- density


def spectral_density(model_or_operator: nn.Module | Operator, loss_fn: LossFn | None = None,
                     batch: Batch | None = None, *, iters: int = 80, n_vectors: int = 4, seed: int = 0,
                     grid: np.ndarray | None = None, n_grid: int = 500, sigma: float | None = None,
                     **hvp_kwargs: Any) -> Density:
    """Stochastic Lanczos quadrature: φ(t) = (1/n_v) Σ_v Σ_j τ_vj N(t; θ_vj, σ²) over Gauss nodes θ, weights τ.

    Each unit Rademacher start vector v gives Ritz values θ_vj and weights τ_vj = (first component of T's j-th
    eigenvector)², so Σ_j τ_vj θ_vj = vᵀAv, an unbiased estimate of tr A / dim.

    Args:
        model_or_operator: a model (with ``loss_fn``, ``batch``), a square tensor, or an operator.
        loss_fn: see ``make_hvp``.
        batch: see ``make_hvp``.
        iters: Lanczos steps per vector (capped at the dimension).
        n_vectors: start vectors.
        seed: seed of the start vectors.
        grid: eigenvalue axis; None: ``n_grid`` points spanning the nodes with 5% margins.
        n_grid: points of the default grid.
        sigma: Gaussian width; None: two default-grid spacings.
        **hvp_kwargs: passed to ``make_hvp``.

    Returns:
        A ``Density``.

    Raises:
        ValueError: for iters, n_vectors or n_grid < 1, or sigma ≤ 0.
    """
    A = _as_operator(model_or_operator, loss_fn, batch, hvp_kwargs)
    if iters < 1 or n_vectors < 1 or n_grid < 2 or (sigma is not None and sigma <= 0):
        raise ValueError(f"Invalid iters={iters}, n_vectors={n_vectors}, n_grid={n_grid} or sigma={sigma}")
    dim, dtype, device = _dim(A), _dtype(A), _device(A)
    m = min(iters, dim)
    generator = torch.Generator().manual_seed(seed)
    nodes, weights = np.zeros((n_vectors, m)), np.zeros((n_vectors, m))
    used = 0
    for v in range(n_vectors):
        start = _rademacher(dim, 1, generator, dtype, device)[:, 0]
        run = _Lanczos(A, start)
        _extend(run, m)
        theta, S, _ = run.ritz()
        nodes[v, : run.m], weights[v, : run.m] = theta, S[0] ** 2
        used += run.matvecs
    grid, sigma = _grid(nodes, weights, grid, n_grid, sigma)
    gauss = np.exp(-0.5 * ((grid[:, None] - nodes.reshape(-1)[None]) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    density = gauss @ weights.reshape(-1) / n_vectors
    return Density(nodes, weights, grid, density, float(sigma), used)


def _grid(nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray | None, n_grid: int,
          sigma: float | None) -> tuple[np.ndarray, float]:
    real = nodes[weights > 0] if np.any(weights > 0) else nodes.reshape(-1)
    lo, hi = float(real.min()), float(real.max())
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    if grid is None:
        grid = np.linspace(lo - 0.05 * span, hi + 0.05 * span, n_grid)
    grid = np.asarray(grid, dtype=np.float64)
    # Two spacings of the default grid: narrow enough to resolve outliers, wide enough to integrate on the grid.
    return grid, sigma if sigma is not None else 2 * 1.1 * span / (n_grid - 1)


# ---------------------------------------------------------------------------------------------------- dense


def dense_hessian(model: nn.Module, loss_fn: LossFn, batch: Batch, **hvp_kwargs: Any) -> Tensor:
    """The exact Hessian as a dense (P, P) matrix, built from blocks of HVPs; for P ≤ MAX_DENSE_PARAMS.

    Args:
        model: the network (not modified).
        loss_fn: see ``make_hvp``.
        batch: see ``make_hvp``.
        **hvp_kwargs: passed to ``make_hvp`` (e.g. ``dtype=torch.float64``, ``param_filter``).

    Returns:
        (P, P) tensor on the model's device.

    Raises:
        ValueError: if P > MAX_DENSE_PARAMS.
    """
    return make_hvp(model, loss_fn, batch, **hvp_kwargs).to_dense()  # to_dense checks the size


def dense_eigenvalues(model_or_operator: nn.Module | Operator, loss_fn: LossFn | None = None,
                      batch: Batch | None = None, **hvp_kwargs: Any) -> np.ndarray:
    """All eigenvalues, descending, from the dense symmetrised Hessian ½(H + Hᵀ) (``eigvalsh`` in float64).

    Args:
        model_or_operator: a model (with ``loss_fn``, ``batch``), a square tensor, or an operator.
        loss_fn: see ``make_hvp``.
        batch: see ``make_hvp``.
        **hvp_kwargs: passed to ``make_hvp``.

    Returns:
        (P,) numpy float64, descending.

    Raises:
        ValueError: if P > MAX_DENSE_PARAMS.
    """
    A = _as_operator(model_or_operator, loss_fn, batch, hvp_kwargs)
    _check_dense(_dim(A))
    H = _dense(A).double()
    return torch.linalg.eigvalsh(0.5 * (H + H.T)).flip(0).cpu().numpy()
