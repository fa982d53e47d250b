"""Wall time of the 7 × 7 (ρ, lr) × 200-step SAM grid on the moons MLP: local backend, Ray with 1 and 2 workers.

Run: ``PYTHONPATH=. python benchmarks/bench_ray.py`` (``--repeats N``). Ray runs embedded in this process
(``ray.init(num_cpus=N)`` on 127.0.0.1), each worker with one torch thread; the local backend is timed with one
thread, the fair baseline for one worker. Workers are warmed up by a short grid first, as on a cluster that is
already running; Ray's start-up is reported apart. Each repeat runs local, Ray 1 worker and Ray 2 workers (one
Ray start each) in turn, so machine load hits all three alike; medians are reported. The projection times one digits-CNN cell in a stacked chunk and scales
it to the 3,000 trainings of the issue's study on 16 workers. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import ray
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import header
from sam_viz.config import Config
from sam_viz.sweep import run_grid
from sam_viz.train import train

RHOS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
LRS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
BASE = Config(task="moons", optimizer="sam", steps=200, device="cpu")
STUDY_TRAININGS = 3000  # six optimizers × a 10 × 10 (ρ, η) grid × 5 seeds
STUDY_WORKERS = 16
DIGITS_CNN = Config(task="digits", model="cnn", n_samples=1797, batch_size=64, steps=200, device="cpu")


def _grid(backend: str, steps: int = BASE.steps) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    grid = run_grid(BASE.replace(steps=steps), ("rho", RHOS), ("lr", LRS), strategy="batched", lambda_max=False,
                    backend=backend)
    assert not grid.failed.any(), grid.failure
    return time.perf_counter() - started, grid.final_train_loss


def _local() -> tuple[float, np.ndarray]:
    """(grid seconds, final losses) on the local backend with one torch thread."""
    default = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _grid("local", steps=3)  # warm-up: allocator, kernels
        return _grid("local")
    finally:
        torch.set_num_threads(default)


def _ray(workers: int) -> tuple[float, float, float, np.ndarray]:
    """(Ray start-up s, first grid s with cold workers, warm grid s, final losses) on ``workers`` CPUs."""
    started = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    start_up = time.perf_counter() - started
    try:
        cold, _ = _grid("ray", steps=3)  # the workers start and import torch and sam_viz
        seconds, final = _grid("ray")
    finally:
        ray.shutdown()
    return start_up, cold, seconds, final


def _digits_cell_seconds(cells: int = 8) -> float:
    """Seconds per digits-CNN training (200 minibatch SAM steps) in a stacked chunk, one torch thread."""
    default = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        configs = [DIGITS_CNN.replace(optimizer="sam", rho=0.01 * (k + 1)) for k in range(cells)]
        train(configs[:1], diagnostics=False)  # warm-up
        started = time.perf_counter()
        train(configs, diagnostics=False)
        return (time.perf_counter() - started) / cells
    finally:
        torch.set_num_threads(default)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(header())
    load_before = os.getloadavg()[0]
    local: list[tuple[float, np.ndarray]] = []
    runs: dict[int, list[tuple[float, float, float, np.ndarray]]] = {1: [], 2: []}
    for _ in range(args.repeats):
        local.append(_local())
        for workers in (1, 2):
            runs[workers].append(_ray(workers))
    local1, reference = statistics.median(t for t, _ in local), local[-1][1]
    ray_s = {w: statistics.median(r[2] for r in rs) for w, rs in runs.items()}
    start_s = {w: statistics.median(r[0] for r in rs) for w, rs in runs.items()}
    cold_s = {w: statistics.median(r[1] for r in rs) for w, rs in runs.items()}
    diff = {w: np.abs(rs[-1][3] - reference) for w, rs in runs.items()}
    same = {w: float(np.nanmax(d)) for w, d in diff.items()}
    within = {w: int((d <= 1e-4).sum()) for w, d in diff.items()}  # float32 round-off grows in chaotic cells
    overhead = ray_s[1] / local1 - 1
    scaling = ray_s[1] / ray_s[2]
    cell_s = _digits_cell_seconds()
    efficiency = scaling / 2  # per-worker efficiency measured here, assumed to hold at 16 workers
    study_serial = STUDY_TRAININGS * cell_s
    study_16 = study_serial * (1 + max(overhead, 0.0)) / (STUDY_WORKERS * efficiency)
    print(f"7 x 7 grid x {BASE.steps} full-batch SAM steps, moons MLP, float32, {args.repeats} repeats (medians); "
          f"load average before/after: {load_before:.2f} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"local backend, 1 thread:            {local1:7.2f} s")
    for w in (1, 2):
        print(f"Ray, {w} worker{'s' if w > 1 else ' '} (1 thread each):    {ray_s[w]:7.2f} s   (Ray start-up "
              f"{start_s[w]:.1f} s, first grid on cold workers {cold_s[w]:.1f} s; max |Δ final loss| vs local "
              f"{same[w]:.1e}, {within[w]}/49 cells within 1e-4)")
    print(f"Ray overhead at 1 worker: {100 * overhead:+.1f}% (target <= 15%)")
    print(f"scaling 1 -> 2 workers:   {scaling:.2f}x (target >= 1.6x)")
    print(f"projection: one digits-CNN training (200 steps, batch 64, SAM, stacked chunk, 1 thread) {cell_s:.2f} s;")
    print(f"  {STUDY_TRAININGS} trainings = {STUDY_TRAININGS} x {cell_s:.2f} s = {study_serial / 3600:.2f} h on one "
          f"worker; on {STUDY_WORKERS} workers at the measured efficiency {efficiency:.2f} and overhead "
          f"{100 * max(overhead, 0):.1f}%: {study_serial:.0f} s x {1 + max(overhead, 0):.3f} / ({STUDY_WORKERS} x "
          f"{efficiency:.2f}) = {study_16:.0f} s = {study_16 / 60:.1f} min")
    print(json.dumps({"benchmark": "ray", "local_1_thread_s": local1, "local_times_s": [t for t, _ in local],
                      "ray_times_s": {w: [r[2] for r in rs] for w, rs in runs.items()}, "cells_within_1e-4": within,
                      "ray_s": ray_s, "ray_start_up_s": start_s, "ray_cold_grid_s": cold_s, "overhead": overhead,
                      "scaling_1_to_2": scaling, "max_abs_diff_vs_local": same, "digits_cnn_cell_s": cell_s,
                      "study_16_workers_s": study_16, "load_before": load_before, "load_after": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
