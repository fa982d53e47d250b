"""HVPs, λ_max, top-5 and trace of a network's Hessian: ours against scipy's eigsh, curvlinops 3, PyHessian 0.1 and
the exact spectrum.

Run: ``python benchmarks/bench_hessian.py`` (add ``--device cuda`` on a GPU machine). PyHessian and curvlinops are
optional; install them with ``pip install --no-deps -r benchmarks/requirements.txt`` so pip keeps the pinned torch.
scipy's ``eigsh`` (ARPACK's implicitly restarted Lanczos) runs on our operator through a ``LinearOperator``.

The model is the MLP 2→64→64→2 (tanh, float32) on 2,000 two-moons points, trained briefly with full-batch SGD so
the Hessian has the usual outliers over a bulk. The exact spectrum comes from the dense float64 Hessian
(``dense_eigenvalues``). Every method is timed end to end, including its forward/backward set-up, as the median
of interleaved repeats so machine noise hits all methods alike; one untimed warm-up round comes first.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import make_moons
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from machine import cpu_model  # noqa: E402  (beside this script)
from scipy.sparse.linalg import LinearOperator, eigsh

from sam_viz.dense import dense_matrix
from sam_viz.density import spectral_density
from sam_viz.hutchinson import hutchpp_trace
from sam_viz.hvp import make_hvp
from sam_viz.lanczos import top_eigenvalues

try:
    import pyhessian

    # `pyhessian.hessian` is the class (its __init__ re-exports it over the submodule's name): get the module itself.
    pyhessian_module = importlib.import_module("pyhessian.hessian")
except ImportError:  # optional on GPU machines: then only our rows are printed
    pyhessian = None
try:
    import curvlinops
except ImportError:
    curvlinops = None

LOSS = nn.functional.cross_entropy


def _problem(n: int, width: int, train_steps: int, device: torch.device) -> tuple[nn.Module, tuple]:
    X, Y = make_moons(n, noise=0.2, random_state=0)
    x = torch.tensor(X, dtype=torch.float32, device=device)
    y = torch.tensor(Y, dtype=torch.long, device=device)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                          nn.Linear(width, 2)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(train_steps):
        opt.zero_grad()
        LOSS(model(x), y).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    return model, (x, y)


class _HVPCounter:
    """Counts PyHessian's Hessian-vector products by wrapping the function its module calls (benchmark only)."""

    def __init__(self) -> None:
        self.count = 0
        self._inner = pyhessian_module.hessian_vector_product
        pyhessian_module.hessian_vector_product = self._counted

    def _counted(self, *args, **kwargs):
        self.count += 1
        return self._inner(*args, **kwargs)


Method = Callable[[int], Callable[[], dict]]  # repeat index -> (untimed set-up) -> timed run -> results


