"""The engine's analyses on your own ``nn.Module`` and data (in a notebook): train with any registry optimizer,
loss surfaces on the random, PCA and Hessian planes, whole and per-layer Hessian spectra, and a ρ × η grid.

The records these return are the engine's own (``Surface``, ``Plane``, ``Projection``, ``EigenResult``,
``Density``, ``LayerSpectrum``), so the figure builders of ``sam_viz.plots`` draw them as the app does;
``examples/own_model.ipynb`` walks through every step on a small CNN.

Two conventions, because a user's model need not be one of the built-in MLPs:

* **Evaluation mode for every analysis.** Surfaces, projections, Hessians and the grid's final metrics run with
  the model in ``eval()`` mode (restored afterwards): BatchNorm then normalises with its running statistics, so
  the loss is one fixed function L(θ) of the parameters, the same for every grid point, Hessian product and
  sample subset, and the model's buffers are never updated by an analysis. This is loss-landscape's convention
  (Li et al. 2018 evaluate with ``net.eval()``). Training runs in ``train()`` mode (batch statistics), so the
  batch losses of ``train_model`` differ from the evaluation-mode loss at the same θ.
* **The general evaluator.** The fused surface evaluators ("mlp", "onednn") need a plain chain of Linear layers
  and activations. Any other model is evaluated point by point with ``torch.func.functional_call`` ("loop" on the
  CPU, "vmap" elsewhere, falling back to "loop" where vmap cannot run the model): the same numbers, only slower.
  A ``GeneralPathWarning`` says so once.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .density import Density, spectral_density
from .evaluators import default_evaluator, linear_chain
from .hvp import make_hvp
from .lanczos import EigenResult, top_eigenvalues
from .layer_spectrum import LayerSpectrum, layer_spectra
from .models import accuracy as accuracy_of
from .optim import OPTIMIZERS, BatchClosure, make
from .planes import Plane, Projection, flat_parameters, hessian_plane, pca_plane, project, random_plane
from .surface import Surface, surface

Batch = tuple[Tensor, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]

__all__ = ["GeneralPathWarning", "Training", "RhoLrGrid", "evaluation_mode", "has_batch_norm", "train_model",
           "planes", "own_surface", "trajectory", "spectrum", "own_layer_spectra", "rho_lr_grid", "mean_loss"]


class GeneralPathWarning(UserWarning):
    """A step used the general path (any ``nn.Module``) instead of a fast one the built-in models have."""


def has_batch_norm(model: nn.Module) -> bool:
    """Whether the model has a BatchNorm (or other running-statistics) layer."""
    return any(isinstance(m, nn.modules.batchnorm._NormBase) for m in model.modules())


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model.eval()`` for the block, then every submodule's own train/eval flag restored.

    Why: in train mode BatchNorm normalises with the statistics of whatever batch it sees (a surface point, a
    Hessian product, one sample) and updates its running buffers in place; in eval mode the loss is a fixed
    function of the parameters (see the module docstring).
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, was_training in flags:
            m.training = was_training


def mean_loss(loss_fn: LossFn) -> LossFn:
    """``loss_fn`` averaged over the batch: a per-sample loss (``reduction="none"``) becomes the mean the surfaces
    and Hessians take; a loss that is already a scalar is unchanged."""
    def mean(outputs: Tensor, y: Tensor) -> Tensor:
        return loss_fn(outputs, y).mean()
    return mean


# ------------------------------------------------------------------------------------------------------- training


@dataclass(frozen=True, eq=False)
class Training:
    """What ``train_model`` recorded.

    Attributes:
        optimizer: the registry name; hparams: the hyperparameters given (the rest are the registry defaults).
        loss: (n,) batch loss at θ_t before step t (train mode: batch statistics).
        eps_norm: (n,) ‖e_t‖ of step t (0 for one-pass methods).
        snapshot_step: (T,) the step of each snapshot; the last is n, θ after the final step.
        weights: (T, P) float64 flat parameters (``named_parameters()`` order) at those steps.
        diverged: the batch loss became NaN/inf (training stopped there; the last snapshot is the step before).
    """

    optimizer: str
    hparams: dict[str, Any]
    loss: np.ndarray
    eps_norm: np.ndarray
    snapshot_step: np.ndarray
    weights: np.ndarray
    diverged: bool

    @property
    def label(self) -> str:
        """A legend name: the optimizer's display name and its ρ and lr when given."""
        shown = ", ".join(f"{k}={self.hparams[k]:g}" for k in ("rho", "lr") if k in self.hparams)
        return OPTIMIZERS[self.optimizer].label + (f" ({shown})" if shown else "")

    def eps_at_snapshots(self) -> np.ndarray:
        """(T,) ‖e_t‖ at each snapshot's step, NaN for the final one (no step was taken from it)."""
        out = np.full(self.snapshot_step.size, np.nan)
        inside = self.snapshot_step < self.eps_norm.size
        out[inside] = self.eps_norm[self.snapshot_step[inside]]
        return out


