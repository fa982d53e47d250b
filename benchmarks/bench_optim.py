"""Time per optimizer step: our sam/fsam against pytorch-optimizer's, and LightSAM I/II/III's overhead over SAM.

Run: ``python benchmarks/bench_optim.py`` (add ``--device cuda`` on a GPU machine). Each optimizer trains the same
MLP on the same data; timings are medians over interleaved repeats, so machine noise hits every method alike.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sam_viz.optim import make  # noqa: E402

try:
    import pytorch_optimizer as po
except ImportError:  # the GPU machine may lack it: then only our own timings are printed
    po = None

BASE = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}


def _data(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g)
    y = ((x[:, 0] * x[:, 1]) > 0).long()
    return x.to(device), y.to(device)


def _model(width: int, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 2)).to(device)


def _factories() -> dict[str, callable]:
    f = {
        "ours sam": lambda p: make("sam", p, rho=0.05, **BASE),
        "ours fsam": lambda p: make("fsam", p, rho=0.05, sigma=1.0, lmbda=0.9, **BASE),
        "ours lightsam1": lambda p: make("lightsam1", p, rho=0.1, lr=0.1),
        "ours lightsam2": lambda p: make("lightsam2", p, rho=0.1, lr=0.1),
        "ours lightsam3": lambda p: make("lightsam3", p, rho=0.01, lr=1e-3),
        "ours sgd": lambda p: make("sgd", p, **BASE),
    }
    if po is not None:
        f["pytorch-optimizer SAM"] = lambda p: po.SAM(p, torch.optim.SGD, rho=0.05, **BASE)
        f["pytorch-optimizer FriendlySAM"] = lambda p: po.FriendlySAM(p, torch.optim.SGD, rho=0.05, sigma=1.0, lmbda=0.9, **BASE)
    return f


def _time_steps(factory, x, y, width: int, steps: int, device: torch.device) -> float:
    model = _model(width, device)
    opt = factory(model.parameters())
    loss_fn = nn.functional.cross_entropy

    def closure():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss

    for _ in range(3):  # warm-up
        closure()
        opt.step(closure)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        closure()
        opt.step(closure)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=2000, help="samples (full batch)")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    device = torch.device(args.device)
    x, y = _data(args.n, device)
    factories = _factories()
    times: dict[str, list[float]] = {name: [] for name in factories}
    for _ in range(args.repeats):  # interleaved: each repeat times every method once
        for name, factory in factories.items():
            times[name].append(_time_steps(factory, x, y, args.width, args.steps, device))
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"# bench_optim: MLP 2-{args.width}-{args.width}-2 (tanh), N={args.n} full batch, {args.steps} steps x "
          f"{args.repeats} interleaved repeats, device={device}, torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, {platform.processor() or platform.machine()}")
    print(f"{'method':<32}{'ms/step':>10}{'ratio':>10}  vs")
    rows = []
    for name, t in med.items():
        ref_name = {"ours sam": "pytorch-optimizer SAM", "ours fsam": "pytorch-optimizer FriendlySAM"}.get(name, "ours sam")
        if name == "ours sam" and po is None:
            ref_name = "ours sgd"
        ratio = t / med[ref_name] if ref_name in med and ref_name != name else float("nan")
        vs = ref_name if ref_name != name else ""
        print(f"{name:<32}{t * 1e3:>10.3f}{ratio:>10.3f}  {vs}")
        rows.append({"method": name, "ms_per_step": t * 1e3, "ratio": ratio, "vs": vs})
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