def _methods(model: nn.Module, batch: tuple, device: torch.device, counter: _HVPCounter | None,
             H64: torch.Tensor) -> dict[str, Method]:
    """Each method's timed run returns {"values": ..., "hvps": ..., extra fields}; every run builds its operator."""
    dim = H64.shape[0]
    block = torch.randint(0, 2, (dim, 32), generator=torch.Generator().manual_seed(0)).float().mul_(2).sub_(1)
    exact_block = H64 @ block.double()

    def hvp_error(out: torch.Tensor) -> float:
        return float(torch.linalg.norm(out.double().cpu() - exact_block) / torch.linalg.norm(exact_block))

    def ours_hvp(mode: str, strategy: str | None = None) -> Method:
        def setup(repeat: int) -> Callable[[], dict]:
            def run() -> dict:
                op = make_hvp(model, LOSS, batch, mode=mode, strategy=strategy)
                out = op @ block.to(device)
                return {"values": np.array([hvp_error(out)]), "hvps": op.matvecs, "strategy": op.block_strategy}
            return run
        return setup

    def scipy_top(k: int) -> Method:
        def setup(repeat: int) -> Callable[[], dict]:
            def run() -> dict:
                op = make_hvp(model, LOSS, batch)

                def matvec(v: np.ndarray) -> np.ndarray:
                    return (op @ torch.from_numpy(np.asarray(v, dtype=np.float32).reshape(-1))).cpu().numpy()

                v0 = np.random.default_rng(repeat).standard_normal(op.dim).astype(np.float32)
                vals = eigsh(LinearOperator((op.dim, op.dim), matvec=matvec, dtype=np.float32), k=k, which="LA",
                             tol=1e-4, v0=v0, return_eigenvectors=False)
                return {"values": np.sort(vals)[::-1], "hvps": op.matvecs}
            return run
        return setup

    # Every method draws fresh random vectors per repeat (seed = repeat), as PyHessian does from the global RNG.
    def ours_top(k: int, verify: bool | None = None) -> Method:
        def setup(repeat: int) -> Callable[[], dict]:
            def run() -> dict:
                r = top_eigenvalues(make_hvp(model, LOSS, batch), k=k, seed=repeat, verify=verify)
                return {"values": r.eigenvalues, "hvps": r.matvecs, "converged": bool(r.converged.all()),
                        "residual": float(r.residuals.max()), "verified": r.verified}
            return run
        return setup

    def ours_trace(repeat: int) -> Callable[[], dict]:
        def run() -> dict:
            r = hutchpp_trace(make_hvp(model, LOSS, batch), matvecs=99, seed=repeat)
            return {"values": np.array([r.estimate]), "hvps": r.matvecs, "stderr": r.stderr}
        return run

    def ours_slq(repeat: int) -> Callable[[], dict]:
        def run() -> dict:
            d = spectral_density(make_hvp(model, LOSS, batch), iters=80, n_vectors=4, seed=repeat)
            return {"values": np.array([d.nodes.max()]), "hvps": d.matvecs}
        return run

    methods = {"ours hvp": ours_hvp("cached"), "ours-vmap hvp": ours_hvp("cached", "vmap"),
               "ours-stateless hvp": ours_hvp("stateless"),
               "ours top1": ours_top(1), "ours+check top1": ours_top(1, verify=True), "ours top5": ours_top(5),
               "scipy-eigsh top1": scipy_top(1), "scipy-eigsh top5": scipy_top(5),
               "ours trace": ours_trace, "ours slq": ours_slq}
    if curvlinops is not None:
        methods |= _curvlinops_methods(model, batch, block, hvp_error)
    if counter is None:
        return methods

    def pyh(task: str) -> Method:
        def setup(repeat: int) -> Callable[[], dict]:
            torch.manual_seed(repeat)  # PyHessian draws its start vectors from the global RNG
            # PyHessian puts the model in eval mode and writes a create_graph gradient into .grad: give it a copy,
            # made outside the timed region.
            own = copy.deepcopy(model)

            def run() -> dict:
                before = counter.count
                h = pyhessian.hessian(own, LOSS, data=batch, cuda=device.type == "cuda")
                if task == "trace":
                    probes = h.trace()
                    out = {"values": np.array([float(np.mean(probes))]),
                           "stderr": float(np.std(probes, ddof=1) / np.sqrt(len(probes)))}
                else:
                    out = {"values": np.array(h.eigenvalues(top_n=int(task[-1]))[0])}
                return out | {"hvps": counter.count - before}
            return run
        return setup

    return methods | {"pyhessian top1": pyh("top1"), "pyhessian top5": pyh("top5"), "pyhessian trace": pyh("trace")}


def _curvlinops_methods(model: nn.Module, batch: tuple, block: torch.Tensor,
                        hvp_error: Callable[[torch.Tensor], float]) -> dict[str, Method]:
    """curvlinops' Hessian operator (``jvp(jacrev)`` vmapped over the columns) and its Hutch++, built per run."""
    loss = nn.CrossEntropyLoss()  # curvlinops needs a module with `reduction`

    def operator() -> curvlinops.HessianLinearOperator:
        params = [p for p in model.parameters() if p.requires_grad]
        return curvlinops.HessianLinearOperator(model, loss, params, [batch], check_deterministic=False)

    def hvp(repeat: int) -> Callable[[], dict]:
        def run() -> dict:
            out = operator() @ block.to(batch[0].device)
            return {"values": np.array([hvp_error(out)]), "hvps": block.shape[1], "strategy": "vmap"}
        return run

    def hutchpp(repeat: int) -> Callable[[], dict]:
        torch.manual_seed(repeat)  # curvlinops draws its probes from the global RNG

        def run() -> dict:
            return {"values": np.array([float(curvlinops.hutchpp_trace(operator(), num_matvecs=99))]), "hvps": 99,
                    "stderr": float("nan")}
        return run

    return {"curvlinops hvp": hvp, "curvlinops trace": hutchpp}


def _time(method: Method, repeat: int, device: torch.device) -> tuple[float, dict]:
    run = method(repeat)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def _pyhessian_density_status(model: nn.Module, batch: tuple, device: torch.device) -> str:
    """PyHessian 0.1's density() calls torch.eig, removed in torch 1.9; report what it does here, don't patch it."""
    try:
        h = pyhessian.hessian(copy.deepcopy(model), LOSS, data=batch, cuda=device.type == "cuda")
        h.density(iter=10, n_v=1)
        return "ran"
    except (RuntimeError, AttributeError) as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:70]}"



