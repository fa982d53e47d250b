"""μP²'s width transfer (Haas et al. 2024, Fig. 1) at classroom scale: where the best (ρ, η) cell sits as the width grows.

For each method and width, a ρ × η grid on the 8×8 digits (MLP 64-n-n-10, minibatches), every cell over paired seeds
(the same θ₀ and batches per seed); the score is the mean test accuracy, ties broken by the lower test loss. The claim
is that only μP² keeps the best cell in place as n grows. Methods:

* SP SAM: plain SAM on PyTorch's default initialisation (standard parameterisation);
* μP-naive: plain SAM's perturbation under μP (``mup2``, ``perturb_mode="naive"``);
* μP-global: ρ·r^−½ in every layer under μP (``perturb_mode="global"``);
* μP²: layerwise radii (``perturb_mode="mpp"``).

μP models use base width n₀ = the first width, so there every μP method is the same SAM.

Run: ``python benchmarks/mup2_transfer.py --threads 2`` (``--widths``, ``--steps``, ``--seeds``). Prints one table (the
best cell and its accuracy per method and width), how far the best cell moved (grid steps in ρ and in η, first to last
width), then the raw grids as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import header  # noqa: E402  (beside this script)

from sam_viz.config import Config  # noqa: E402
from sam_viz.sweep import run_grid  # noqa: E402

RHOS = (0.003, 0.01, 0.03, 0.1, 0.3)
LRS = (0.03, 0.1, 0.3, 1.0, 3.0)
METHODS = {  # label → (optimizer, parameterization, hyperparameters)
    "SP SAM": ("sam", "sp", {}),
    "μP-naive": ("mup2", "mup", {"perturb_mode": "naive"}),
    "μP-global": ("mup2", "mup", {"perturb_mode": "global"}),
    "μP²": ("mup2", "mup", {"perturb_mode": "mpp"}),
}


def grid(method: str, width: int, base_width: int, steps: int, seeds: int) -> tuple[np.ndarray, np.ndarray]:
    """(test accuracy, test loss), each (ρ, η) averaged over the seeds; diverged cells score chance and +inf."""
    optimizer, parameterization, hp = METHODS[method]
    config = Config(task="digits", n_samples=1797, model="mlp", depth=2, width=width, activation="relu",
                    parameterization=parameterization, base_width=base_width, optimizer=optimizer,
                    hparams={"momentum": 0.0, **hp}, steps=steps, batch_size=64, eval_every=steps,
                    fullgrad_every=steps, snapshot_every=steps, device="cpu", dtype="float32")
    result = run_grid(config, x=("lr", list(LRS)), y=("rho", list(RHOS)), seeds=seeds, strategy="batched",
                      lambda_max=False)
    acc = np.where(result.diverged, 0.1, result.final_test_acc).mean(axis=0)
    loss = np.where(result.diverged, np.inf, result.final_test_loss).mean(axis=0)
    return acc, loss


def best(acc: np.ndarray, loss: np.ndarray) -> tuple[int, int]:
    """The (ρ index, η index) of the best cell: highest accuracy, then lowest loss."""
    order = np.lexsort((loss.reshape(-1), -acc.reshape(-1)))
    return tuple(int(v) for v in np.unravel_index(order[0], acc.shape))  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"## μP² width transfer: digits (1,348 train / 449 test), MLP 64-n-n-10 relu, {args.steps} steps, batch 64, "
          f"SGD without momentum, base width {args.widths[0]}, {args.seeds} paired seeds; ρ ∈ {RHOS}, η ∈ {LRS}")
    print(f"# {header()}")
    raw: dict = {}
    started = time.perf_counter()
    summary = []
    print("| method | width | best ρ | best η | test acc % (mean over seeds) |")
    print("|---|---|---|---|---|")
    for method in args.methods:
        cells = []
        for width in args.widths:
            acc, loss = grid(method, width, args.widths[0], args.steps, args.seeds)
            i, j = best(acc, loss)
            cells.append((i, j))
            raw[f"{method}/{width}"] = {"acc": acc.tolist(), "loss": np.where(np.isfinite(loss), loss, -1).tolist()}
            print(f"| {method} | {width} | {RHOS[i]:g} | {LRS[j]:g} | {100 * acc[i, j]:.1f} |")
            sys.stdout.flush()
        moved_rho = max(i for i, _ in cells) - min(i for i, _ in cells)
        moved_lr = max(j for _, j in cells) - min(j for _, j in cells)
        summary.append((method, moved_rho, moved_lr))
    print("\n| method | best cell's range over widths: ρ grid steps | η grid steps |")
    print("|---|---|---|")
    for method, moved_rho, moved_lr in summary:
        print(f"| {method} | {moved_rho} | {moved_lr} |")
    print(f"# {time.perf_counter() - started:.0f} s")
    print(json.dumps(raw))


if __name__ == "__main__":
    main()
