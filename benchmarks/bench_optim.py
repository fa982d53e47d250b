"""A recorded ``train.run`` against a plain pytorch-optimizer SAM loop, and the adapter's time per optimizer step.

Run: ``python benchmarks/bench_optim.py`` (add ``--device cuda`` on a GPU machine, ``--part run`` or ``--part
steps`` for one half). ``run``: 200 full-batch SAM steps of ``train.run`` on the default moons MLP with every
record on (evaluation, full-gradient cosine, snapshots) against a loop of ``pytorch_optimizer.SAM`` over
``torch.optim.SGD`` on the same model and data that records nothing (target: ≤ 1.3×). ``steps``: each optimizer
through ``sam_viz.optim.make`` on one MLP. Timings are medians over interleaved repeats, so machine noise hits
every method alike.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import header  # noqa: E402  (beside this script)

from sam_viz.config import Config  # noqa: E402
from sam_viz.optim import OPTIMIZERS, BatchClosure, make  # noqa: E402
from sam_viz.train import run, setup  # noqa: E402

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


def _hparams(name: str) -> dict:
    """The shared SGD base (lr 0.1, momentum 0.9, weight decay 5e-4) where the optimizer has those settings; its
    registry defaults otherwise (Adam-type methods keep their own learning rate)."""
    specs = OPTIMIZERS[name].hparams
    if specs.get("base") is None and name != "sgd":
        return {}
    return {key: value for key, value in BASE.items() if key in specs}


def _factories() -> dict[str, callable]:
    """Every registry optimizer through ``make``, then the pytorch-optimizer peers of SAM and F-SAM."""
    f = {f"ours {name}": (lambda p, name=name: make(name, p, **_hparams(name))) for name in OPTIMIZERS}
    if po is not None:
        f["pytorch-optimizer SAM"] = lambda p: po.SAM(p, torch.optim.SGD, rho=0.05, **BASE)
        f["pytorch-optimizer FriendlySAM"] = lambda p: po.FriendlySAM(p, torch.optim.SGD, rho=0.05, sigma=1.0, lmbda=0.9, **BASE)
    return f


def _time_steps(factory, x, y, width: int, steps: int, device: torch.device) -> tuple[float, float]:
    """Seconds per step, and gradient evaluations per step in units of the batch, averaged over the timed steps
    (our optimizers count them; NaN for the peers)."""
    model = _model(width, device)
    opt = factory(model.parameters())
    loss_fn = nn.functional.cross_entropy
    # every optimizer gets a closure that knows its batch (the ones needing only the mean loss call it plainly)
    batch = BatchClosure(model, lambda out, t: loss_fn(out, t, reduction="none"), x, y, heldout=(x[:256], y[:256]))

    closure = batch

    for _ in range(3):  # warm-up
        closure()
        opt.step(closure)
    if device.type == "cuda":
        torch.cuda.synchronize()
    samples = 0.0
    start = time.perf_counter()
    for _ in range(steps):
        closure()
        opt.step(closure)
        last = getattr(opt, "last", None)  # a host-side count the step already made: no device sync
        samples += last.grad_samples if last is not None else float("nan")
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    return seconds, samples / steps / x.shape[0]  # the mean over the timed steps (LookSAM, SSAM vary by step)



def bench_run(device: str, repeats: int, steps: int = 200) -> dict[str, float]:
    """Seconds of ``train.run`` (records on) and of a plain pytorch-optimizer SAM loop, medians of interleaved
    repeats, and their ratio."""
    config = Config(optimizer="sam", steps=steps, device=device)
    s = setup(config)
    hp = config.hp

    def ours() -> None:
        run(config)

    def ours_light() -> None:  # the same loop with the per-step evaluation, cosine and snapshots off
        run(config.replace(eval_every=steps, fullgrad_every=steps, snapshot_every=steps))

    def plain() -> None:
        model = copy.deepcopy(s.model)  # θ_0 of the seed, as run builds it
        opt = po.SAM(model.parameters(), torch.optim.SGD, rho=hp["rho"], lr=hp["lr"], momentum=hp["momentum"])
        for _ in range(steps):
            s.loss(model(s.x_train), s.y_train).backward()
            opt.first_step(zero_grad=True)
            s.loss(model(s.x_train), s.y_train).backward()
            opt.second_step(zero_grad=True)
        with torch.no_grad():
            float(s.loss(model(s.x_train), s.y_train))

    methods = {"train.run": ours, "train.run, records off": ours_light, "pytorch-optimizer SAM loop": plain}
    times: dict[str, list[float]] = {name: [] for name in methods}
    for fn in methods.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in methods.items():
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            started = time.perf_counter()
            fn()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - started)
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"# bench_optim --part run: {steps} full-batch SAM steps, moons MLP 2-32-32-2 tanh (N={s.x_train.shape[0]}), "
          f"train.run records every step (eval_every=1: train and test loss/accuracy, fullgrad_every=1: cos(e, ∇L), "
          f"snapshot_every=10; 'records off' sets all three to {steps}); {repeats} interleaved "
          f"repeats; device={device}; {header()}")
    for name, t in med.items():
        print(f"{name:<32}{t:>8.3f} s  (min {min(times[name]):.3f})")
    ratio = med["train.run"] / med["pytorch-optimizer SAM loop"]
    light = med["train.run, records off"] / med["pytorch-optimizer SAM loop"]
    print(f"ratio train.run / plain loop: {ratio:.3f} (target <= 1.3); with the records off: {light:.3f}")
    return {"run_s": med["train.run"], "run_records_off_s": med["train.run, records off"],
            "plain_s": med["pytorch-optimizer SAM loop"], "ratio": ratio, "ratio_records_off": light}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--part", choices=("all", "run", "steps"), default="all")
    parser.add_argument("--n", type=int, default=2000, help="samples (full batch)")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    if args.part in ("all", "run") and po is not None:
        print(json.dumps(bench_run(args.device, args.repeats)))
    if args.part == "run":
        return
    device = torch.device(args.device)
    x, y = _data(args.n, device)
    factories = _factories()
    times: dict[str, list[float]] = {name: [] for name in factories}
    evals: dict[str, float] = {}
    for _ in range(args.repeats):  # interleaved: each repeat times every method once
        for name, factory in factories.items():
            seconds, evals[name] = _time_steps(factory, x, y, args.width, args.steps, device)
            times[name].append(seconds)
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"# bench_optim: MLP 2-{args.width}-{args.width}-2 (tanh), N={args.n} full batch, {args.steps} steps x "
          f"{args.repeats} interleaved repeats, device={device}, torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}; {header()}")
    print(f"{'method':<32}{'ms/step':>10}{'ratio':>10}{'grad evals/step':>17}  vs")
    rows = []
    for name, t in med.items():
        ref_name = {"ours sam": "pytorch-optimizer SAM", "ours fsam": "pytorch-optimizer FriendlySAM"}.get(name, "ours sam")
        if name == "ours sam" and po is None:
            ref_name = "ours sgd"
        ratio = t / med[ref_name] if ref_name in med and ref_name != name else float("nan")
        vs = ref_name if ref_name != name else ""
        print(f"{name:<32}{t * 1e3:>10.3f}{ratio:>10.3f}{evals[name]:>17.3g}  {vs}")
        rows.append({"method": name, "ms_per_step": t * 1e3, "ratio": ratio, "grad_evals_per_step": evals[name],
                     "vs": vs})
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
