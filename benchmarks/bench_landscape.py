"""Surface and Hessian benchmark: sam_viz against loss-landscapes and PyHessian, side by side in one run.

Run: ``pip install --no-deps -r benchmarks/requirements.txt && python benchmarks/bench_landscape.py`` (``--device cuda``
on a GPU machine; peers that are not installed are skipped). Surface part: a 41×41 grid of an MLP 2→64→64→2 on
two-moons data, full batch, float32, for tanh and relu and N = 2,000 and 256, against ``loss_landscapes.random_plane``
(steps=41, filter normalisation, deepcopy) and the matmul floor (the grid's GEMM FLOPs at this machine's fastest
measured float32 GEMM rate: torch's matmul or oneDNN's). Timings are medians over interleaved repeats. Hessian part: ``benchmarks/bench_hessian.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sam_viz import landscape as L  # noqa: E402
from sam_viz.config import Config  # noqa: E402
from sam_viz.train import setup  # noqa: E402

try:
    import loss_landscapes
    import loss_landscapes.metrics
except ImportError:
    loss_landscapes = None

RESOLUTION = 41
WIDTH = 64


def _gemm_rates(device: torch.device) -> dict[str, float]:
    """float32 GEMM rate on 2048² matrices: torch's matmul (MKL on x86 CPUs, cuBLAS on GPUs) and, on the CPU,
    oneDNN's. On AMD CPUs MKL runs its AVX2 code and oneDNN its AVX-512 code, about 2× apart; the floor uses the
    faster."""
    a = torch.randn(2048, 2048, device=device)
    b = torch.randn(2048, 2048, device=device)
    kernels = {"torch.matmul": lambda: a @ b}
    onednn = L._onednn_linear()
    if onednn is not None and device.type == "cpu":
        kernels["oneDNN"] = lambda: onednn(a, b, None, "none", [], "")
    rates = {}
    for name, kernel in kernels.items():
        kernel()
        times = []
        for _ in range(5):
            _sync(device)
            start = time.perf_counter()
            kernel()
            _sync(device)
            times.append(time.perf_counter() - start)
        rates[name] = 2 * 2048**3 / statistics.median(times)
    return rates


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _case(activation: str, n: int, device: str):
    s = setup(Config(task="moons", n_samples=n, noise=0.2, test_fraction=0.0, depth=2, width=WIDTH,
                     activation=activation, device=device))
    return s.model, s.loss, (s.x_train, s.y_train)


def _ours(model, loss_fn, batch, plane, progressive: bool = False) -> tuple[float, float | None]:
    """Full-surface time, and the time to the first coarse (11×11) picture when progressive."""
    L._SURFACE_CACHE.clear()  # the result cache would make repeats free: time the evaluation itself
    device = batch[0].device
    _sync(device)
    start = time.perf_counter()
    first = None
    for level in L.surfaces_progressive(model, loss_fn, batch, plane, 1.0, RESOLUTION, levels=3 if progressive else 1):
        _sync(device)
        if first is None:
            first = time.perf_counter() - start
    return time.perf_counter() - start, first


def _peer(model, loss_fn, batch) -> float:
    metric = loss_landscapes.metrics.Loss(loss_fn, batch[0], batch[1])
    start = time.perf_counter()
    loss_landscapes.random_plane(model, metric, distance=1, steps=RESOLUTION, normalization="filter", deepcopy_model=True)
    return time.perf_counter() - start


def surface_part(device: str, repeats: int) -> list[dict]:
    dev = torch.device(device)
    rates = _gemm_rates(dev)
    rate = max(rates.values())
    print(f"## Surface {RESOLUTION}x{RESOLUTION}, MLP 2-{WIDTH}-{WIDTH}-2, full batch float32, device={device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; float32 GEMM 2048^2: "
          + ", ".join(f"{name} {r / 1e9:.0f} GFLOP/s" for name, r in rates.items()) + " (the floor uses the faster)")
    header = f"{'act':<6}{'N':>6}{'evaluator':>10}{'cold s':>9}{'ours s':>9}{'peer s':>9}{'speed-up':>10}{'floor s':>9}{'x floor':>9}{'first/full':>11}"
    print(header)
    rows = []
    for activation in ("tanh", "relu"):
        for n in (2000, 256):
            model, loss_fn, batch = _case(activation, n, device)
            plane = L.random_plane(model, seed=0)
            L._EVALUATOR_CHOICE.clear()
            cold, _ = _ours(model, loss_fn, batch, plane)  # includes choosing the evaluator by measurement
            ours, peer, first, full = [], [], [], []
            for _ in range(repeats):
                ours.append(_ours(model, loss_fn, batch, plane)[0])
                t_full, t_first = _ours(model, loss_fn, batch, plane, progressive=True)
                full.append(t_full)
                first.append(t_first)
                if loss_landscapes is not None and dev.type == "cpu":
                    peer.append(_peer(model, loss_fn, batch))
            flops = 2 * n * (2 * WIDTH + WIDTH * WIDTH + WIDTH * 2) * RESOLUTION**2
            floor = flops / rate
            evaluator = L.surface(model, loss_fn, batch, plane, 1.0, RESOLUTION).evaluator
            row = {"activation": activation, "n": n, "evaluator": evaluator, "cold_s": cold,
                   "ours_s": statistics.median(ours), "peer_s": statistics.median(peer) if peer else None,
                   "floor_s": floor, "first_over_full": statistics.median(f / t for f, t in zip(first, full))}
            row["speedup"] = row["peer_s"] / row["ours_s"] if peer else None
            rows.append(row)
            peer_txt = f"{row['peer_s']:>9.3f}{row['speedup']:>9.2f}x" if peer else f"{'-':>9}{'-':>10}"
            print(f"{activation:<6}{n:>6}{evaluator:>10}{cold:>9.3f}{row['ours_s']:>9.3f}{peer_txt}{floor:>9.3f}"
                  f"{row['ours_s'] / floor:>9.2f}{row['first_over_full']:>11.3f}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--part", choices=("surface", "hessian", "all"), default="all")
    args = parser.parse_args()
    result = {}
    if args.part in ("surface", "all"):
        result["surface"] = surface_part(args.device, args.repeats)
    print(json.dumps(result, default=float))
    if args.part in ("hessian", "all"):  # the Hessian half, against PyHessian, in the same run
        print(flush=True)
        subprocess.run([sys.executable, str(Path(__file__).resolve().parent / "bench_hessian.py"), "--device", args.device],
                       check=True)


if __name__ == "__main__":
    main()
