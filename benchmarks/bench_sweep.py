"""Wall time of a 7 × 7 (ρ, lr) grid × 200 full-batch steps on the moons MLP: batched engine vs one run at a time.

Run: ``python benchmarks/bench_sweep.py`` (``--device cuda`` on a GPU machine, ``--repeats N``, ``--threads N``).
For SAM and LightSAM-II it times ``run_grid(strategy="batched")``, the process pool, the 49 configs one after
another with ``train.run``, and (SAM only, when pytorch-optimizer is installed) a plain training loop with
``pytorch_optimizer.SAM`` that records nothing. Repeats are interleaved so machine noise hits every method alike;
the table shows medians (and minima), the last line is JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sam_viz.config import Config
from sam_viz.sweep import choose_strategy, run_grid
from sam_viz.train import run, setup

try:
    import pytorch_optimizer as po
except ImportError:  # optional on the GPU machine: then its row is left out
    po = None

RHOS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
LRS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def _sequential(base: Config) -> dict[str, np.ndarray]:
    finals = [run(base.replace(rho=rho, lr=lr)).final_train_loss for lr in LRS for rho in RHOS]
    return {"final_train_loss": np.reshape(finals, (len(LRS), len(RHOS)))}


def _batched(base: Config, strategy: str) -> dict[str, np.ndarray]:
    grid = run_grid(base, ("rho", RHOS), ("lr", LRS), strategy=strategy, lambda_max=False)
    return {"final_train_loss": grid.final_train_loss[0], "diverged": grid.diverged[0]}


def _po_loop(base: Config) -> dict[str, np.ndarray]:
    """pytorch-optimizer's SAM over torch.optim.SGD, the documented two-closure loop, nothing recorded."""
    s = setup(base)
    finals = np.zeros((len(LRS), len(RHOS)))
    momentum = base.hp["momentum"]
    for i, lr in enumerate(LRS):
        for j, rho in enumerate(RHOS):
            model = copy.deepcopy(s.model)  # θ_0 of the seed, as the other methods
            opt = po.SAM(model.parameters(), torch.optim.SGD, rho=rho, lr=lr, momentum=momentum)
            for _ in range(base.steps):
                s.loss(model(s.x_train), s.y_train).backward()
                opt.first_step(zero_grad=True)
                s.loss(model(s.x_train), s.y_train).backward()
                opt.second_step(zero_grad=True)
            with torch.no_grad():
                finals[i, j] = float(s.loss(model(s.x_train), s.y_train))
    return {"final_train_loss": finals}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time(fn: Callable[[], dict[str, np.ndarray]], device: str) -> tuple[float, dict[str, np.ndarray]]:
    _sync(device)
    started = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - started, out


def _agreement(final: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """How closely a method's final train losses match ``train.run``'s: cells within 1e-4 (float32 round-off
    grows in the chaotic large ρ·η cells, whatever the implementation), median and max difference."""
    diff = np.abs(final - reference)
    return {"cells_within_1e-4": int((diff <= 1e-4).sum()), "median_abs_diff": float(np.median(diff)),
            "max_abs_diff": float(diff.max())}


def bench(optimizer: str, device: str, repeats: int) -> dict[str, object]:
    base = Config(task="moons", optimizer=optimizer, steps=200, device=device)
    methods: dict[str, Callable[[], dict[str, np.ndarray]]] = {
        "batched engine": lambda: _batched(base, "batched"),
        "sequential train.run": lambda: _sequential(base),
    }
    if not device.startswith("cuda"):
        methods["process pool (train.run)"] = lambda: _batched(base, "process")
    if optimizer == "sam" and po is not None:
        methods["pytorch-optimizer SAM loop"] = lambda: _po_loop(base)
    _batched(base.replace(steps=3), "batched")  # warm-up: lazy initialisation, allocator
    times: dict[str, list[float]] = {name: [] for name in methods}
    outputs: dict[str, dict[str, np.ndarray]] = {}
    for _ in range(repeats):
        for name, fn in methods.items():
            seconds, outputs[name] = _time(fn, device)
            times[name].append(seconds)
    lam_started = time.perf_counter()
    run_grid(base, ("rho", RHOS), ("lr", LRS), strategy="batched", lambda_max=True)
    with_lambda = time.perf_counter() - lam_started
    reference = outputs["sequential train.run"]["final_train_loss"]
    rows = {name: {"median_s": statistics.median(t), "min_s": min(t), "times_s": t,
                   **_agreement(outputs[name]["final_train_loss"], reference)} for name, t in times.items()}
    sequential = rows["sequential train.run"]["median_s"]
    for row in rows.values():
        row["speedup_vs_sequential"] = sequential / row["median_s"]
    auto, estimates = choose_strategy(base, len(RHOS) * len(LRS))
    return {"optimizer": optimizer, "methods": rows, "diverged_cells": int(outputs["batched engine"]["diverged"].sum()),
            "batched_with_lambda_max_s": with_lambda, "auto_choice": auto,
            "auto_estimates_s": {k: round(float(v), 3) for k, v in estimates.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    results = [bench(name, args.device, args.repeats) for name in ("sam", "lightsam2")]
    print(f"7 x 7 grid (rho {RHOS[0]}..{RHOS[-1]}, lr {LRS[0]}..{LRS[-1]}) x 200 full-batch steps, moons MLP 2-32-32-2 "
          f"tanh, {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, {args.repeats} repeats")
    print(f"load average before/after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"{'optimizer':<10} {'method':<28} {'median s':>9} {'min s':>8} {'speed-up':>9} {'= run (1e-4)':>13} "
          f"{'median |Δ|':>11} {'max |Δ|':>9}")
    for res in results:
        for name, row in res["methods"].items():
            print(f"{res['optimizer']:<10} {name:<28} {row['median_s']:>9.2f} {row['min_s']:>8.2f} "
                  f"{row['speedup_vs_sequential']:>8.2f}x {row['cells_within_1e-4']:>10}/49 "
                  f"{row['median_abs_diff']:>11.1e} {row['max_abs_diff']:>9.1e}")
        print(f"{'':<10} batched incl. lambda_max of 49 cells: {res['batched_with_lambda_max_s']:.2f} s; "
              f"diverged cells: {res['diverged_cells']}; auto picks {res['auto_choice']} {res['auto_estimates_s']}")
    print(json.dumps({"benchmark": "sweep", "device": args.device, "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "load_before": load_before[0], "load_after": os.getloadavg()[0], "python": platform.python_version(), "results": results}))


if __name__ == "__main__":
    main()
