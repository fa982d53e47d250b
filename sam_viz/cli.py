"""Command line: ``python -m sam_viz train|optimizers|tasks`` (every Config field and hyperparameter a flag)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import Config
from .optim import OPTIMIZERS


def _hparam_help() -> dict[str, str]:
    """One help line per hyperparameter name, with the optimizers that take it and their defaults."""
    lines: dict[str, list[str]] = {}
    texts: dict[str, str] = {}
    for name, info in OPTIMIZERS.items():
        for key, spec in info.hparams.items():
            texts.setdefault(key, spec.help)
            lines.setdefault(key, []).append(f"{name}={spec.default}")
    return {key: f"{texts[key]} Defaults: {', '.join(lines[key])}." for key in texts}


def _add_train(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train one config; write the Run as .npz and a JSON summary",
                            description="Train one config and write OUT.npz (every array) and OUT.json (summary).")
    parser.add_argument("--out", default="run", help="output path prefix (default: run → run.npz, run.json)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
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


def _train(args: argparse.Namespace) -> int:
    from .train import run  # torch loads only for commands that train

    flat = {k: v for k, v in vars(args).items() if v is not None and k not in ("command", "out", "quiet")}
    flat = {k.removeprefix("hp_"): v for k, v in flat.items()}
    config = Config.from_flat(flat)
    total = config.steps

    def progress(step: int, _total: int, row: Any) -> None:
        if not args.quiet and (step == total or step % max(1, total // 10) == 0):
            print(f"step {step:>6}/{total}  loss {row['batch_loss']:.5g}  test acc {row['test_acc']:.4g}", file=sys.stderr)

    result = run(config, progress=progress)
    out = Path(args.out)
    npz = result.save(out.with_suffix(".npz"))
    summary = result.summary()
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({"npz": str(npz), "json": str(out.with_suffix(".json")), "final_train_loss": summary["final_train_loss"],
                      "final_test_acc": summary["final_test_acc"], "diverged": summary["diverged"],
                      "steps": summary["n_steps"], "wall_time_s": round(result.wall_time, 3)}))
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
    from .data import TASKS
    from .models import MODELS

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
    opt = sub.add_parser("optimizers", help="list the optimizer registry")
    opt.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("tasks", help="list the tasks and models")
    args = parser.parse_args(argv)
    try:
        return {"train": _train, "optimizers": _optimizers, "tasks": _tasks}[args.command](args)
    except ValueError as err:  # bad settings: one clear line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
