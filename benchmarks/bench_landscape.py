"""Surface and Hessian benchmark: sam_viz against loss-landscapes and PyHessian, side by side in one run.

Run: ``pip install --no-deps -r benchmarks/requirements.txt && python benchmarks/bench_landscape.py`` (``--device cuda``
on a GPU machine; peers that are not installed are skipped). Surface part: a 41×41 grid of an MLP 2→64→64→2 on
two-moons data, full batch, float32, for tanh and relu and N = 2,000 and 256, against ``loss_landscapes.random_plane``
(steps=41, filter normalisation, deepcopy) and a floor: the grid's GEMM FLOPs at this machine's fastest measured
float32 GEMM rate (torch's matmul, i.e. MKL, or oneDNN's), plus its activations and per-sample losses at the fastest
measured elementwise rate for them (tanh: torch's tanh or the 2σ(2x) − 1 identity; relu; softplus), each measured
on a buffer the size of one chunk's activations. The evaluator is chosen by an explicit ``SurfacePlanner``: "cold"
includes its measurement, "ours" reuses its choice. Timings are medians over interleaved repeats. Hessian part:
``benchmarks/bench_hessian.py``.
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
from machine import cpu_model  # noqa: E402  (beside this script)

from sam_viz.config import Config
from sam_viz.evaluators import chunk_size, onednn_linear
from sam_viz.planes import random_plane
from sam_viz.planner import SurfacePlanner
from sam_viz.surface import surfaces_progressive
from sam_viz.train import setup

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
    onednn = onednn_linear()
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
        rates[name] = 2 * 2048**3 / min(times)  # the best of five: a floor is what the machine can do, not its load
    return rates


def _elementwise_rates(device: torch.device, n: int) -> dict[str, float]:
    """Elements per second of the in-place activations and the loss's softplus, on a (chunk·n, WIDTH) buffer (the
    size one evaluator call works on); tanh takes the faster of torch's kernel and 2σ(2x) − 1, as the floor must."""
    h = torch.randn(chunk_size(n) * n, WIDTH, device=device)
    kernels = {"tanh": lambda t: t.tanh_(), "tanh via sigmoid": lambda t: t.mul_(2).sigmoid_().mul_(2).sub_(1),
               "relu": lambda t: t.relu_(), "softplus": lambda t: torch.nn.functional.softplus(t)}
    rates = {}
    for name, kernel in kernels.items():
        buf = h.clone()
        kernel(buf)
        times = []
        for _ in range(7):
            buf.copy_(h)
            _sync(device)
            start = time.perf_counter()
            kernel(buf)
            _sync(device)
            times.append(time.perf_counter() - start)
        rates[name] = h.numel() / min(times)
    rates["tanh"] = max(rates["tanh"], rates.pop("tanh via sigmoid"))
    return rates


def _floor(activation: str, n: int, gemm_rate: float, rates: dict[str, float]) -> tuple[float, float]:
    """(GEMM seconds, elementwise seconds) for the 41² grid: 2·N·(2W + W² + 2W) FLOPs per point, and 2·N·W
    activations plus N softplus losses per point."""
    points = RESOLUTION**2
    gemm = 2 * n * (2 * WIDTH + WIDTH * WIDTH + WIDTH * 2) * points / gemm_rate
    elementwise = points * (2 * n * WIDTH / rates[activation] + n / rates["softplus"])
    return gemm, elementwise



def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _case(activation: str, n: int, device: str):
    s = setup(Config(task="moons", n_samples=n, noise=0.2, test_fraction=0.0, depth=2, width=WIDTH,
                     activation=activation, device=device))
    return s.model, s.loss, (s.x_train, s.y_train)


