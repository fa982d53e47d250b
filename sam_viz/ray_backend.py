"""Grids on a Ray cluster: each chunk of cells is one Ray task, trained stacked as ``run_grid`` trains it locally.

Configs travel to the workers and numpy arrays come back; no data set travels: a worker builds the chunk's data
and model from its configs (``sweep.train_chunk``), so every machine needs sam-viz and its pinned packages (Ray
adds the driver's working directory to the workers' ``sys.path``; run from the repository root on each machine).
A worker that dies costs only its chunk, which Ray runs again elsewhere (``MAX_RETRIES``); a chunk whose retries
are spent leaves its cells marked ``Grid.failed``, and the others are kept.

Imported by ``sweep.run_grid`` only when the Ray backend is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import ray
from ray.exceptions import RayError

from .sweep import _chunks, train_chunk

if TYPE_CHECKING:
    from .sweep import _Plan, _Progress, _Sink
    from .train import StopFn

MAX_RETRIES = 3  # runs of a chunk after its worker died, before its cells are marked failed
CHUNKS_PER_WORKER = 4  # a stack's step costs ~linearly in its cells: small chunks balance the load and lose less
POLL_S = 0.1  # how often the driver looks for finished chunks and a stop

_train_chunk = ray.remote(max_retries=MAX_RETRIES)(train_chunk)


def connect(address: str | None = None) -> None:
    """Join the cluster at ``address`` (None: ``RAY_ADDRESS``, or a Ray started inside this process) unless this
    process has joined one already."""
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)  # workers' output would mix with the command's stdout


def workers(device: str) -> tuple[int, dict[str, float]]:
    """(tasks the cluster runs at once, the resources of one): a GPU each where the cluster has GPUs and the
    config may use them, else a CPU each."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0)) if device != "cpu" else 0
    if gpus:
        return gpus, {"num_gpus": 1}
    return max(1, int(resources.get("CPU", 1))), {"num_cpus": 1}


def train_grid(plan: _Plan, sink: _Sink, report: _Progress, should_stop: StopFn | None, memory_budget_mb: float,
               lambda_max: bool, address: str | None) -> str:
    """Train ``plan``'s cells on the cluster into ``sink``, one task per chunk; returns the devices that ran them.

    Progress is reported as chunks finish. A stop cancels the chunks not finished (their cells stay NaN with
    n_steps 0) and keeps the others.
    """
    connect(address)
    slots, resources = workers(plan.base.device)
    chunks = _chunks(plan, memory_budget_mb, min_chunks=slots * CHUNKS_PER_WORKER)
    task = _train_chunk.options(**resources)
    pending = {task.remote([plan.cells[k] for k in ks], lambda_max): ks for ks in chunks}
    devices: set[str] = set()
    failed: list[int] = []
    reasons: list[str] = []
    done = 0
    while pending:
        if should_stop is not None and should_stop():
            for ref in pending:
                ray.cancel(ref)
            sink.stopped = True
            break
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=POLL_S)
        for ref in ready:
            ks = pending.pop(ref)
            try:
                device, records = ray.get(ref)
            except RayError as err:  # the worker died MAX_RETRIES + 1 times, or the chunk raised
                failed += ks
                reasons.append(_reason(err))
                continue
            devices.add(device)
            for k, record in zip(ks, records):
                sink.add(k, record)
            done += len(ks)
            report(done * plan.steps, {"phase": "train", "cells_done": done, "n_cells": len(plan.cells)})
    if failed:
        sink.fail(failed, f"{len(failed)} of {len(plan.cells)} cells could not be trained on the Ray cluster "
                          f"({_distinct(reasons)}); the other cells are complete")
    return ", ".join(sorted(devices)) or plan.base.device


def _reason(err: RayError) -> str:
    """What went wrong, in one line: the chunk's own exception, or Ray's first line (a worker died, a node was
    lost)."""
    cause = getattr(err, "cause", None)  # a RayTaskError wraps what the chunk raised
    if isinstance(cause, Exception):
        return f"{type(cause).__name__}: {cause}"
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else 'no message'} (tried {MAX_RETRIES + 1} times)"


def _distinct(reasons: Sequence[str]) -> str:
    return "; ".join(dict.fromkeys(reasons))
