"""Per-layer (block-diagonal) Hessian spectra: each layer's own block H_ll = ∂²L/∂θ_l², the others held fixed.

PyHessian users ask for this: which layer is sharp. A layer here is a module's own parameters (``conv1.weight``
and ``conv1.bias`` form ``conv1``; a BatchNorm's scale and shift form one block), in ``named_parameters()``
order. Each block is a ``HessianOperator`` over that layer alone (``make_hvp(..., param_filter=...)``), so the
Lanczos, SLQ and dense estimators run on it unchanged. The off-diagonal blocks (how layers couple) are not part
of it: the top eigenvalue of the whole Hessian is at least every block's (Cauchy interlacing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from .density import Density, spectral_density
from .hvp import Batch, LossFn, make_hvp
from .lanczos import EigenResult, top_eigenvalues


@dataclass(frozen=True, eq=False)
class LayerSpectrum:
    """The top eigenvalues (and optionally the spectral density) of each layer's diagonal Hessian block.

    Attributes:
        layers: (L,) layer names (module paths, "" for parameters of the root module), in parameter order.
        parameters: (L,) the parameter names of each layer.
        sizes: (L,) scalars in each block (its dimension).
        eigen: (L,) an ``EigenResult`` per block: its largest eigenvalues, descending, with residuals.
        density: (L,) a ``Density`` per block, or None entries when not asked for.
    """

    layers: tuple[str, ...]
    parameters: tuple[tuple[str, ...], ...]
    sizes: tuple[int, ...]
    eigen: tuple[EigenResult, ...]
    density: tuple[Density | None, ...]

    @property
    def lambda_max(self) -> np.ndarray:
        """(L,) each block's largest eigenvalue."""
        return np.array([float(e.eigenvalues[0]) for e in self.eigen])

    def labels(self) -> list[str]:
        """One legend name per layer: its name and block size (``spectrum_figure(..., labels=...)``)."""
        return [f"{name or '(root)'} ({size})" for name, size in zip(self.layers, self.sizes)]


def layer_groups(model: nn.Module) -> dict[str, list[str]]:
    """The model's parameters grouped by the module that owns them, in ``named_parameters()`` order.

    Args:
        model: any module.

    Returns:
        layer name (the module path, "" for the root's own parameters) → its parameter names.
    """
    groups: dict[str, list[str]] = {}
    for name, _ in model.named_parameters():
        owner = name.rpartition(".")[0]
        groups.setdefault(owner, []).append(name)
    return groups


def layer_spectra(model: nn.Module, loss_fn: LossFn, batch: Batch, *, k: int = 3,
                  groups: Mapping[str, Sequence[str]] | None = None, density: bool = False, iters: int = 40,
                  n_vectors: int = 2, seed: int = 0, **hvp_kwargs: Any) -> LayerSpectrum:
    """The spectrum of every layer's diagonal Hessian block (block-diagonal approximation of the Hessian).

    The model is only read (``make_hvp``'s rules): it is evaluated in its current train/eval mode, so put a model
    with BatchNorm in eval mode first (``sam_viz.own_model.evaluation_mode`` does, and restores it).

    Args:
        model: the network.
        loss_fn: ``loss_fn(outputs, y) -> scalar`` (a mean over the batch).
        batch: ``(x, y)``.
        k: top eigenvalues per block (capped at the block's size).
        groups: layer name → parameter names; default ``layer_groups(model)`` (one block per module).
        density: also estimate each block's spectral density by SLQ.
        iters: Lanczos steps per SLQ vector (capped at the block's size).
        n_vectors: SLQ start vectors.
        seed: seed of the Lanczos and SLQ start vectors.
        **hvp_kwargs: passed to ``make_hvp`` (max_samples, weights, dtype, mode, strategy).

    Returns:
        A ``LayerSpectrum``.

    Raises:
        ValueError: k < 1, no groups, an empty group, a parameter name the model does not have, a parameter in
            two groups, or ``param_filter`` among the options (the groups choose the parameters).
    """
    if isinstance(k, bool) or int(k) < 1:
        raise ValueError(f"Invalid k: {k!r} (need at least 1)")
    if "param_filter" in hvp_kwargs:
        raise ValueError("Invalid option param_filter: layer_spectra chooses each block's parameters from groups")
    chosen = {name: list(names) for name, names in (layer_groups(model) if groups is None else groups).items()}
    _check_groups(model, chosen)
    eigen, dens, sizes = [], [], []
    for names in chosen.values():
        members = frozenset(names)
        op = make_hvp(model, loss_fn, batch, param_filter=members.__contains__, **hvp_kwargs)
        sizes.append(op.dim)
        eigen.append(top_eigenvalues(op, k=min(int(k), op.dim), seed=seed))
        dens.append(spectral_density(op, iters=iters, n_vectors=n_vectors, seed=seed) if density else None)
    return LayerSpectrum(tuple(chosen), tuple(tuple(v) for v in chosen.values()), tuple(sizes), tuple(eigen),
                         tuple(dens))


def _check_groups(model: nn.Module, groups: Mapping[str, Sequence[str]]) -> None:
    if not groups:
        raise ValueError("Invalid groups: none given")
    known = {name for name, _ in model.named_parameters()}
    seen: dict[str, str] = {}
    for layer, names in groups.items():
        if not names:
            raise ValueError(f"Invalid group {layer!r}: it has no parameters")
        for name in names:
            if name not in known:
                raise ValueError(f"Invalid group {layer!r}: the model has no parameter {name!r}; "
                                 f"valid: {', '.join(sorted(known))}")
            if name in seen:
                raise ValueError(f"Invalid groups: {name!r} is in both {seen[name]!r} and {layer!r}")
            seen[name] = layer
