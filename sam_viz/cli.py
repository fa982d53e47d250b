"""Command line: ``python -m sam_viz train|optimizers|tasks`` (every Config field and hyperparameter a flag)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import hessian as H
from . import landscape as L
from .config import Config
from .curvature import over_training
from .data import TASKS
from .models import MODELS
from .optim import OPTIMIZERS
from .records import Run, json_ready, output_path
from .sweep import add_sweep_parser, sweep_main
from .train import run, setup


def _hparam_help() -> dict[str, str]:
    """One help line per hyperparameter name, with the optimizers that take it and their defaults."""
    lines: dict[str, list[str]] = {}
    texts: dict[str, str] = {}
    for name, info in OPTIMIZERS.items():
        for key, spec in info.hparams.items():
            texts.setdefault(key, spec.help)
            lines.setdefault(key, []).append(f"{name}={spec.default}")
    return {key: f"{texts[key]} Defaults: {', '.join(lines[key])}." for key in texts}


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """Every Config field and every hyperparameter as a flag (unset flags keep the defaults)."""
    group = parser.add_argument_group("config")
    for f in dataclasses.fields(Config):
        if f.name == "hparams":
            continue
        default = f.default
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=None, metavar=type(default).__name__.upper()
                           if default is not None else "FLOAT", help=f"{f.metadata['help']} (default: {default})")
    hp = parser.add_argument_group("optimizer hyperparameters (unset ones take the optimizer's default)")
    for key, text in _hparam_help().items():
        hp.add_argument(f"--{key.replace('_', '-')}", dest=f"hp_{key}", metavar="VALUE", default=None, help=text)


def _config(args: argparse.Namespace) -> Config:
    """The Config of the config and hyperparameter flags (a command's own flags are neither)."""
    flat = {k.removeprefix("hp_"): v for k, v in vars(args).items()
            if v is not None and (k.startswith("hp_") or k in Config.__dataclass_fields__)}
    return Config.from_flat(flat)


def _add_train(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train one config; write the Run as .npz and a JSON summary",
                            description="Train one config and write OUT.npz (every array) and OUT.json (summary).")
    parser.add_argument("--out", default="run", help="output path prefix (default: run → run.npz, run.json)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    _add_config_flags(parser)


def _train_config(config: Config, quiet: bool):
    total = config.steps

    def progress(step: int, _total: int, row: Any) -> None:
        if not quiet and (step == total or step % max(1, total // 10) == 0):
            print(f"step {step:>6}/{total}  loss {row['batch_loss']:.5g}  test acc {row['test_acc']:.4g}", file=sys.stderr)

    return run(config, progress=progress)


def _train(args: argparse.Namespace) -> int:
    result = _train_config(_config(args), args.quiet)
    out = Path(args.out)
    npz = result.save(output_path(out, ".npz"))
    summary = result.summary()
    _write_json(out, summary)
    print(json.dumps({"npz": str(npz), "json": str(output_path(out, ".json")), "final_train_loss": summary["final_train_loss"],
                      "final_test_acc": summary["final_test_acc"], "diverged": summary["diverged"],
                      "steps": summary["n_steps"], "wall_time_s": round(result.wall_time, 3)}))
    return 0


def _write_json(out: Path, payload: dict) -> None:
    output_path(out, ".json").write_text(json.dumps(json_ready(payload), indent=2, allow_nan=False) + "\n")


def _add_source_flags(parser: argparse.ArgumentParser, out: str) -> None:
    """--run (a saved Run) or every config flag (a config trained first), plus --out and --quiet."""
    parser.add_argument("--run", help="a Run .npz written by `train` (otherwise the config flags are trained first)")
    parser.add_argument("--out", default=out, help=f"output prefix (default: {out})")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    _add_config_flags(parser)


def _load_or_train(args: argparse.Namespace):
    """The Run to analyse and its set-up (model, loss and data rebuilt from its config)."""
    result = Run.load(args.run) if args.run else _train_config(_config(args), args.quiet)
    return result, setup(result.config)


def _add_surface(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("surface", help="2-D loss surface around a run's final weights; .npz + .json",
                            description="Loss surface on a plane through the final weights of a saved run (--run) "
                                        "or of a config trained now, with the run's trajectory projected onto it.")
    parser.add_argument("--plane", choices=("random", "pca", "hessian"), default="random",
                        help="random: filter-normalised Gaussian directions (Li et al.); pca: top-2 principal components "
                             "of the trajectory; hessian: top-2 Hessian eigenvectors (default: random)")
    parser.add_argument("--span", type=float, default=1.0, help="half-width of the grid in plane units (default 1)")
    parser.add_argument("--resolution", type=int, default=41, help="points per axis (odd puts the centre on the grid; default 41)")
    parser.add_argument("--direction-seed", type=int, default=0, help="seed of the random directions (default 0)")
    _add_source_flags(parser, "surface")


def _surface(args: argparse.Namespace) -> int:
    result, s = _load_or_train(args)
    batch = (s.x_train, s.y_train)
    final = result.final_weights
    if args.plane == "pca":
        plane = L.pca_plane(result.weights)
    elif args.plane == "hessian":
        plane = L.hessian_plane(s.model, s.loss, batch, final)
    else:
        plane = L.random_plane(s.model, args.direction_seed, origin=final)
    surf = L.surface(s.model, s.loss, batch, plane, args.span, args.resolution)
    proj = L.project(plane, result.weights, s.model, s.loss, batch)
    out = Path(args.out)
    np.savez_compressed(output_path(out, ".npz"), alpha=surf.alpha, beta=surf.beta, loss=surf.loss,
                        accuracy=np.full_like(surf.loss, np.nan) if surf.accuracy is None else surf.accuracy,
                        origin=plane.origin, d1=plane.d1, d2=plane.d2, traj_step=result.snapshot_step,
                        traj_alpha=proj.alpha, traj_beta=proj.beta, traj_off_plane=proj.off_plane,
                        traj_true_loss=proj.true_loss, traj_plane_loss=proj.plane_loss)
    summary = {"config": result.config.to_flat(), "plane": plane.kind, "explained_variance": plane.explained_variance,
               "span": args.span, "resolution": args.resolution, "evaluator": surf.evaluator, "seconds": surf.seconds,
               "center_loss": surf.center_value, "min_loss": float(np.nanmin(surf.loss)), "max_loss": float(np.nanmax(surf.loss)),
               "plane_info": plane.info}
    _write_json(out, summary)
    print(json.dumps({"npz": str(output_path(out, ".npz")), "json": str(output_path(out, ".json")),
                      "center_loss": summary["center_loss"], "seconds": round(surf.seconds, 3)}))
    return 0


def _add_hessian(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("hessian", help="Hessian spectrum at a run's final weights and λ_max over training",
                            description="Top-k eigenvalues (Lanczos, with residuals), Hutch++ trace, the spectral density "
                                        "(stochastic Lanczos quadrature) at the final weights, and λ_max at the snapshots.")
    parser.add_argument("--k", type=int, default=5, help="how many of the largest eigenvalues (default 5)")
    parser.add_argument("--exact", action="store_true", help="dense Hessian (models up to 5,000 parameters)")
    parser.add_argument("--every", type=int, default=1, help="λ_max at every k-th snapshot (default 1; 0 skips)")
    parser.add_argument("--max-samples", type=int, default=None, help="a seeded subset of the train set")
    _add_source_flags(parser, "hessian")


def _hessian(args: argparse.Namespace) -> int:
    result, s = _load_or_train(args)
    op = H.make_hvp(s.model, s.loss, (s.x_train, s.y_train), weights=result.final_weights, max_samples=args.max_samples)
    eig = H.top_eigenvalues(op, k=args.k, smallest=1, method="dense" if args.exact else "auto")
    tr = H.trace(op)
    density = H.spectral_density(op)
    arrays = {"eigenvalues": eig.eigenvalues, "residuals": eig.residuals, "density_grid": density.grid,
              "density": density.density}
    summary = {"config": result.config.to_flat(), "method": eig.method, "eigenvalues": eig.eigenvalues,
               "residuals": eig.residuals, "converged": eig.converged.tolist(), "lambda_min": eig.smallest,
               "trace": tr.estimate, "trace_stderr": tr.stderr, "n_samples": op.n_samples}
    if args.every > 0:
        ct = over_training(result, every=args.every, exact=args.exact, max_samples=args.max_samples)
        arrays.update(step=ct.step, lambda_max=ct.lambda_max, lambda_max_residual=ct.residual)
        summary["lambda_max_over_training"] = {"step": ct.step, "lambda_max": ct.lambda_max, "residual": ct.residual}
    out = Path(args.out)
    np.savez_compressed(output_path(out, ".npz"), **arrays)
    _write_json(out, summary)
    print(json.dumps({"npz": str(output_path(out, ".npz")), "json": str(output_path(out, ".json")),
                      "lambda_max": float(eig.eigenvalues[0]), "residual": float(eig.residuals[0]),
                      "trace": tr.estimate, "trace_stderr": tr.stderr}))
    return 0


def _optimizers(args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps({name: {**{k: v for k, v in dataclasses.asdict(info).items() if k != "hparams"},
                                 "hparams": {k: dataclasses.asdict(s) for k, s in info.hparams.items()}}
                          for name, info in OPTIMIZERS.items()}, indent=2, default=str))
        return 0
    for name, info in OPTIMIZERS.items():
        print(f"{name:<10} {info.label:<13} [{info.status}] {info.description}")
        print(f"{'':<10} {info.update_rule}")
        print(f"{'':<10} {info.paper}  {info.paper_url}")
        for key, spec in info.hparams.items():
            rng = f"{list(spec.choices)}" if spec.kind == "choice" else ("true|false" if spec.kind == "bool" else f"[{spec.low:g}, {spec.high:g}]")
            print(f"{'':<12} {key:<16} default {str(spec.default):<14} {rng:<22}{' log' if spec.log else ''}")
    return 0


def _tasks(args: argparse.Namespace) -> int:
    for name, info in TASKS.items():
        print(f"{name:<16} {info.kind:<15} {info.description}")
    print()
    for name, info in MODELS.items():
        print(f"{name:<16} {'model':<15} {info.description}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sam_viz", description="sam-viz engine: train SAM-family optimizers and inspect them.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_surface(sub)
    _add_hessian(sub)
    add_sweep_parser(sub)
    opt = sub.add_parser("optimizers", help="list the optimizer registry")
    opt.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("tasks", help="list the tasks and models")
    args = parser.parse_args(argv)
    try:
        return {"train": _train, "surface": _surface, "hessian": _hessian, "optimizers": _optimizers,
                "tasks": _tasks, "sweep": sweep_main}[args.command](args)
    except (ValueError, OSError) as err:  # bad settings or a missing file: one clear line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
