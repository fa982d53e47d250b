"""Loss landscapes: planes through parameter space, 2-D loss surfaces on them, and trajectories projected onto them.

A ``Plane`` is an origin and two directions in the flat parameter space (``named_parameters()`` order). Surfaces
are evaluated with ``torch.func.functional_call`` on private parameter tensors: the caller's model is never
moved, frozen or put in another mode. Several grid evaluators exist (a per-point loop, ``vmap`` over chunks, and
a fused path for MLPs); ``surface`` picks the fastest by a quick measurement and caches the choice.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from .data import analytic_loss
from .models import accuracy as accuracy_of  # `accuracy` is a flag's name here
from .models import flatten, split_parameters

Batch = tuple[Tensor, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]

MAX_RESOLUTION = 201  # grid points per axis, enforced here whatever the caller


# --------------------------------------------------------------------------------------------------- planes


@dataclass(frozen=True, eq=False)
class Plane:
    """An affine plane θ(α, β) = origin + α·d1 + β·d2 in flat parameter space.

    Attributes:
        origin, d1, d2: (P,) float64 arrays, read-only copies of the ones given.
        kind: "random", "pca", "hessian", "three_points" or "axes".
        explained_variance: PCA planes: the share of the trajectories' variance along d1 and d2.
        seed: random planes: the seed the directions were drawn with.
        info: anything else worth showing (e.g. Hessian eigenvalues of the directions).
    """

    origin: np.ndarray
    d1: np.ndarray
    d2: np.ndarray
    kind: str
    explained_variance: tuple[float, float] | None = None
    seed: int | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        # private read-only float64 copies: the plane cannot change under its cached content hash
        for name in ("origin", "d1", "d2"):
            array = np.array(getattr(self, name), dtype=np.float64)
            array.flags.writeable = False
            object.__setattr__(self, name, array)

    def point(self, alpha: float, beta: float) -> np.ndarray:
        return self.origin + alpha * self.d1 + beta * self.d2

    def key(self) -> str:
        """A content hash, computed once: planes with equal arrays share cached surfaces."""
        if "_key" not in self.__dict__:
            h = hashlib.sha1()
            for a in (self.origin, self.d1, self.d2):
                h.update(a.tobytes())
            object.__setattr__(self, "_key", h.hexdigest())
        return self.__dict__["_key"]


def flat_parameters(model: nn.Module) -> np.ndarray:
    """The model's parameters as one float64 vector in ``named_parameters()`` order."""
    return flatten(model).to(torch.float64).cpu().numpy()


def random_directions(model: nn.Module, seed: int, filter_normalize: bool = True, ignore: str | None = "biasbn") -> np.ndarray:
    """Two Gaussian directions, filter-normalised as in Li et al. (2018), "Visualizing the Loss Landscape".

    Each filter of a direction (a row of a Linear weight, an output channel of a Conv weight) is rescaled to the
    norm of the matching filter of the weights, d_f ← d_f·‖θ_f‖/‖d_f‖, so the plot's scale means the same for
    every layer. One-dimensional tensors (biases, BatchNorm) are zeroed with ``ignore="biasbn"`` (Li et al.'s
    ``--xignore biasbn``); otherwise each is normalised as a single filter. Drawn in float64 on the CPU from a
    generator seeded with ``seed`` alone, so the same seed always gives the same directions.

    Returns:
        (2, P) float64 array.

    Raises:
        ValueError: ``ignore`` is neither "biasbn" nor None.
    """
    if ignore not in ("biasbn", None):
        raise ValueError(f"Invalid ignore: {ignore!r}; valid: 'biasbn' or None")
    generator = torch.Generator().manual_seed(seed)
    directions = []
    for _ in range(2):
        parts = []
        for p in model.parameters():
            w = p.detach().to("cpu", torch.float64)
            d = torch.randn(w.shape, generator=generator, dtype=torch.float64)
            if w.dim() <= 1 and ignore == "biasbn":
                d.zero_()
            elif filter_normalize:
                d = _match_filter_norms(d, w)
            parts.append(d.reshape(-1))
        directions.append(torch.cat(parts))
    return torch.stack(directions).numpy()


def _match_filter_norms(d: Tensor, w: Tensor) -> Tensor:
    """Scale each filter (slice along dim 0; a 1-D tensor is one filter) of d to the norm of w's."""
    d2, w2 = (d.reshape(d.shape[0], -1), w.reshape(w.shape[0], -1)) if d.dim() > 1 else (d.reshape(1, -1), w.reshape(1, -1))
    scale = w2.norm(dim=1, keepdim=True) / (d2.norm(dim=1, keepdim=True) + 1e-10)
    return (d2 * scale).reshape(d.shape)


def random_plane(model: nn.Module, seed: int = 0, *, filter_normalize: bool = True, ignore: str | None = "biasbn",
                 origin: np.ndarray | None = None) -> Plane:
    """A plane through ``origin`` (default: the model's parameters) along ``random_directions``."""
    d = random_directions(model, seed, filter_normalize, ignore)
    o = flat_parameters(model) if origin is None else np.asarray(origin, dtype=np.float64)
    return Plane(o, d[0], d[1], "random", seed=seed)