def train_model(model: nn.Module, loss_fn: LossFn, data: Batch, *, optimizer: str = "sam", steps: int = 200,
                batch_size: int = 64, seed: int = 0, snapshot_every: int = 10, heldout: Batch | None = None,
                **hparams: Any) -> Training:
    """Train ``model`` in place with a registry optimizer through ``sam_viz.optim.make`` (the torch.optim adapter).

    Each step draws a mini-batch (reshuffled every epoch with ``seed``), backpropagates at θ_t, and calls
    ``opt.step(closure)`` with a ``BatchClosure``, so every method works, including those that ask for sub-batches
    or per-sample losses (esam, ssam, mbsam) or the previous batch (sampa).

    Args:
        model: the network, trained in train mode (restored afterwards).
        loss_fn: per-sample losses ``loss_fn(outputs, y) -> (B,)`` (e.g. ``F.cross_entropy(..., reduction="none")``);
            a mean loss works too, for every method except those that need per-sample losses (esam, ssam).
        data: ``(x, y)`` training tensors on the model's device.
        optimizer: a key of ``sam_viz.optim.OPTIMIZERS``.
        steps: optimizer steps.
        batch_size: samples per step (capped at the data set's size).
        seed: seed of the batch order.
        snapshot_every: keep θ every this many steps (and θ_0, θ_n) for the PCA plane and trajectories.
        heldout: a held-out ``(x, y)`` for methods that learn on one (lets).
        **hparams: the optimizer's hyperparameters (lr, rho, momentum, ...), validated by the registry.

    Returns:
        A ``Training``.

    Raises:
        ValueError: an unknown optimizer or hyperparameter, steps/batch_size/snapshot_every below 1, data whose
            x and y differ in length, or lets without ``heldout``.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"Invalid optimizer: {optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
    for name, value in (("steps", steps), ("batch_size", batch_size), ("snapshot_every", snapshot_every)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"Invalid {name}: {value!r} (need an integer of at least 1)")
    x, y = data
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"Invalid data: {x.shape[0]} inputs and {y.shape[0]} targets (need as many, at least one)")
    if OPTIMIZERS[optimizer].needs_validation and heldout is None:
        raise ValueError(f"{optimizer} learns on a held-out batch: pass heldout=(x_val, y_val)")
    opt = make(optimizer, model.named_parameters(), **hparams)
    n, b = x.shape[0], min(int(batch_size), x.shape[0])
    generator = torch.Generator().manual_seed(seed)
    order, cursor = torch.randperm(n, generator=generator), 0
    losses, eps, snap_steps, snaps = [], [], [0], [flat_parameters(model)]
    diverged = False
    flags = [(m, m.training) for m in model.modules()]
    model.train()
    try:
        for t in range(int(steps)):
            if cursor + b > n:
                order, cursor = torch.randperm(n, generator=generator), 0
            idx = order[cursor:cursor + b].to(x.device)
            cursor += b
            closure = BatchClosure(model, loss_fn, x[idx], y[idx], heldout=heldout)
            loss = float(closure())  # backward at θ_t; the step reads this gradient
            losses.append(loss)
            if not math.isfinite(loss):
                diverged = True
                eps.append(math.nan)
                break
            opt.step(closure)
            eps.append(opt.last.eps_norm if opt.last is not None else 0.0)
            if (t + 1) % snapshot_every == 0 or t + 1 == steps:
                snap_steps.append(t + 1)
                snaps.append(flat_parameters(model))
    finally:
        for m, was_training in flags:
            m.training = was_training
    return Training(optimizer, dict(hparams), np.array(losses), np.array(eps), np.array(snap_steps),
                    np.stack(snaps), diverged)


# ------------------------------------------------------------------------------------------------------- surfaces


def planes(model: nn.Module, loss_fn: LossFn, batch: Batch, training: Training | Sequence[Training] | None = None,
           *, seed: int = 0, max_samples: int | None = None) -> dict[str, Plane]:
    """The three planes through the model's parameters: "random" (filter-normalised, Li et al.), "pca" (the top-2
    principal directions of the training snapshots, when given) and "hessian" (the top-2 eigenvectors).

    Args:
        model: the network; its parameters are every plane's origin.
        loss_fn: a mean loss (``mean_loss`` wraps a per-sample one) for the Hessian plane.
        batch: ``(x, y)`` for the Hessian plane.
        training: one or several ``Training`` records for the PCA plane (their snapshots, centred on the model's
            parameters); None: no PCA plane.
        seed: seed of the random directions and of the Lanczos start vector.
        max_samples: take the Hessian on a seeded subset of this many samples.

    Returns:
        ``{"random": ..., "pca": ..., "hessian": ...}`` (no "pca" without ``training``).
    """
    theta = flat_parameters(model)
    out = {"random": random_plane(model, seed=seed)}
    if training is not None:
        runs = [training] if isinstance(training, Training) else list(training)
        out["pca"] = pca_plane([r.weights for r in runs], center=theta)
    with evaluation_mode(model):
        out["hessian"] = hessian_plane(model, loss_fn, batch, theta, seed=seed, max_samples=max_samples)
    return out


def own_surface(model: nn.Module, loss_fn: LossFn, batch: Batch, plane: Plane, *, span: float = 1.0,
                resolution: int = 21, evaluator: str | None = None, **kwargs: Any) -> Surface:
    """``sam_viz.surface.surface`` for any model, in evaluation mode, on the general evaluator where needed.

    Args:
        model: the network (only its structure is used; the plane gives the parameters).
        loss_fn: a mean loss.
        batch: ``(x, y)`` on the model's device.
        plane: from ``planes`` (or any ``Plane`` of the model's size).
        span: half-width of the grid in plane units.
        resolution: points per axis.
        evaluator: a name ``surface`` accepts; None: the fixed default for this model (no timing), with vmap
            falling back to the loop where it cannot run the model.
        **kwargs: other ``surface`` options (accuracy, max_samples, seed, center, chunk).

    Returns:
        A ``Surface``.
    """
    if evaluator is None:
        evaluator = default_evaluator(model)
        if linear_chain(model) is None:
            warnings.warn(f"{type(model).__name__} is not a chain of Linear layers, so the fused surface evaluator "
                          f"does not apply: evaluating point by point with functional_call ({evaluator!r}); the "
                          "numbers are the same, only slower", GeneralPathWarning, stacklevel=2)
    with evaluation_mode(model):
        try:
            return surface(model, loss_fn, batch, plane, span, resolution, evaluator=evaluator, **kwargs)
        except (RuntimeError, NotImplementedError) as err:
            if evaluator != "vmap":
                raise
            warnings.warn(f"vmap cannot run this model ({type(err).__name__}: {err}); using the loop evaluator",
                          GeneralPathWarning, stacklevel=2)
            return surface(model, loss_fn, batch, plane, span, resolution, evaluator="loop", **kwargs)


def trajectory(plane: Plane, training: Training, model: nn.Module, loss_fn: LossFn, batch: Batch) -> Projection:
    """The training snapshots projected on ``plane``, with the evaluation-mode loss at each snapshot and at its
    projection (``TrajectoryTrace.from_projection(training.label, it, training.snapshot_step,
    eps_norm=training.eps_at_snapshots())`` draws it)."""
    with evaluation_mode(model):
        return project(plane, training.weights, model, loss_fn, batch)


# ------------------------------------------------------------------------------------------------------- spectra


def spectrum(model: nn.Module, loss_fn: LossFn, batch: Batch, *, k: int = 5, density: bool = True, iters: int = 60,
             n_vectors: int = 3, seed: int = 0, **hvp_kwargs: Any) -> tuple[EigenResult, Density | None]:
    """The whole Hessian's top-k eigenvalues (Lanczos) and its spectral density (SLQ), in evaluation mode.

    Args:
        model: the network (read only).
        loss_fn: a mean loss.
        batch: ``(x, y)``.
        k: top eigenvalues.
        density: also estimate the spectral density.
        iters: Lanczos steps per SLQ vector.
        n_vectors: SLQ start vectors.
        seed: seed of the start vectors.
        **hvp_kwargs: passed to ``make_hvp`` (max_samples, weights, dtype, ...).

    Returns:
        ``(eigen, density)`` for ``sam_viz.plots.spectrum_figure(eigen, density)``; density None when not asked.
    """
    with evaluation_mode(model):
        op = make_hvp(model, loss_fn, batch, **hvp_kwargs)
        eigen = top_eigenvalues(op, k=k, seed=seed)
        dens = spectral_density(op, iters=iters, n_vectors=n_vectors, seed=seed) if density else None
    return eigen, dens


def own_layer_spectra(model: nn.Module, loss_fn: LossFn, batch: Batch, **kwargs: Any) -> LayerSpectrum:
    """``sam_viz.layer_spectrum.layer_spectra`` (each layer's diagonal Hessian block) in evaluation mode.

    ``spectrum_figure(list(result.eigen), list(result.density), labels=result.labels())`` draws it.
    """
    with evaluation_mode(model):
        return layer_spectra(model, loss_fn, batch, **kwargs)


# ------------------------------------------------------------------------------------------------------- ρ × η grid


@dataclass(frozen=True, eq=False)
class RhoLrGrid:
    """Final metrics over a ρ × η grid, all cells trained from the same θ_0 with the same batch order.

    Attributes:
        optimizer: the registry name; hparams: the other hyperparameters.
        rho: (nx,) the radii (x axis); lr: (ny,) the learning rates (y axis).
        final_train_loss, final_test_loss, final_test_acc: (ny, nx) at θ_n in evaluation mode; NaN where diverged.
        diverged: (ny, nx) bool.
        trainings: the ``Training`` of each cell, [i_lr][j_rho].
    """

    optimizer: str
    hparams: dict[str, Any]
    rho: np.ndarray
    lr: np.ndarray
    final_train_loss: np.ndarray
    final_test_loss: np.ndarray
    final_test_acc: np.ndarray
    diverged: np.ndarray
    trainings: list[list[Training]] = field(repr=False)

    def panel(self, metric: str = "final_test_acc") -> tuple[str, np.ndarray, np.ndarray]:
        """``(title, values, diverged)`` for ``sam_viz.plots.sweep_heatmaps``."""
        if metric not in ("final_train_loss", "final_test_loss", "final_test_acc"):
            raise ValueError(f"Invalid metric: {metric!r}; valid: final_train_loss, final_test_loss, final_test_acc")
        return OPTIMIZERS[self.optimizer].label, getattr(self, metric), self.diverged


def rho_lr_grid(model: nn.Module, loss_fn: LossFn, train: Batch, test: Batch, *, rho: Sequence[float],
                lr: Sequence[float], optimizer: str = "sam", **train_kwargs: Any) -> RhoLrGrid:
    """Train a copy of ``model`` (same θ_0 every cell) per (ρ, η) and record the final metrics.

    Args:
        model: the initial network (not changed: each cell trains a deep copy).
        loss_fn: per-sample losses, as ``train_model`` takes.
        train: ``(x, y)`` to train on and report the final train loss on.
        test: ``(x, y)`` for the final test loss and accuracy (integer labels; accuracy is NaN otherwise).
        rho: radii, the x axis.
        lr: learning rates, the y axis.
        optimizer: a registry method with a ``rho``.
        **train_kwargs: passed to ``train_model`` (steps, batch_size, seed, other hyperparameters).

    Returns:
        A ``RhoLrGrid``.

    Raises:
        ValueError: an empty axis, an optimizer without ``rho``, or what ``train_model`` raises.
    """
    rho_v, lr_v = np.asarray(rho, dtype=np.float64), np.asarray(lr, dtype=np.float64)
    if rho_v.ndim != 1 or lr_v.ndim != 1 or rho_v.size == 0 or lr_v.size == 0:
        raise ValueError("Invalid axes: rho and lr need at least one value each")
    if optimizer not in OPTIMIZERS or "rho" not in OPTIMIZERS[optimizer].hparams:
        raise ValueError(f"Invalid optimizer: {optimizer!r} has no rho; valid: "
                         f"{', '.join(n for n, v in OPTIMIZERS.items() if 'rho' in v.hparams)}")
    shape = (lr_v.size, rho_v.size)
    metrics = {name: np.full(shape, np.nan) for name in ("final_train_loss", "final_test_loss", "final_test_acc")}
    diverged = np.zeros(shape, dtype=bool)
    trainings: list[list[Training]] = []
    mean = mean_loss(loss_fn)
    for i, eta in enumerate(lr_v):
        row = []
        for j, r in enumerate(rho_v):
            cell = copy.deepcopy(model)
            result = train_model(cell, loss_fn, train, optimizer=optimizer, rho=float(r), lr=float(eta),
                                 **train_kwargs)
            row.append(result)
            diverged[i, j] = result.diverged
            if result.diverged:
                continue
            with evaluation_mode(cell), torch.no_grad():
                train_out, test_out = cell(train[0]), cell(test[0])
                values = (float(mean(train_out, train[1])), float(mean(test_out, test[1])),
                          float(accuracy_of(test_out, test[1])) if test_out.dim() == 2 else math.nan)
            if not all(math.isfinite(v) for v in values[:2]):
                diverged[i, j] = True
                continue
            for name, v in zip(metrics, values):
                metrics[name][i, j] = v
        trainings.append(row)
    other = {k: v for k, v in train_kwargs.items() if k not in ("steps", "batch_size", "seed", "snapshot_every")}
    return RhoLrGrid(optimizer, other, rho_v, lr_v, *metrics.values(), diverged, trainings)
