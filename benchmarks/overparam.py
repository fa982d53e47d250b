"""Overparameterization: SAM's gain over SGD (test accuracy and test loss) against the MLP's parameter count.

The question (issue 12, preset 2): does SAM's benefit over SGD grow or shrink as the network gets wider, with clean
labels and with a share of the training labels flipped (label noise, which a wide enough network memorises)? This
script trains an MLP of every width in ``--widths`` on one fixed classification task (moons by default) with SGD
and with SAM at the same learning rate, momentum, weight decay and number of steps (SAM at radius ``--rho``), over
``--seeds`` seeds, for each label-noise share in ``--label-noise``. Each (method, label noise) is one
``run_grid`` over ("width", widths) × ("lr", [lr]): one stacked ``train`` call per width, all seeds in it. The
seeds share θ₀ and minibatches across the two methods, so SAM − SGD is a paired difference per seed; the table
gives its mean ± std over seeds (population std), with each method's own test accuracy and train accuracy on the
(noisy) training labels, which shows how much of the noise was fitted.

Run: ``python benchmarks/overparam.py`` (``--steps``, ``--seeds``, ``--widths``, ``--label-noise``,
``--task``, ``--batch-size``, ``--lr``, ``--rho``, ``--weight-decay``).
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
from sam_viz.train import setup  # noqa: E402


def parameter_count(config: Config) -> int:
    """Trainable parameters of ``config``'s model."""
    return sum(p.numel() for p in setup(config.replace(steps=1)).model.parameters())


def final_metrics(base: Config, optimizer: str, hparams: dict[str, float], widths: list[int], lr: float,
                  seeds: int) -> dict[str, np.ndarray]:
    """(seeds, widths) final test accuracy, test loss and train accuracy of ``optimizer`` at every width."""
    grid = run_grid(base.with_optimizer(optimizer, **hparams), x=("width", widths), y=("lr", [lr]), seeds=seeds,
                    strategy="batched", lambda_max=False)
    if grid.diverged.any():
        print(f"# warning: {int(grid.diverged.sum())} {optimizer} cells diverged (counted as NaN)", file=sys.stderr)
    return {name: getattr(grid, f"final_{name}")[:, 0, :] for name in ("test_acc", "test_loss", "train_acc")}


def _pm(values: np.ndarray, scale: float = 1.0, digits: int = 2) -> str:
    values = values[np.isfinite(values)] * scale
    if values.size == 0:
        return "n/a"
    return f"{values.mean():+.{digits}f} ± {values.std():.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="moons", help="a classification task (default: moons)")
    parser.add_argument("--n-samples", type=int, default=400)
    parser.add_argument("--noise", type=float, default=0.25, help="input noise of the task (default 0.25)")
    parser.add_argument("--label-noise", default="0,0.2", help="label-noise shares, comma-separated (default 0,0.2)")
    parser.add_argument("--widths", default="4,8,16,32,64,128,256")
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32, help="minibatch size (0: full batch; default 32)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--rho", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--device", default="cpu")
    # one thread: these layers are too small to split, and on a shared 2-core machine a second intra-op thread
    # contends with the other processes (measured here: 60 steps of 5 stacked width-4 runs, 4.5 s with 2 threads
    # under load, 0.2 s with 1)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default; "
                                                               "default 1)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shared = {"momentum": args.momentum, "weight_decay": args.weight_decay}  # the same for SGD and SAM
    widths = [int(w) for w in args.widths.split(",")]
    shares = [float(s) for s in args.label_noise.split(",")]

    print(f"# overparam: {header()}")
    print(f"# {args.task} ({args.n_samples} samples, input noise {args.noise:g}, 25% test), MLP depth {args.depth} "
          f"(tanh), {args.steps} steps, batch {args.batch_size or 'full'}, lr {args.lr:g}, momentum "
          f"{args.momentum:g}, weight decay {args.weight_decay:g} for both; SAM ρ {args.rho:g}; {args.seeds} seeds, "
          "paired (same θ₀ and batches per seed). Δ = SAM − SGD, mean ± std over seeds; acc in points.")
    results = []
    started = time.perf_counter()
    for share in shares:
        base = Config(task=args.task, n_samples=args.n_samples, noise=args.noise, label_noise=share,
                      depth=args.depth, steps=args.steps, batch_size=args.batch_size, eval_every=args.steps,
                      snapshot_every=args.steps, fullgrad_every=args.steps, device=args.device)
        sgd = final_metrics(base, "sgd", shared, widths, args.lr, args.seeds)
        sam = final_metrics(base, "sam", {**shared, "rho": args.rho}, widths, args.lr, args.seeds)
        print(f"\n## label noise {share:g}")
        print("| width | params | SGD test acc % | SAM test acc % | Δ test acc (pts) | Δ test loss | "
              "SGD train acc % | SAM train acc % |")
        print("|---|---|---|---|---|---|---|---|")
        for k, width in enumerate(widths):
            n_params = parameter_count(base.replace(width=width))
            d_acc = sam["test_acc"][:, k] - sgd["test_acc"][:, k]
            d_loss = sam["test_loss"][:, k] - sgd["test_loss"][:, k]
            print(f"| {width} | {n_params:,} | {100 * np.nanmean(sgd['test_acc'][:, k]):.1f} | "
                  f"{100 * np.nanmean(sam['test_acc'][:, k]):.1f} | {_pm(d_acc, 100)} | {_pm(d_loss, 1, 3)} | "
                  f"{100 * np.nanmean(sgd['train_acc'][:, k]):.1f} | {100 * np.nanmean(sam['train_acc'][:, k]):.1f} |")
            results.append({"label_noise": share, "width": width, "params": n_params,
                            "sgd": {name: v[:, k].tolist() for name, v in sgd.items()},
                            "sam": {name: v[:, k].tolist() for name, v in sam.items()}})
        sys.stdout.flush()
    print(f"\n# {time.perf_counter() - started:.0f} s")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
