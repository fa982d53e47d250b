"""Command line: ``python -m sam_viz train|surface|hessian|sweep|optimizers|tasks`` (every Config field and
hyperparameter a flag).

Long commands show a progress bar on stderr (``--quiet`` silences it); stdout carries only their JSON summary.
Ctrl-C during ``train``, ``sweep``, the λ_max-over-training part of ``hessian`` or between the levels of
``surface`` stops at the next step, writes what was computed, says so on stderr and exits with 130; a second
Ctrl-C aborts at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import dataset_store
from . import hessian as H
from . import landscape as L
from .config import Config
from .curvature import over_training
from .data import CSV_TASK, TASKS
from .models import MODELS
from .optim import OPTIMIZERS
from .progress import STOPPED_EXIT_CODE, ProgressBar, StopOnInterrupt
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
        metavar = "HASH" if f.name == "data" else type(default).__name__.upper() if default is not None else "FLOAT"
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=None, metavar=metavar, help=f"{f.metadata['help']} (default: {default})")
    hp = parser.add_argument_group("optimizer hyperparameters (unset ones take the optimizer's default; each also "
                                   "as --hp-NAME, the only spelling where the command has its own --NAME)")
    for key, text in _hparam_help().items():
        flag = key.replace("_", "-")
        # a command's own flag wins (hessian's --k, LookSAM's k): the hyperparameter is then --hp-k only
        flags = [f for f in (f"--{flag}", f"--hp-{flag}") if f not in parser._option_string_actions]
        hp.add_argument(*flags, dest=f"hp_{key}", metavar="VALUE", default=None, help=text)


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
    parser.add_argument("--csv", metavar="PATH", help="train on your own CSV table (numeric features and a label "
                        "column; --test-fraction is the held-out share): it is kept in the data store (see "
                        "SAM_VIZ_DATA_DIR) and the run's task is csv with data=its hash")
    parser.add_argument("--label", metavar="COLUMN", help="the --csv table's label column (default: the last)")
    _add_config_flags(parser)


class _Stopped(Exception):
    """Ctrl-C before there was anything to write (the message says so)."""


def _stopped(message: str) -> int:
    print(message, file=sys.stderr)
    return STOPPED_EXIT_CODE


def _train_config(config: Config, quiet: bool, should_stop: Any = None):
    """``train.run`` with a progress bar on stderr (loss of the step's batch, the latest test accuracy)."""
    with ProgressBar(config.steps, "steps", "train", quiet=quiet) as bar:
        def progress(step: int, _total: int, row: Any) -> None:
            bar.update(step, loss=row["batch_loss"], test_acc=row["test_acc"])

        return run(config, progress=progress, should_stop=should_stop)


def _train(args: argparse.Namespace) -> int:
    if args.csv is not None:
        args.task, args.data = CSV_TASK, dataset_store.put(args.csv, args.label)
    elif args.label is not None:
        raise ValueError("Invalid --label: it names the label column of a --csv table; give --csv too")
    config = _config(args)
    with StopOnInterrupt() as stop:
        result = _train_config(config, args.quiet, stop)
    out = Path(args.out)
    npz = result.save(output_path(out, ".npz"))
    summary = result.summary()
    _write_json(out, summary)
    print(json.dumps({"npz": str(npz), "json": str(output_path(out, ".json")), "final_train_loss": summary["final_train_loss"],
                      "final_test_acc": summary["final_test_acc"], "diverged": summary["diverged"],
                      "stopped": summary["stopped"], "steps": summary["n_steps"],
                      "wall_time_s": round(result.wall_time, 3)}))
    if result.stopped:
        return _stopped(f"stopped after {result.n_steps:,} of {config.steps:,} steps; wrote {npz} and "
                        f"{output_path(out, '.json')}")
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
    if args.run:
        result = Run.load(args.run)
    else:
        config = _config(args)
        with StopOnInterrupt() as stop:
            result = _train_config(config, args.quiet, stop)
        if result.stopped:
            raise _Stopped(f"stopped while training, after {result.n_steps:,} of {config.steps:,} steps; nothing written")
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
    surf = None
    with StopOnInterrupt() as stop, ProgressBar(args.resolution ** 2, "points", "surface", quiet=args.quiet) as bar:
        for surf in L.surfaces_progressive(s.model, s.loss, batch, plane, args.span, args.resolution):
            bar.update(surf.loss.size, grid=f"{surf.loss.shape[1]}x{surf.loss.shape[0]}")
            if stop() and surf.loss.size < args.resolution ** 2:
                break  # keep the coarse level computed so far
    stopped = surf.loss.size < args.resolution ** 2
    proj = L.project(plane, result.weights, s.model, s.loss, batch)
    out = Path(args.out)
    np.savez_compressed(output_path(out, ".npz"), alpha=surf.alpha, beta=surf.beta, loss=surf.loss,
                        accuracy=np.full_like(surf.loss, np.nan) if surf.accuracy is None else surf.accuracy,
                        origin=plane.origin, d1=plane.d1, d2=plane.d2, traj_step=result.snapshot_step,
                        traj_alpha=proj.alpha, traj_beta=proj.beta, traj_off_plane=proj.off_plane,
                        traj_true_loss=proj.true_loss, traj_plane_loss=proj.plane_loss)
    summary = {"config": result.config.to_flat(), "plane": plane.kind, "explained_variance": plane.explained_variance,
               "span": args.span, "resolution": len(surf.alpha), "stopped": stopped, "evaluator": surf.evaluator,
               "seconds": surf.seconds,
               "center_loss": surf.center_value, "min_loss": float(np.nanmin(surf.loss)), "max_loss": float(np.nanmax(surf.loss)),
               "plane_info": plane.info}
    _write_json(out, summary)
    print(json.dumps({"npz": str(output_path(out, ".npz")), "json": str(output_path(out, ".json")),
                      "center_loss": summary["center_loss"], "stopped": stopped, "seconds": round(surf.seconds, 3)}))
    if stopped:
        return _stopped(f"stopped after {surf.loss.size:,} of {args.resolution ** 2:,} points (a {len(surf.alpha)}x"
                        f"{len(surf.beta)} grid); wrote {output_path(out, '.npz')} and {output_path(out, '.json')}")
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
    n_snapshots, stopped = 0, False
    if args.every > 0:
        last = len(result.snapshot_step) - 1
        n_snapshots = len(set(range(0, last + 1, args.every)) | {last})  # as over_training picks them
        with StopOnInterrupt() as stop, ProgressBar(n_snapshots, "snapshots", "lambda_max over training",
                                                    quiet=args.quiet) as bar:
            ct = over_training(result, every=args.every, exact=args.exact, max_samples=args.max_samples,
                               progress=lambda done, _total: bar.update(done), should_stop=stop)
        stopped = len(ct.step) < n_snapshots
        arrays.update(step=ct.step, lambda_max=ct.lambda_max, lambda_max_residual=ct.residual)
        summary["lambda_max_over_training"] = {"step": ct.step, "lambda_max": ct.lambda_max, "residual": ct.residual,
                                               "stopped": stopped}
    out = Path(args.out)
    np.savez_compressed(output_path(out, ".npz"), **arrays)
    _write_json(out, summary)
    print(json.dumps({"npz": str(output_path(out, ".npz")), "json": str(output_path(out, ".json")),
                      "lambda_max": float(eig.eigenvalues[0]), "residual": float(eig.residuals[0]),
                      "trace": tr.estimate, "trace_stderr": tr.stderr}))
    if stopped:
        return _stopped(f"stopped after {len(ct.step):,} of {n_snapshots:,} snapshots of lambda_max over training; "
                        f"wrote {output_path(out, '.npz')} and {output_path(out, '.json')}")
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
            print(f"{'':<12} {key:<16} default {spec.default!s:<14} {rng:<22}{' log' if spec.log else ''}")
    return 0


def _tasks(args: argparse.Namespace) -> int:
    for name, info in TASKS.items():
        print(f"{name:<16} {info.kind:<15} {info.description}")
    print(f"{CSV_TASK:<16} {'classification':<15} Your own CSV table: `train --csv FILE --label COLUMN`.")
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
    except _Stopped as err:
        return _stopped(str(err))
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the stoppable parts
        return _stopped("aborted (Ctrl-C)")