def _ours(model, loss_fn, batch, plane, planner: SurfacePlanner, progressive: bool = False
          ) -> tuple[float, float | None, str]:
    """Full-surface time, the time to the first coarse (11×11) picture when progressive, and the evaluator."""
    device = batch[0].device
    _sync(device)
    start = time.perf_counter()
    first = None
    for level in surfaces_progressive(model, loss_fn, batch, plane, 1.0, RESOLUTION, levels=3 if progressive else 1,
                                      planner=planner):
        _sync(device)
        if first is None:
            first = time.perf_counter() - start
    return time.perf_counter() - start, first, level.evaluator


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
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU: {cpu_model()}")
    print("# float32 GEMM 2048^2: " + ", ".join(f"{name} {r / 1e9:.0f} GFLOP/s" for name, r in rates.items())
          + " (the floor uses the faster)")
    header = (f"{'act':<6}{'N':>6}{'evaluator':>10}{'cold s':>9}{'ours s':>9}{'peer s':>9}{'speed-up':>10}"
              f"{'floor s':>9}{'gemm s':>8}{'elem s':>8}{'x floor':>9}{'first/full':>11}")
    rows, notes = [], []
    for activation in ("tanh", "relu"):
        for n in (2000, 256):
            elementwise = _elementwise_rates(dev, n)
            model, loss_fn, batch = _case(activation, n, device)
            plane = random_plane(model, seed=0)
            planner = SurfacePlanner()  # a fresh one: the cold run includes its measurement
            cold, _, _ = _ours(model, loss_fn, batch, plane, planner)
            ours, peer, first, full = [], [], [], []
            for _ in range(repeats):
                t_ours, _, evaluator = _ours(model, loss_fn, batch, plane, planner)
                ours.append(t_ours)
                t_full, t_first, _ = _ours(model, loss_fn, batch, plane, planner, progressive=True)
                full.append(t_full)
                first.append(t_first)
                if loss_landscapes is not None and dev.type == "cpu":
                    peer.append(_peer(model, loss_fn, batch))
            gemm_s, elem_s = _floor(activation, n, rate, elementwise)
            floor = gemm_s + elem_s
            row = {"activation": activation, "n": n, "evaluator": evaluator, "cold_s": cold,
                   "ours_s": statistics.median(ours), "peer_s": statistics.median(peer) if peer else None,
                   "floor_s": floor, "gemm_floor_s": gemm_s, "elementwise_floor_s": elem_s,
                   "first_over_full": statistics.median(f / t for f, t in zip(first, full)),
                   "elementwise_rates": elementwise, "planner_points_per_s": next(iter(planner.timings.values()))}
            row["speedup"] = row["peer_s"] / row["ours_s"] if peer else None
            rows.append(row)
            notes.append(f"# {activation} N={n}: elementwise Gelem/s " + ", ".join(
                f"{k} {v / 1e9:.2f}" for k, v in elementwise.items()) + "; planner points/s " + ", ".join(
                f"{k} {v:.0f}" for k, v in row["planner_points_per_s"].items()))
    print(header)
    for row in rows:
        peer_txt = f"{row['peer_s']:>9.3f}{row['speedup']:>9.2f}x" if row["peer_s"] else f"{'-':>9}{'-':>10}"
        print(f"{row['activation']:<6}{row['n']:>6}{row['evaluator']:>10}{row['cold_s']:>9.3f}{row['ours_s']:>9.3f}"
              f"{peer_txt}{row['floor_s']:>9.3f}{row['gemm_floor_s']:>8.3f}{row['elementwise_floor_s']:>8.3f}"
              f"{row['ours_s'] / row['floor_s']:>9.2f}{row['first_over_full']:>11.3f}")
    print("\n".join(notes))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--part", choices=("surface", "hessian", "all"), default="all")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    result = {}
    if args.part in ("surface", "all"):
        result["surface"] = surface_part(args.device, args.repeats)
    print(json.dumps(result, default=float))
    if args.part in ("hessian", "all"):  # the Hessian half, against PyHessian, in the same run
        print(flush=True)
        extra = [] if args.threads is None else ["--threads", str(args.threads)]
        subprocess.run([sys.executable, str(Path(__file__).resolve().parent / "bench_hessian.py"), "--device", args.device,
                        *extra], check=True)


if __name__ == "__main__":
    main()
