"""F-SAM's generalisation claim on digits: final test accuracy of F-SAM against SAM with minibatches, ≥ 5 seeds.

Li et al. (CVPR 2024) claim that removing the full-gradient component from SAM's perturbation (F-SAM) improves
generalisation over SAM (CIFAR-100/ResNet-18: 81.19% against 80.78%, one seed each). This script trains, on the
8×8 digits with minibatches, SAM and F-SAM at the paper's setting (σ = 1, λ = 0.6, the authors' latest run.sh)
and at the app's defaults (σ = 1, λ = 0.9), for two radii, over ``--seeds`` seeds (stacked in one batched
``run_grid`` per method and radius), for the MLP and the CNN, and reports mean ± std of the final test accuracy
and the F-SAM − SAM difference with its seed spread (the seeds share θ₀ and batches across methods, so the
difference is paired).

Run: ``python benchmarks/fsam_claim.py --threads 1`` (``--steps``, ``--seeds``, ``--models mlp,cnn``).
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
from machine import cpu_model  # noqa: E402  (beside this script)

from sam_viz.config import Config  # noqa: E402
from sam_viz.sweep import run_grid  # noqa: E402

# label → (optimizer, hyperparameters beyond ρ)
METHODS = {
    "SAM": ("sam", {}),
    "F-SAM (paper: σ 1, λ 0.6)": ("fsam", {"sigma": 1.0, "lmbda": 0.6}),
    "F-SAM (app defaults: σ 1, λ 0.9)": ("fsam", {"sigma": 1.0, "lmbda": 0.9}),
}


def accuracies(model: str, rho: float, steps: int, seeds: int, batch: int, lr: float, device: str) -> dict[str, np.ndarray]:
    """Final test accuracy per seed of every method at radius ``rho``."""
    base = Config(task="digits", n_samples=1797, model=model, steps=steps, batch_size=batch, eval_every=steps,
                  fullgrad_every=steps, snapshot_every=steps, device=device)
    out = {}
    for label, (optimizer, hp) in METHODS.items():
        grid = run_grid(base.with_optimizer(optimizer, **hp), x=("rho", [rho]), y=("lr", [lr]), seeds=seeds,
                        strategy="batched", lambda_max=False)
        out[label] = grid.final_test_acc.reshape(seeds)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--rhos", default="0.05,0.2")
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rhos = [float(r) for r in args.rhos.split(",")]
    print(f"# fsam_claim: digits (1,348 train / 449 test), minibatches of {args.batch_size}, {args.steps} steps, "
          f"lr {args.lr}, SGD momentum 0.9 base, {args.seeds} seeds (paired: same θ₀ and batches per seed); "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, {cpu_model()}")
    print("| model | ρ | method | test acc % mean ± std | F-SAM − SAM (pts, mean ± std over seeds) |")
    print("|---|---|---|---|---|")
    results = []
    started = time.perf_counter()
    for model in args.models.split(","):
        for rho in rhos:
            acc = accuracies(model, rho, args.steps, args.seeds, args.batch_size, args.lr, args.device)
            sam = acc["SAM"]
            for label, values in acc.items():
                diff = "" if label == "SAM" else (f"{100 * (values - sam).mean():+.2f} ± "
                                                  f"{100 * (values - sam).std():.2f}")
                print(f"| {model} | {rho:g} | {label} | {100 * values.mean():.2f} ± {100 * values.std():.2f} | {diff} |")
                results.append({"model": model, "rho": rho, "method": label, "acc": values.tolist()})
            sys.stdout.flush()
    print(f"# {time.perf_counter() - started:.0f} s")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
