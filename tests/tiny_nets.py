"""The small float64 network and random batches the SAM-family tests share (3 inputs, 8 tanh units)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def tanh_mlp(seed: int = 0, classes: int = 2) -> nn.Module:
    """3 → 8 (tanh) → ``classes``, float64, initialised from ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, classes)).double()


def random_batches(n: int = 6, size: int = 16, seed: int = 1, classes: int = 2):
    """``n`` batches of ``size`` standard-normal inputs and uniform labels, from one private generator."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 3, generator=g, dtype=torch.float64), torch.randint(0, classes, (size,), generator=g))
            for _ in range(n)]


def per_sample_ce(out, y):
    """Cross-entropy per sample: the loss a ``BatchClosure`` takes."""
    return nn.functional.cross_entropy(out, y, reduction="none")


def flat_params(model: nn.Module) -> np.ndarray:
    """The model's parameters as one numpy vector (a copy)."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy().copy()
