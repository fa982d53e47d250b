"""The SAM family's paper claims, each measured at classroom scale on the 8×8 digits.

One sub-command per claim; each prints a markdown table (mean ± std over paired seeds: every method sees the same
θ₀ and minibatches per seed) and, last, the raw numbers as JSON:

* ``ssam``: SSAM-F's test accuracy and final λ_max against sparsity (0 is SAM);
* ``esam``: test accuracy against gradient evaluations for SGD, SAM and ESAM;
* ``mbsam``: final λ_max and test accuracy against the number of micro-batches m (m = 1 is SAM);
* ``sampa``: test accuracy against sequential gradient evaluations, SAMPa against SAM and SGD;
* ``lets``: LETS' learned radius ρ_t from two initial radii (does it converge to one value?);
* ``gsam``: the surrogate gap L(θ + e) − L(θ) over training, GSAM against SAM.

Run: ``python benchmarks/family_claims.py <claim> --threads 1`` (``--steps``, ``--seeds``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import header  # noqa: E402  (beside this script)

from sam_viz.config import Config  # noqa: E402
from sam_viz.sweep import Grid, run_grid  # noqa: E402
from sam_viz.train import train  # noqa: E402


def digits(steps: int, batch: int = 64, **changes: Any) -> Config:
    """The claims' common set-up: all 1,797 digits (1,348 train / 449 test), MLP 64-32-32-10 tanh, minibatches."""
    return Config(task="digits", n_samples=1797, model="mlp", width=32, depth=2, steps=steps, batch_size=batch,
                  eval_every=max(1, steps // 20), fullgrad_every=steps, snapshot_every=steps, device="cpu",
                  **changes)


def cell(config: Config, seeds: int, lambda_max: bool = False) -> Grid:
    """One (ρ, η) cell over ``seeds`` paired seeds, batched."""
    hp = config.hp
    x = ("rho", [hp["rho"]]) if "rho" in hp else None
    if x is None:  # a one-pass method: sweep its learning rate alone (one value), twice named
        x = ("lr", [hp["lr"]])
    return run_grid(config, x=x, y=("lr", [hp["lr"]]) if x[0] != "lr" else ("momentum", [hp.get("momentum", 0.9)]),
                    seeds=seeds, strategy="batched", lambda_max=lambda_max)


def pm(values: np.ndarray, scale: float = 1.0, digits_: int = 2) -> str:
    values = np.asarray(values, dtype=np.float64).reshape(-1) * scale
    return f"{values.mean():.{digits_}f} ± {values.std():.{digits_}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


# ---------------------------------------------------------------------------------------------------- claims


def ssam(steps: int, seeds: int) -> list[dict]:
    rows, raw = [], []
    for sparsity in (0.0, 0.5, 0.9, 0.99):
        grid = cell(digits(steps, optimizer="ssam", hparams=(("mask", "fisher"), ("rho", 0.1), ("sparsity", sparsity))),
                    seeds, lambda_max=True)
        acc, lam = grid.final_test_acc.reshape(-1), grid.lambda_max.reshape(-1)
        rows.append((f"{sparsity:g}", pm(acc, 100), pm(lam)))
        raw.append({"sparsity": sparsity, "test_acc": acc.tolist(), "lambda_max": lam.tolist()})
    table(("sparsity", "test acc % mean ± std", "final λ_max mean ± std"), rows)
    return raw


def esam(steps: int, seeds: int) -> list[dict]:
    methods = {"SGD": ("sgd", ()), "SAM": ("sam", (("rho", 0.1),)),
               "ESAM (β 0.5, γ 0.5)": ("esam", (("beta", 0.5), ("gamma", 0.5), ("rho", 0.1)))}
    rows, raw = [], []
    for label, (name, hp) in methods.items():
        grid = cell(digits(steps, optimizer=name, hparams=hp), seeds)
        acc, evals = grid.final_test_acc.reshape(-1), grid.total_grad_evals.reshape(-1)
        rows.append((label, pm(acc, 100), f"{evals.mean():.0f}", f"{evals.mean() / steps:.2f}"))
        raw.append({"method": label, "test_acc": acc.tolist(), "grad_evals": evals.tolist()})
    table(("method", "test acc % mean ± std", "gradient evaluations (batches)", "per step"), rows)
    return raw


def mbsam(steps: int, seeds: int) -> list[dict]:
    rows, raw = [], []
    for m in (1, 2, 4, 8, 16):
        grid = cell(digits(steps, batch=128, optimizer="mbsam", hparams=(("m", m), ("rho", 0.05))), seeds,
                    lambda_max=True)
        acc, lam = grid.final_test_acc.reshape(-1), grid.lambda_max.reshape(-1)
        rows.append((str(m), str(128 // m), pm(acc, 100), pm(lam)))
        raw.append({"m": m, "test_acc": acc.tolist(), "lambda_max": lam.tolist()})
    table(("m", "micro-batch size", "test acc % mean ± std", "final λ_max mean ± std"), rows)
    return raw


def sampa(steps: int, seeds: int) -> list[dict]:
    # sequential evaluations per step: SAMPa's two gradients do not depend on each other (they can run at once)
    methods = {"SGD": ("sgd", (), 1), "SAM": ("sam", (("rho", 0.1),), 2),
               "SAMPa (λ 0.2)": ("sampa", (("rho", 0.1), ("lmbda", 0.2)), 1)}
    rows, raw = [], []
    for label, (name, hp, sequential) in methods.items():
        grid = cell(digits(steps, optimizer=name, hparams=hp), seeds)
        acc, evals = grid.final_test_acc.reshape(-1), grid.total_grad_evals.reshape(-1)
        rows.append((label, pm(acc, 100), f"{evals.mean():.0f}", str(sequential * steps)))
        raw.append({"method": label, "test_acc": acc.tolist(), "grad_evals": evals.tolist(),
                    "sequential": sequential * steps})
    table(("method", "test acc % mean ± std", "gradient evaluations", "sequential evaluations"), rows)
    return raw


def lets(steps: int, seeds: int) -> list[dict]:
    # β = 1 is the registry default; β = 30 is the step size at which ρ visibly moves on this task
    rows, raw = [], []
    for rho_lr in (1.0, 30.0):
        for rho0 in (0.01, 0.5):
            configs = [digits(steps, optimizer="lets", hparams=(("rho", rho0), ("rho_lr", rho_lr)), seed=s)
                       for s in range(seeds)]
            runs = train(configs)
            traces = np.stack([r.extra["rho_t"] for r in runs])  # (seeds, steps)
            marks = [0, steps // 4, steps // 2, steps - 1]
            rows.append((f"{rho_lr:g}", f"{rho0:g}", *(pm(traces[:, t], digits_=3) for t in marks),
                         pm(np.array([r.test_acc[np.isfinite(r.test_acc)][-1] for r in runs]), 100)))
            raw.append({"rho_lr": rho_lr, "rho0": rho0, "rho_t": traces[:, marks].tolist()})
    table(("β (rho_lr)", "initial ρ", "ρ_t step 0", f"step {steps // 4}", f"step {steps // 2}", f"step {steps - 1}",
           "test acc %"), rows)
    return raw


def gsam(steps: int, seeds: int) -> list[dict]:
    rows, raw = [], []
    for label, name, hp in (("SAM", "sam", (("rho", 0.1),)), ("GSAM (α 0.4)", "gsam", (("rho", 0.1), ("alpha", 0.4)))):
        runs = train([digits(steps, optimizer=name, hparams=hp, seed=s) for s in range(seeds)])
        gap = np.stack([r.perturbed_loss - r.batch_loss for r in runs])  # L_B(θ + e) − L_B(θ), per step
        quarters = [slice(k * steps // 4, (k + 1) * steps // 4) for k in range(4)]
        means = [np.nanmean(gap[:, q], axis=1) for q in quarters]
        acc = np.array([r.test_acc[np.isfinite(r.test_acc)][-1] for r in runs])
        rows.append((label, *(pm(m, digits_=4) for m in means), pm(acc, 100)))
        raw.append({"method": label, "gap_by_quarter": [m.tolist() for m in means], "test_acc": acc.tolist()})
    table(("method", "gap, 1st quarter", "2nd", "3rd", "4th quarter", "test acc %"), rows)
    return raw


CLAIMS: dict[str, tuple[Callable[[int, int], list[dict]], int]] = {  # name → (measure, default steps)
    "ssam": (ssam, 600), "esam": (esam, 600), "mbsam": (mbsam, 600), "sampa": (sampa, 600), "lets": (lets, 600),
    "gsam": (gsam, 600),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("claim", choices=[*CLAIMS, "all"])
    parser.add_argument("--steps", type=int, default=0, help="steps per run (0: the claim's default)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in CLAIMS if args.claim == "all" else [args.claim]:
        measure, default_steps = CLAIMS[name]
        steps = args.steps or default_steps
        print(f"## {name}: digits (1,348 train / 449 test), MLP 64-32-32-10 tanh, {steps} steps, lr 0.1 SGD momentum "
              f"0.9 base, {args.seeds} paired seeds; {header()}")
        started = time.perf_counter()
        raw = measure(steps, args.seeds)
        print(f"# {time.perf_counter() - started:.0f} s")
        print(json.dumps(raw))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
