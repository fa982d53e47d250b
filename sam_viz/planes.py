"""Planes through parameter space: directions, ``Plane``, the random, PCA, Hessian, three-point and axes planes,
and the least-squares projection of points (trajectories) onto a plane.

A ``Plane`` is an origin and two directions in the flat parameter space (``named_parameters()`` order); the
surface evaluators (``sam_viz.evaluators``) and ``sam_viz.surface`` take it as an argument, so several runs can
share one surface.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from .evaluators import evaluate_points
from .models import flatten

Batch = tuple[Tensor, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]


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
        # private read-only float64 copies: the plane cannot change under its content hash
        for name in ("origin", "d1", "d2"):
            array = np.array(getattr(self, name), dtype=np.float64)
            array.flags.writeable = False
            object.__setattr__(self, name, array)

    def point(self, alpha: float, beta: float) -> np.ndarray:
        """The flat parameters origin + α·d1 + β·d2, (P,) float64."""
        return self.origin + alpha * self.d1 + beta * self.d2

    def key(self) -> str:
        """A content hash of the three arrays, computed once: a key for callers that cache surfaces (the app)."""
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

    The eigenpairs come from Lanczos (``sam_viz.lanczos.top_eigenvalues``) on the Hessian operator
    (``sam_viz.hvp.make_hvp``); their eigenvalues and residuals are kept in ``info`` so the view can say how sharp
    each direction is.
    """
    from .hvp import make_hvp  # the Hessian engine loads only for this plane
    from .lanczos import top_eigenvalues

    theta = flat_parameters(model) if weights is None else np.asarray(weights, dtype=np.float64)
    eig = top_eigenvalues(make_hvp(model, loss_fn, batch, weights=theta, max_samples=max_samples), k=2, seed=seed)
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
