"""The test split's metrics of many steps in one stacked forward pass.

Evaluating the test split at every step costs one forward pass a step; on the small models of this tool that cost
is dispatch, not arithmetic (a 2-32-32-2 MLP on 128 points: ~15 kernels for ~0.1 MFLOP). ``DeferredEvaluation``
keeps θ_t instead (one foreach copy of the stacked parameters) and, every few steps, sends every kept point through
one vmapped forward: the same metrics at the same θ_t, written into the same record rows. A point's numbers do not
depend on how many were evaluated with it (the vmapped forward is taken even for one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .oracle import ModelOracle

MAX_ROWS = 16_384  # test rows × points in one deferred forward: bounds its activations
MAX_STEPS = 32  # steps kept before they are evaluated


def deferrable(model: torch.nn.Module) -> bool:
    """True for models whose forward reads no buffers: a BatchNorm's running statistics move with each forward,
    so such a model is evaluated at its step."""
    return next(model.buffers(), None) is None


class DeferredEvaluation:
    """Test loss (and accuracy) at kept points, written into ``record[t, field, runs]`` when flushed.

    Args:
        oracle: evaluates the model at stacked points.
        x, y: the test split.
        metrics: (record field index, ``fn(outputs, y) -> scalar``) pairs: the test loss, and the accuracy for
            classification.
        runs: stacked runs; with ``x``'s rows they set how many steps are kept (``MAX_ROWS``, ``MAX_STEPS``).
    """

    def __init__(self, oracle: ModelOracle, x: Tensor, y: Tensor,
                 metrics: Sequence[tuple[int, Callable[[Tensor, Tensor], Tensor]]], runs: int) -> None:
        self.oracle, self.x, self.y, self.metrics = oracle, x, y, list(metrics)
        self.capacity = max(1, min(MAX_STEPS, MAX_ROWS // max(1, runs * x.shape[0])))
        self._kept: list[tuple[int, Tensor, list[Tensor]]] = []  # (t, record columns, θ_t per parameter)

    def keep(self, t: int, columns: Tensor, params: Sequence[Tensor]) -> None:
        """Keep θ_t (stacked, one row per entry of ``columns``) for evaluation at the next flush."""
        self._kept.append((t, columns, torch._foreach_mul(list(params), 1.0)))

    @property
    def full(self) -> bool:
        return len(self._kept) >= self.capacity

    @torch.no_grad()
    def flush(self, record: Tensor) -> None:
        """Evaluate every kept point in one stacked forward and write its metrics into ``record``."""
        if not self._kept:
            return
        kept, self._kept = self._kept, []
        point = [torch.cat(parts) for parts in zip(*(p for _, _, p in kept))]
        outputs = self.oracle.outputs(point, self.x, stacked=True)
        values = torch.stack([self.oracle.metric(fn, outputs, self.y, stacked=True).to(record.dtype)
                              for _, fn in self.metrics])  # (metrics, points)
        steps = torch.cat([torch.full((c.numel(),), t, device=record.device) for t, c, _ in kept])
        columns = torch.cat([c for _, c, _ in kept])
        for row, (field, _) in zip(values, self.metrics):
            record[steps, field, columns] = row