def pca_plane(trajectories: np.ndarray | Sequence[np.ndarray], center: np.ndarray | None = None) -> Plane:
    """The plane of the top-2 principal components of θ_t − center over the snapshots of one or several runs.

    Computed from the T×T Gram matrix (T snapshots, P ≫ T parameters): if (θ − c)(θ − c)ᵀ = U Λ Uᵀ, the
    directions are (θ − c)ᵀ u_i / sqrt(λ_i) (unit vectors) and the explained variance is λ_i / Σλ.

    Args:
        trajectories: (T, P) snapshots, or a list of such arrays (several optimizers from one θ_0).
        center: the plane's origin; default the last snapshot of the first trajectory (θ_final, as Li et al.).

    Raises:
        ValueError: fewer than three distinct snapshots (no plane is defined).
    """
    runs = [np.asarray(t, dtype=np.float64) for t in (trajectories if isinstance(trajectories, (list, tuple)) else [trajectories])]
    points = np.concatenate(runs)
    points = points[np.all(np.isfinite(points), axis=1)]
    c = runs[0][-1] if center is None else np.asarray(center, dtype=np.float64)
    x = points - c
    gram = x @ x.T
    eigvals, eigvecs = np.linalg.eigh(gram)
    eigvals, eigvecs = eigvals[::-1], eigvecs[:, ::-1]
    if len(points) < 3 or eigvals[1] <= 1e-12 * max(eigvals[0], 1e-300):
        raise ValueError("Invalid trajectories: a PCA plane needs at least three snapshots that span two directions")
    dirs = [x.T @ eigvecs[:, i] / math.sqrt(eigvals[i]) for i in range(2)]
    share = eigvals[:2] / eigvals[eigvals > 0].sum()
    return Plane(c, dirs[0], dirs[1], "pca", explained_variance=(float(share[0]), float(share[1])))


def hessian_plane(model: nn.Module, loss_fn: LossFn, batch: Batch, weights: np.ndarray | None = None, *,
                  seed: int = 0, max_samples: int | None = None) -> Plane:
    """The plane through θ (default: the model's parameters) along the Hessian's top-2 eigenvectors (unit norm).

    The eigenpairs come from Lanczos (``sam_viz.hessian.top_eigenvalues``); their eigenvalues and residuals
    are kept in ``info`` so the view can say how sharp each direction is.
    """
    from .hessian import eigen_at  # the Hessian engine loads only for this plane

    theta = flat_parameters(model) if weights is None else np.asarray(weights, dtype=np.float64)
    eig = eigen_at(model, loss_fn, batch, theta, k=2, seed=seed, max_samples=max_samples)
    vecs = np.asarray(eig.eigenvectors, dtype=np.float64)
    d1, d2 = (vecs[:, i] / np.linalg.norm(vecs[:, i]) for i in range(2))
    return Plane(theta, d1, d2, "hessian", info={"eigenvalues": eig.eigenvalues.tolist(),
                                                  "residuals": eig.residuals.tolist()})


