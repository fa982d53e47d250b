"""Per-run random draws for step programs (ESAM's tensor sampling, SSAM-D's random mask), reproducible and the same
for a run whether it is stepped alone or stacked with others.

A program sees only stacked tensors ``(R, *shape)``: not the runs' seeds, and not how many other runs share the
stack. Each run therefore gets its own seed from the bytes of its starting point θ_0 (``run_seeds``, once, in the
program's ``init``): runs of one ``Config.seed`` share θ_0 and so share their draws, runs of different seeds draw
differently. Every draw then comes from a fresh CPU generator per run, seeded by (run seed, step, stream), so run
r's numbers never depend on R, on the other runs, on the device or on what was drawn before (a resumed checkpoint
draws what the uninterrupted run would have).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def run_seeds(params: Sequence[Tensor]) -> Tensor:
    """One seed per run from the bytes of its parameters (read as float64, so the run's dtype is what matters,
    not how it is stored here), shape (R,) int64 on the parameters' device."""
    flat = [p.detach().reshape(p.shape[0], -1).to("cpu", torch.float64) for p in params]
    seeds = []
    for r in range(params[0].shape[0]):
        digest = 0
        for t in flat:
            digest = zlib.crc32(t[r].numpy().tobytes(), digest)
        seeds.append(digest)
    return torch.tensor(seeds, dtype=torch.int64, device=params[0].device)


def uniform(seeds: Tensor, step: int, stream: int, size: int) -> Tensor:
    """Uniform draws in [0, 1), ``(R, size)`` float64 (whatever the runs' dtype, so a float32 and a float64 run
    compare the same numbers) on the seeds' device: row r from run r's generator for (``step``, ``stream``);
    ``stream`` keeps one program's kinds of draw apart."""
    rows = []
    for seed in seeds.tolist():
        state = np.random.SeedSequence([int(seed), int(step), int(stream)]).generate_state(1, np.uint64)[0]
        generator = torch.Generator().manual_seed(int(state))
        rows.append(torch.rand(size, generator=generator, dtype=torch.float64))
    return torch.stack(rows).to(seeds.device)
