"""2-D loss surfaces on a plane: ``surface`` and its coarse-to-fine ``surfaces_progressive``, the exact surface of
an analytic task, and the loss along a line.

The grid's points are evaluated by one of ``sam_viz.evaluators`` (named, or chosen by a ``SurfacePlanner``);
this module owns the grid, the sub-sampling and the ``Surface`` record.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .data import analytic_loss
from .evaluators import build, evaluate_points
from .planes import Plane, axes_plane, flat_parameters
from .planner import SurfacePlanner, default_planner

Batch = tuple[Tensor, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]

MAX_RESOLUTION = 201  # grid points per axis, enforced here whatever the caller


@dataclass(frozen=True, eq=False)
class Surface:
    """Loss (and accuracy) on a grid of a plane.

    Attributes:
        alpha: (A,) coordinates along d1; beta: (B,) along d2.
        loss: (B, A) loss at origin + α_j d1 + β_i d2, indexed [i_beta, i_alpha]; NaN where not yet computed.
        accuracy: (B, A) or None (no labels).
        plane: the plane.
        evaluator: which grid evaluator computed it ("loop", "vmap", "mlp", "onednn", "analytic").
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


def surface(model: nn.Module, loss_fn: LossFn, batch: Batch, directions: Plane | np.ndarray,
            span: float | tuple[float, float] = 1.0, resolution: int | tuple[int, int] = 41,
            center: np.ndarray | None = None, *, accuracy: bool | None = None, evaluator: str = "auto",
            planner: SurfacePlanner | None = None, chunk: int | None = None, max_samples: int | None = None,
            seed: int = 0) -> Surface:
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
        evaluator: "auto" (what ``planner`` chooses), "loop", "vmap", "mlp" (fused Linear chains) or "onednn"
            (the same, hidden layers through oneDNN; float32 on the CPU). All give the same numbers to float
            tolerance; only the time differs.
        planner: the ``SurfacePlanner`` for "auto"; None: ``sam_viz.planner.default_planner()``, which times
            the candidates once per set-up and remembers the fastest. Pass ``SurfacePlanner(measure=False)`` for
            the fixed ``default_evaluator`` with no timing.
        chunk: points per evaluator call for a named evaluator; None: its default (K·N ≈ 16k rows).
        max_samples: evaluate on a seeded random subset of this many samples (a fast preview).
        seed: seed of that subset.

    Returns:
        A ``Surface``. Nothing is cached here: a caller that shows the same surface again keeps it (the app's
        view cache does).

    Raises:
        ValueError: resolution or span outside the limits, or a plane that does not match the model.
    """
    *_, last = surfaces_progressive(model, loss_fn, batch, directions, span, resolution, center, levels=1,
                                    accuracy=accuracy, evaluator=evaluator, planner=planner, chunk=chunk,
                                    max_samples=max_samples, seed=seed)
    return last


def surfaces_progressive(model: nn.Module, loss_fn: LossFn, batch: Batch, directions: Plane | np.ndarray,
                         span: float | tuple[float, float] = 1.0, resolution: int | tuple[int, int] = 41,
                         center: np.ndarray | None = None, *, levels: int = 3, accuracy: bool | None = None,
                         evaluator: str = "auto", planner: SurfacePlanner | None = None, chunk: int | None = None,
                         max_samples: int | None = None, seed: int = 0) -> Iterator[Surface]:
    """Yield the surface on nested grids, coarse to fine, each reusing the points already computed.

    With resolution 41 and 3 levels the grids are 11², 21² and 41² (strides 4, 2, 1 of the final grid), so a first
    picture needs 121 of the 1,681 evaluations. Coarse levels are NaN off their sub-grid; each yielded Surface
    also carries only the sub-grid's axes, so it can be drawn as it is. Arguments as for ``surface``, plus
    ``levels``, the number of nested grids.
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
    started = time.perf_counter()
    if evaluator == "auto":
        choice = (planner or default_planner()).plan(model, loss_fn, (x, y), plane, accuracy)
        evaluator, chunk = choice.evaluator, choice.chunk
    grid = build(evaluator, model, loss_fn, (x, y), plane, accuracy, chunk)
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