def _rel_error(values: np.ndarray, exact: np.ndarray) -> float:
    return float(np.max(np.abs(np.sort(values)[::-1] - exact[: len(values)]) / np.abs(exact[: len(values)])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=2000, help="samples (full batch)")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, batch = _problem(args.n, args.width, args.train_steps, device)
    n_params = sum(p.numel() for p in model.parameters())

    start = time.perf_counter()
    H64 = dense_matrix(make_hvp(model, LOSS, batch, dtype=torch.float64)).cpu()
    exact = torch.linalg.eigvalsh(0.5 * (H64 + H64.T)).flip(0).numpy()
    dense_s = time.perf_counter() - start
    exact_trace = float(exact.sum())

    counter = _HVPCounter() if pyhessian is not None else None
    methods = _methods(model, batch, device, counter, H64)
    times: dict[str, list[float]] = {name: [] for name in methods}
    runs: dict[str, list[dict]] = {name: [] for name in methods}
    for method in methods.values():  # warm-up: first-call costs (functorch decompositions, allocator) go untimed
        method(0)()
    for repeat in range(args.repeats):  # interleaved: each repeat times every method once
        for name, method in methods.items():
            seconds, out = _time(method, repeat, device)
            times[name].append(seconds)
            runs[name].append(out)
    density_status = _pyhessian_density_status(model, batch, device) if pyhessian is not None else "not installed"

    print(f"# bench_hessian: MLP 2-{args.width}-{args.width}-2 (tanh, float32, {n_params:,} params), make_moons "
          f"N={args.n} full batch, {args.train_steps} SGD steps; medians of {args.repeats} interleaved repeats; "
          f"device={device}, torch {torch.__version__}, threads {torch.get_num_threads()}, {cpu_model()}; "
          f"curvlinops {getattr(curvlinops, '__version__', 'installed') if curvlinops else 'not installed'}")
    print(f"# exact (dense float64 Hessian, {dense_s:.1f} s): λ1..5 = {np.array2string(exact[:5], precision=5)}, "
          f"λ_min = {exact[-1]:.3e}, tr H = {exact_trace:.5f}")
    print("# ms, HVPs and rel. error: medians over the repeats; value and note: the last repeat")
    print(f"{'task':<8}{'method':<18}{'ms':>9}{'HVPs':>6}  {'value':<38}{'rel. error':>11}  note")
    rows = []
    for name, outs in runs.items():
        owner, task = name.split(" ")
        out = outs[-1]
        ms = statistics.median(times[name]) * 1e3
        hvps = statistics.median(o["hvps"] for o in outs)
        if task == "hvp":
            err = statistics.median(o["values"][0] for o in outs)
            value = f"{ms / hvps:.3f} ms per column"
            note = f"build + one block of {hvps:g} columns, {out['strategy']}; error vs the dense float64 H"
        elif task == "trace":
            err = statistics.median(abs(o["values"][0] - exact_trace) / abs(exact_trace) for o in outs)
            value = f"{out['values'][0]:.5f} ± {out['stderr']:.5f}"
            note = {"ours": "Hutch++, 99 matvecs", "curvlinops": "Hutch++, 99 matvecs (no standard error returned)",
                    "pyhessian": "Hutchinson, stops on |Δmean|/mean < 1e-3"}[owner]
        elif task == "slq":
            err = statistics.median(abs(o["values"][0] - exact[0]) / exact[0] for o in outs)
            value = f"top node {out['values'][0]:.6f}"
            note = f"SLQ 4 × 80 steps; PyHessian density(): {density_status}"
        else:
            err = statistics.median(_rel_error(o["values"], exact) for o in outs)
            value = np.array2string(np.asarray(out["values"]), precision=6, max_line_width=200)
            value = value if len(value) <= 37 else value[:34] + "...]"
            note = {"pyhessian": "power iteration, deflation for top_n",
                    "scipy-eigsh": "ARPACK implicitly restarted Lanczos, tol=1e-4, on our operator"}.get(
                owner, f"Lanczos, converged={out.get('converged')}, max residual {out.get('residual', 0):.1e}"
                       f"{' (explicit products)' if out.get('verified') else ' (Lanczos bound)'}")
        print(f"{task:<8}{owner:<18}{ms:>9.2f}{hvps:>6g}  {value:<38}{err:>11.2e}  {note}")
        rows.append({"task": task, "method": owner, "ms": ms, "hvps": hvps, "rel_error": err,
                     "values": np.asarray(out["values"]).tolist(), "stderr": out.get("stderr")})
    summary = {"bench": "hessian", "device": str(device), "params": n_params, "dense_s": dense_s,
               "exact_top5": exact[:5].tolist(), "exact_min": float(exact[-1]), "exact_trace": exact_trace,
               "pyhessian_density": density_status, "rows": rows}
    if pyhessian is not None:
        ours, theirs = (statistics.median(times[f"{m} top1"]) for m in ("ours", "pyhessian"))
        ok = max(_rel_error(o["values"], exact) for o in runs["ours top1"]) <= 1e-5 and ours <= theirs
        summary["target_met"] = ok
        print(f"# target (λ_max rel. error ≤ 1e-5 in no more time than PyHessian's power iteration): "
              f"{'met' if ok else 'NOT met'}; time ratio ours/PyHessian = {ours / theirs:.2f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