def three_point_plane(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> Plane:
    """The plane through three parameter vectors: origin a, d1 = b − a, d2 = the part of c − a orthogonal to d1.

    In its coordinates a = (0, 0), b = (1, 0) and c lies at (⟨c−a, d1⟩/‖d1‖², 1).

    Raises:
        ValueError: the three points are (nearly) collinear.
    """
    a, b, c = (np.asarray(v, dtype=np.float64) for v in (a, b, c))
    d1 = b - a
    u = c - a
    d1_sq = float(d1 @ d1)
    if d1_sq == 0.0:
        raise ValueError("Invalid points: a and b coincide")
    d2 = u - (u @ d1) / d1_sq * d1
    if float(d2 @ d2) <= 1e-18 * max(d1_sq, float(u @ u)):
        raise ValueError("Invalid points: a, b and c are collinear")
    return Plane(a, d1, d2, "three_points")


def axes_plane(n_params: int = 2, origin: Sequence[float] | None = None) -> Plane:
    """The coordinate plane of a 2-parameter model (analytic tasks: the parameters *are* the plane)."""
    o = np.zeros(n_params) if origin is None else np.asarray(origin, dtype=np.float64)
    return Plane(o, np.eye(n_params)[0], np.eye(n_params)[1], "axes")


# --------------------------------------------------------------------------------------------------- projection


@dataclass(frozen=True, eq=False)
class Projection:
    """Points projected onto a plane by least squares.

    Attributes:
        alpha, beta: (T,) plane coordinates of the projections.
        off_plane: (T,) distance from each point to the plane (a contour is a slice: a point off the plane need
            not sit on the contour value; show the gap rather than hide it).
        true_loss: (T,) loss at the points themselves (when a model was given; else NaN).
        plane_loss: (T,) loss at their projections on the plane (what the surface shows there).
    """

    alpha: np.ndarray
    beta: np.ndarray
    off_plane: np.ndarray
    true_loss: np.ndarray
    plane_loss: np.ndarray


def project(plane: Plane, points: np.ndarray, model: nn.Module | None = None, loss_fn: LossFn | None = None,
            batch: Batch | None = None) -> Projection:
    """Least-squares coordinates of ``points`` (T, P) on ``plane``, their off-plane distance and, with a model,
    the loss at each point and at its projection."""
    pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
    basis = np.stack([plane.d1, plane.d2], axis=1)  # (P, 2)
    rel = pts - plane.origin
    coords, *_ = np.linalg.lstsq(basis, rel.T, rcond=None)  # (2, T)
    residual = rel - (basis @ coords).T
    off = np.linalg.norm(residual, axis=1)
    nan = np.full(len(pts), np.nan)
    if model is None:
        return Projection(coords[0], coords[1], off, nan, nan.copy())
    projected = plane.origin + (basis @ coords).T
    true_loss = evaluate_points(model, loss_fn, batch, pts)[0]
    plane_loss = evaluate_points(model, loss_fn, batch, projected)[0]
    return Projection(coords[0], coords[1], off, true_loss, plane_loss)


# --------------------------------------------------------------------------------------------------- evaluation


def _model_tensors(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters())
    return p.device, p.dtype


def _at_point(model: nn.Module, loss_fn: LossFn, batch: Batch, flat: Tensor, accuracy: bool) -> tuple[Tensor, Tensor | None]:
    """Loss (and accuracy) with the parameters ``flat`` (P,), the model untouched."""
    out = functional_call(model, split_parameters(model, flat), (batch[0],))
    return loss_fn(out, batch[1]), (accuracy_of(out, batch[1]) if accuracy else None)


def evaluate_points(model: nn.Module, loss_fn: LossFn, batch: Batch, points: np.ndarray,
                    accuracy: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Loss (and accuracy) at each flat parameter vector of ``points`` (T, P), one forward each."""
    device, dtype = _model_tensors(model)
    pts = torch.as_tensor(np.atleast_2d(points), device=device, dtype=dtype)
    with torch.no_grad():
        values = [_at_point(model, loss_fn, batch, row, accuracy) for row in pts]
    return np.array([float(v[0]) for v in values]), (np.array([float(v[1]) for v in values]) if accuracy else None)


class _Grid:
    """Evaluates loss/accuracy at K plane points per call; subclasses are the evaluators."""

    name = "base"

    def __init__(self, model: nn.Module, loss_fn: LossFn, batch: Batch, plane: Plane, accuracy: bool) -> None:
        self.model, self.loss_fn, self.accuracy = model, loss_fn, accuracy
        self.x, self.y = batch
        device, dtype = _model_tensors(model)
        self.device, self.dtype = device, dtype
        self.origin, self.d1, self.d2 = (torch.tensor(v, device=device, dtype=dtype) for v in (plane.origin, plane.d1, plane.d2))

    def __call__(self, alpha: Tensor, beta: Tensor) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def chunk(self) -> int:
        return 1


class _LoopGrid(_Grid):
    """One ``functional_call`` per point: best where one point's activations already fill the caches."""

    name = "loop"

    @torch.no_grad()
    def __call__(self, alpha: Tensor, beta: Tensor) -> tuple[Tensor, Tensor | None]:
        values = [_at_point(self.model, self.loss_fn, (self.x, self.y),
                            torch.add(self.origin, self.d1, alpha=a).add_(self.d2, alpha=b), self.accuracy)
                  for a, b in zip(alpha.tolist(), beta.tolist())]
        return torch.stack([v[0] for v in values]), (torch.stack([v[1] for v in values]) if self.accuracy else None)


class _VmapGrid(_Grid):
    """``vmap`` of ``functional_call`` over a chunk of points: amortises per-call overhead on small data/GPUs."""

    name = "vmap"

    def __init__(self, *args, chunk: int = 16) -> None:
        super().__init__(*args)
        self._chunk = chunk

        def one(params: dict[str, Tensor]) -> Tensor | tuple[Tensor, Tensor]:
            out = functional_call(self.model, params, (self.x,))
            loss = self.loss_fn(out, self.y)
            return (loss, accuracy_of(out, self.y)) if self.accuracy else loss

        self._batched = torch.func.vmap(one)

    def chunk(self) -> int:
        return self._chunk

    @torch.no_grad()
    def __call__(self, alpha: Tensor, beta: Tensor) -> tuple[Tensor, Tensor | None]:
        flat = self.origin + alpha[:, None] * self.d1 + beta[:, None] * self.d2
        out = self._batched(split_parameters(self.model, flat))
        return out if self.accuracy else (out, None)


_ELEMENTWISE = {nn.Tanh: "tanh", nn.ReLU: "relu", nn.GELU: "gelu", nn.Sigmoid: "sigmoid", nn.Softplus: "softplus", nn.ELU: "elu"}


def _linear_chain(model: nn.Module) -> list[nn.Module] | None:
    """The layers of a model that is a plain chain of Linear and elementwise activations, else None."""
    seq = model if isinstance(model, nn.Sequential) else None
    children = list(model.children())
    if seq is None and len(children) == 1 and isinstance(children[0], nn.Sequential):
        seq = children[0]
        if not hasattr(model, "layers"):
            return None
    if seq is None:
        return None
    layers = list(seq)
    ok = layers and isinstance(layers[0], nn.Linear) and isinstance(layers[-1], nn.Linear)
    ok = ok and all(isinstance(m, nn.Linear) or type(m) in _ELEMENTWISE for m in layers)
    if ok and all(m.bias is not None for m in layers if isinstance(m, nn.Linear)):
        # The model's names must be the chain's, so flat offsets line up with the layers.
        return layers
    return None


def _activation(kind: str, h: Tensor) -> Tensor:
    """In-place activation. tanh uses tanh(x) = 2σ(2x) − 1: torch's sigmoid kernel is several times faster than
    its tanh on CPUs, and the identity is exact up to ~1e-7 absolute in float32."""
    if kind == "tanh":
        return h.mul_(2).sigmoid_().mul_(2).sub_(1)
    if kind == "relu":
        return h.relu_()
    return {"gelu": nn.functional.gelu, "sigmoid": torch.sigmoid, "softplus": nn.functional.softplus,
            "elu": nn.functional.elu}[kind](h)


_SCRATCH = threading.local()
SCRATCH_KEEP_BYTES = 64 << 20  # larger activation buffers are not kept between surfaces


def _scratch(size: int, device: torch.device, dtype: torch.dtype) -> list[Tensor]:
    """Two activation buffers of ``size`` elements, kept per thread across surfaces: fresh pages are zeroed by the
    kernel on first touch, which made a surface's first chunks (its coarse picture) twice as slow per point."""
    kept = getattr(_SCRATCH, "buffers", None)
    if kept is not None and kept[0].numel() >= size and kept[0].device == device and kept[0].dtype == dtype:
        return [b[:size] for b in kept]
    buffers = [torch.empty(size, device=device, dtype=dtype) for _ in range(2)]
    if 2 * size * buffers[0].element_size() <= SCRATCH_KEEP_BYTES:
        _SCRATCH.buffers = buffers
    return buffers


class _MLPGrid(_Grid):
    """Fused evaluator for Linear/activation chains (our MLP and logistic models).

    For a chunk of K points each layer's weights are W + a·D1 + b·D2; one GEMM with inner dimension 3 builds all
    K weight sets ([a, b, 1] @ [D1; D2; W]). The first layer is either a batched GEMM on the inputs with a ones
    column carrying the bias (when there are at most 3 input features), or a combination of three precomputed
    (N, H) products X(W + aD1 + bD2)ᵀ, whichever reads less memory. Activations live in two buffers reused
    across chunks: a fresh multi-megabyte tensor per layer costs a page fault per 4 KiB on every call.
    """

    name = "mlp"

    def __init__(self, *args, chunk: int = 8) -> None:
        super().__init__(*args)
        self._chunk = chunk
        self.layers = _linear_chain(self.model)
        self.ce = self.loss_fn is nn.functional.cross_entropy
        names = [n for n, _ in self.model.named_parameters()]
        views = split_parameters(self.model, torch.stack([self.d1, self.d2, self.origin]))  # {name: (3, *shape)}
        # per Linear: (out, in, (3, in·out + out) rows [D1; D2; W] with W stored as [Wᵀ; b], activation after it)
        self.stack = []
        linear_idx = 0
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, nn.Linear):
                continue
            w_name, b_name = names[2 * linear_idx], names[2 * linear_idx + 1]
            rows = torch.cat([views[w_name].transpose(1, 2).reshape(3, -1), views[b_name]], dim=1)
            nxt = self.layers[i + 1] if i + 1 < len(self.layers) else None
            self.stack.append((layer.out_features, layer.in_features, rows, _ELEMENTWISE.get(type(nxt))))
            linear_idx += 1
        # Two classes under cross-entropy: only the logit difference d = z₁ − z₀ matters (loss = softplus(±d)),
        # so the last layer collapses to one output: half its GEMM, no log-softmax over (K·N, 2).
        out_l, in_l, rows_l, act_l = self.stack[-1]
        self.binary = self.ce and out_l == 2
        if self.binary:
            w_t = rows_l[:, : in_l * 2].reshape(3, in_l, 2)
            bias = rows_l[:, in_l * 2:]
            diff = torch.cat([w_t[:, :, 1] - w_t[:, :, 0], bias[:, 1:] - bias[:, :1]], dim=1)
            self.stack[-1] = (1, in_l, diff, act_l)
            self.sign = 1.0 - 2.0 * self.y.to(self.dtype)  # loss_i = softplus(sign_i · d_i)
        out0, in0, rows0, _ = self.stack[0]
        if in0 <= 3:
            self.x_ones = torch.cat([self.x, torch.ones_like(self.x[:, :1])], dim=1)  # (N, in0 + 1)
            self.first = None
        else:  # X Wᵀ + b for the three rows of the first layer: (3, N·out0)
            w0 = rows0[:, : out0 * in0].reshape(3, in0, out0)
            self.first = (torch.matmul(self.x, w0) + rows0[:, None, out0 * in0:]).reshape(3, -1)
        self.y_rep = None if self.binary else self.y.repeat(self._chunk)  # labels of a chunk's (K·N, C) logits
        self.buffers = _scratch(self._chunk * self.x.shape[0] * max(out for out, *_ in self.stack), self.device, self.dtype)

    def chunk(self) -> int:
        return self._chunk

    @staticmethod
    def _weights(coeff: Tensor, layer: tuple) -> tuple[Tensor, Tensor]:
        """Per-point (K, in, out) weights and (K, 1, out) biases of one layer."""
        out_f, in_f, rows, _ = layer
        params = coeff @ rows  # (K, in·out + out)
        return params[:, : out_f * in_f].unflatten(1, (in_f, out_f)), params[:, None, out_f * in_f:]

    def _first_layer(self, coeff: Tensor) -> Tensor:
        """The first layer's activations for the chunk, (K, N, out0), in the first buffer."""
        k, n = coeff.shape[0], self.x.shape[0]
        out0, in0, rows0, act = self.stack[0]
        h = self.buffers[0][: k * n * out0].view(k, n, out0)
        if self.first is None:
            torch.bmm(self.x_ones.expand(k, -1, -1), (coeff @ rows0).view(k, in0 + 1, out0), out=h)
        else:
            torch.mm(coeff, self.first, out=h.view(k, -1))
        return _activation(act, h) if act else h

    def _later_layers(self, h: Tensor, coeff: Tensor) -> Tensor:
        """The remaining layers, batched over the chunk: (K, N, outputs)."""
        (cur, spare), last = self.buffers, len(self.stack) - 1
        for i, layer in enumerate(self.stack[1:], 1):
            w, b = self._weights(coeff, layer)
            if self.binary and i == last:  # one output: a multiply-and-sum runs 3× faster than bmm's matrix-vector
                h = torch.mul(h, w.transpose(1, 2), out=spare[: h.numel()].view_as(h)).sum(-1, keepdim=True).add_(b)
            else:
                h = torch.baddbmm(b, h, w, out=spare[: h.shape[0] * h.shape[1] * layer[0]].view(*h.shape[:2], layer[0]))
                cur, spare = spare, cur
            if layer[3]:
                h = _activation(layer[3], h)
        return h

    @torch.no_grad()
    def __call__(self, alpha: Tensor, beta: Tensor) -> tuple[Tensor, Tensor | None]:
        k, n = alpha.shape[0], self.x.shape[0]
        coeff = torch.stack([alpha, beta, torch.ones_like(alpha)], dim=1)  # (K, 3)
        h = self._later_layers(self._first_layer(coeff), coeff)
        if self.binary:
            d = h[..., 0]
            loss = nn.functional.softplus(self.sign * d).mean(1)
            # argmax picks the first of equal logits, so class 1 wins only when d > 0
            acc = ((d > 0) == (self.y == 1)).to(d.dtype).mean(1) if self.accuracy else None
            return loss, acc
        if self.ce:
            loss = nn.functional.cross_entropy(h.reshape(k * n, -1), self.y_rep[: k * n], reduction="none").reshape(k, n).mean(1)
        else:
            loss = torch.stack([self.loss_fn(h[i], self.y) for i in range(k)])
        acc = (h.argmax(-1) == self.y).to(h.dtype).mean(1) if self.accuracy else None
        return loss, acc


def _onednn_linear(model: nn.Module | None = None) -> Callable | None:
    """oneDNN's fused linear + activation, where this torch build has it (CPU builds with MKL-DNN) and, given a
    model, where it can run that model (float32 on the CPU)."""
    if model is not None and _model_tensors(model) != (torch.device("cpu"), torch.float32):
        return None
    try:
        return torch.ops.mkldnn._linear_pointwise if torch.backends.mkldnn.is_available() else None
    except (AttributeError, RuntimeError):
        return None


# activation → (oneDNN's fused post-op, its algorithm argument); the others are applied after the linear
_ONEDNN_FUSED = {"relu": ("relu", ""), "tanh": ("tanh", ""), "sigmoid": ("sigmoid", ""), "gelu": ("gelu", "none")}


class _OneDNNGrid(_MLPGrid):
    """The fused MLP evaluator with the layers after the first run point by point through oneDNN's linear with
    the activation fused in. On CPUs where MKL takes its AVX2 path (AMD), oneDNN's AVX-512 float32 GEMM is ~1.6×
    faster for these shapes at the same accuracy, and the fused activation saves a pass over the activations.
    """

    name = "onednn"

    def __init__(self, model: nn.Module, *args, chunk: int = 8) -> None:
        self.linear = _onednn_linear(model)  # checked before the parent allocates anything
        if self.linear is None:
            raise NotImplementedError("oneDNN's linear runs float32 models on the CPU, in torch builds with MKL-DNN")
        super().__init__(model, *args, chunk=chunk)

    def _later_layers(self, h: Tensor, coeff: Tensor) -> Tensor:
        layers = []
        for i, layer in enumerate(self.stack[1:], 1):
            w, b = self._weights(coeff, layer)
            layers.append((w.transpose(1, 2).unbind(0), b[:, 0].unbind(0), layer[3], self.binary and i == len(self.stack) - 1))
        outputs = []
        for i, hi in enumerate(h.unbind(0)):
            for w, b, act, dot in layers:
                if dot:  # one output: a matrix-vector product
                    hi = torch.mv(hi, w[i][0]).add_(b[i])[:, None]
                    continue
                attr, algorithm = _ONEDNN_FUSED.get(act, ("none", ""))
                hi = self.linear(hi, w[i], b[i], attr, [], algorithm)
                if act and act not in _ONEDNN_FUSED:
                    hi = _activation(act, hi)
            outputs.append(hi)
        return torch.stack(outputs)


def _candidates(model: nn.Module, loss_fn: LossFn, n: int) -> list[tuple[type[_Grid], dict]]:
    cands: list[tuple[type[_Grid], dict]] = [(_LoopGrid, {})]

    def chunk(rows: int = 16_384) -> int:  # K·N ≈ 16k rows keeps a chunk's activations near the caches' size
        return max(1, min(256, rows // max(n, 1)))

    if _linear_chain(model) is not None:
        cands += [(_MLPGrid, {"chunk": c}) for c in sorted({chunk(), chunk(16_384 // 4)})]
        if _onednn_linear(model) is not None:
            cands += [(_OneDNNGrid, {"chunk": chunk()})]
    cands += [(_VmapGrid, {"chunk": chunk()})]
    return cands


_EVALUATOR_CHOICE: dict[tuple, tuple[type[_Grid], dict]] = {}


def _choose(model: nn.Module, loss_fn: LossFn, batch: Batch, plane: Plane, accuracy: bool, evaluator: str) -> _Grid:
    """The evaluator to use: the one named, or the fastest on a few points (cached per model shape, data size
    and device)."""
    args = (model, loss_fn, batch, plane, accuracy)
    n = batch[0].shape[0]
    device, dtype = _model_tensors(model)
    key = (repr(model), getattr(loss_fn, "__qualname__", repr(loss_fn)), n, str(device), str(dtype), accuracy)
    if evaluator == "auto" and key in _EVALUATOR_CHOICE:
        cls, kw = _EVALUATOR_CHOICE[key]
        return cls(*args, **kw)
    cands = _candidates(model, loss_fn, n)
    if evaluator != "auto":
        for cls, kw in reversed(cands):  # the largest chunk of that name
            if cls.name == evaluator:
                try:
                    return cls(*args, **kw)
                except NotImplementedError as err:
                    raise ValueError(f"Evaluator {evaluator!r} cannot run here: {err}") from None
        raise ValueError(f"Invalid evaluator: {evaluator!r}; valid for this model: auto, {', '.join(sorted({c.name for c, _ in cands}))}")
    grids = []
    for cls, kw in cands:
        try:
            grids.append(((cls, kw), cls(*args, **kw)))
        except (RuntimeError, NotImplementedError):  # e.g. no oneDNN in this build: skip that evaluator
            continue
    # Two interleaved rounds, best rate kept: a single short timing follows the machine's load too closely.
    rates = [0.0] * len(grids)
    for _ in range(2):
        for i, (_, grid) in enumerate(grids):
            if rates[i] < 0:
                continue
            try:
                rates[i] = max(rates[i], _points_per_second(grid))
            except (RuntimeError, NotImplementedError, TypeError):  # an op vmap cannot batch; a private op whose signature moved
                rates[i] = -1.0
    choice, grid = grids[max(range(len(grids)), key=rates.__getitem__)]
    _EVALUATOR_CHOICE[key] = choice
    return grid  # the one just timed: no need to build it again


def _points_per_second(grid: _Grid) -> float:
    k = grid.chunk()
    pts = max(2 * k, 32)  # at least two calls: one chunk's time swings with the machine's load
    a = torch.linspace(-1, 1, pts, device=grid.device, dtype=grid.dtype)
    grid(a[:k], a[:k])  # warm-up
    _sync(grid.device)
    start = time.perf_counter()
    for i in range(0, pts, k):
        grid(a[i:i + k], a[i:i + k])
    _sync(grid.device)
    return pts / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------------------------- surfaces


@dataclass(frozen=True, eq=False)
class Surface:
    """Loss (and accuracy) on a grid of a plane.

    Attributes:
        alpha: (A,) coordinates along d1; beta: (B,) along d2.
        loss: (B, A) loss at origin + α_j d1 + β_i d2, indexed [i_beta, i_alpha]; NaN where not yet computed.
        accuracy: (B, A) or None (no labels).
        plane: the plane.
        evaluator: which grid evaluator computed it ("loop", "vmap", "mlp", "analytic").
        seconds: time spent evaluating.
        n_samples: samples the loss was averaged over.
    """

    alpha: np.ndarray
    beta: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray | None
    plane: Plane
    evaluator: str
    seconds: float
    n_samples: int

    @property
    def center_value(self) -> float:
        """The loss at the grid point nearest (0, 0) (exactly (0, 0) for odd resolutions and symmetric spans)."""
        return float(self.loss[np.abs(self.beta).argmin(), np.abs(self.alpha).argmin()])


def _axis(span: float | tuple[float, float], resolution: int) -> np.ndarray:
    lo, hi = (-span, span) if np.isscalar(span) else span
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"Invalid span: {span!r} (need finite low < high)")
    return np.linspace(lo, hi, resolution)


def _as_plane(model: nn.Module, directions: Plane | np.ndarray, center: np.ndarray | None) -> Plane:
    if isinstance(directions, Plane):
        if center is None:
            return directions
        return Plane(np.asarray(center, dtype=np.float64), directions.d1, directions.d2, directions.kind,
                     directions.explained_variance, directions.seed, directions.info)
    d = np.asarray(directions, dtype=np.float64)
    origin = flat_parameters(model) if center is None else np.asarray(center, dtype=np.float64)
    return Plane(origin, d[0], d[1], "given")


def _check_grid(model: nn.Module, plane: Plane, resolution: int | tuple[int, int]) -> tuple[int, int]:
    res = (resolution, resolution) if isinstance(resolution, (int, np.integer)) else tuple(resolution)
    if len(res) != 2 or any(isinstance(r, bool) or not 2 <= int(r) <= MAX_RESOLUTION for r in res):
        raise ValueError(f"Invalid resolution: {resolution!r} (valid: 2 to {MAX_RESOLUTION} points per axis)")
    n_params = sum(p.numel() for p in model.parameters())
    for name, v in (("origin", plane.origin), ("d1", plane.d1), ("d2", plane.d2)):
        if v.shape != (n_params,):
            raise ValueError(f"Invalid plane: {name} has shape {v.shape}, the model has {n_params} parameters")
    return int(res[0]), int(res[1])


_SURFACE_CACHE: OrderedDict[str, Surface] = OrderedDict()
SURFACE_CACHE_SIZE = 32


def _surface_key(model: nn.Module, loss_fn: LossFn, batch: Batch, plane: Plane, alpha: np.ndarray, beta: np.ndarray,
                 accuracy: bool) -> str:
    h = hashlib.sha1(plane.key().encode())
    h.update(repr(model).encode())
    h.update(getattr(loss_fn, "__qualname__", repr(loss_fn)).encode())
    for t in batch:
        h.update(t.detach().cpu().numpy().tobytes())
    h.update(alpha.tobytes())
    h.update(beta.tobytes())
    h.update(str((accuracy, str(_model_tensors(model)))).encode())
    return h.hexdigest()


def surface(model: nn.Module, loss_fn: LossFn, batch: Batch, directions: Plane | np.ndarray,
            span: float | tuple[float, float] = 1.0, resolution: int | tuple[int, int] = 41,
            center: np.ndarray | None = None, *, accuracy: bool | None = None, evaluator: str = "auto",
            max_samples: int | None = None, seed: int = 0) -> Surface:
    """The loss on a grid of the plane: L(center + α d1 + β d2) for α, β in ``span``.

    Args:
        model: any module; only its structure is used (parameters come from the plane).
        loss_fn: ``loss_fn(outputs, y)``, a mean over the batch.
        batch: ``(x, y)`` on the model's device.
        directions: a ``Plane`` (its origin is the centre unless ``center`` is given) or a (2, P) array
            (centred on the model's parameters by default).
        span: half-width of a symmetric grid, or (low, high); both axes alike.
        resolution: points per axis (odd puts the centre exactly on the grid), at most ``MAX_RESOLUTION``.
        center: override of the plane's origin (P,).
        accuracy: also compute accuracy (default: when the labels are integers).
        evaluator: "auto" (the fastest by a quick measurement, cached), "loop", "vmap", "mlp" (fused Linear chains)
            or "onednn" (the same, hidden layers through oneDNN; float32 on the CPU).
        max_samples: evaluate on a seeded random subset of this many samples (a fast preview).
        seed: seed of that subset.

    Returns:
        A ``Surface``; results are cached by (plane, grid, data, model shape), so a repeated call is free.

    Raises:
        ValueError: resolution or span outside the limits, or a plane that does not match the model.
    """
    return _finish(surfaces_progressive(model, loss_fn, batch, directions, span, resolution, center, levels=1,
                                        accuracy=accuracy, evaluator=evaluator, max_samples=max_samples, seed=seed))


def _finish(gen: Iterator[Surface]) -> Surface:
    last = None
    for last in gen:
        pass
    return last


def surfaces_progressive(model: nn.Module, loss_fn: LossFn, batch: Batch, directions: Plane | np.ndarray,
                         span: float | tuple[float, float] = 1.0, resolution: int | tuple[int, int] = 41,
                         center: np.ndarray | None = None, *, levels: int = 3, accuracy: bool | None = None,
                         evaluator: str = "auto", max_samples: int | None = None, seed: int = 0) -> Iterator[Surface]:
    """Yield the surface on nested grids, coarse to fine, each reusing the points already computed.

    With resolution 41 and 3 levels the grids are 11², 21² and 41² (strides 4, 2, 1 of the final grid), so a first
    picture needs 121 of the 1,681 evaluations. Coarse levels are NaN off their sub-grid; each yielded Surface
    also carries only the sub-grid's axes, so it can be drawn as it is.
    """
    plane = _as_plane(model, directions, center)
    res_a, res_b = _check_grid(model, plane, resolution)
    alpha, beta = _axis(span, res_a), _axis(span, res_b)
    x, y = batch
    if max_samples is not None and max_samples < x.shape[0]:
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(x.shape[0], generator=g)[:max_samples].to(x.device)
        x, y = x[idx], y[idx]
    if accuracy is None:
        accuracy = not torch.is_floating_point(y) and x.shape[0] > 0 and y.dim() == 1 and _looks_like_labels(model, x)
    key = _surface_key(model, loss_fn, (x, y), plane, alpha, beta, accuracy) + evaluator
    if key in _SURFACE_CACHE:
        _SURFACE_CACHE.move_to_end(key)
        yield _SURFACE_CACHE[key]
        return
    started = time.perf_counter()
    grid = _choose(model, loss_fn, (x, y), plane, accuracy, evaluator)
    loss = np.full((res_b, res_a), np.nan)
    acc = np.full((res_b, res_a), np.nan) if accuracy else None
    done = np.zeros((res_b, res_a), dtype=bool)
    strides = [s for s in (2 ** k for k in range(levels - 1, -1, -1)) if (res_a - 1) % s == 0 and (res_b - 1) % s == 0]
    device, dtype = grid.device, grid.dtype
    for stride in strides:
        todo = np.zeros_like(done)
        todo[::stride, ::stride] = True
        todo &= ~done
        ib, ia = np.nonzero(todo)
        a_t = torch.as_tensor(alpha[ia], device=device, dtype=dtype)
        b_t = torch.as_tensor(beta[ib], device=device, dtype=dtype)
        k = grid.chunk()
        for start in range(0, len(ia), k):
            lv, av = grid(a_t[start:start + k], b_t[start:start + k])
            sl = slice(start, start + k)
            loss[ib[sl], ia[sl]] = lv.double().cpu().numpy()
            if acc is not None:
                acc[ib[sl], ia[sl]] = av.double().cpu().numpy()
        done |= todo
        sub = (slice(None, None, stride), slice(None, None, stride))
        result = Surface(alpha[::stride], beta[::stride], loss[sub].copy(), None if acc is None else acc[sub].copy(),
                         plane, grid.name, time.perf_counter() - started, int(x.shape[0]))
        yield result
    _SURFACE_CACHE[key] = result
    if len(_SURFACE_CACHE) > SURFACE_CACHE_SIZE:
        _SURFACE_CACHE.popitem(last=False)


def _looks_like_labels(model: nn.Module, x: Tensor) -> bool:
    """Classification models map (N, d) to (N, C) logits; analytic point models to (N,) losses."""
    with torch.no_grad():
        return model(x[:1]).dim() == 2


def analytic_surface(task: str, xlim: tuple[float, float], ylim: tuple[float, float], resolution: int = 101) -> Surface:
    """The exact loss f(w1, w2) of an analytic task on a grid (its parameters are the plane)."""
    if isinstance(resolution, bool) or not 2 <= int(resolution) <= MAX_RESOLUTION:
        raise ValueError(f"Invalid resolution: {resolution!r} (valid: 2 to {MAX_RESOLUTION} points per axis)")
    started = time.perf_counter()
    alpha = np.linspace(*xlim, resolution)
    beta = np.linspace(*ylim, resolution)
    ww1, ww2 = np.meshgrid(alpha, beta)  # [i_beta, i_alpha]
    w = torch.as_tensor(np.stack([ww1, ww2], axis=-1))
    loss = analytic_loss(task, w).numpy()
    return Surface(alpha, beta, loss, None, axes_plane(), "analytic", time.perf_counter() - started, 0)


def line_profile(model: nn.Module, loss_fn: LossFn, batch: Batch, a: np.ndarray, b: np.ndarray,
                 resolution: int = 51, span: tuple[float, float] = (-0.5, 1.5)) -> tuple[np.ndarray, np.ndarray]:
    """Loss along the line θ(t) = a + t (b − a), t in ``span`` (t = 0 is a, t = 1 is b)."""
    if isinstance(resolution, bool) or not 2 <= int(resolution) <= 10 * MAX_RESOLUTION:
        raise ValueError(f"Invalid resolution: {resolution!r}")
    t = np.linspace(*span, resolution)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return t, evaluate_points(model, loss_fn, batch, a + t[:, None] * (b - a))[0]


def clear_caches() -> None:
    """Forget cached surfaces and evaluator choices (tests, or after changing torch thread settings)."""
    _SURFACE_CACHE.clear()
    _EVALUATOR_CHOICE.clear()
    _SCRATCH.__dict__.clear()
