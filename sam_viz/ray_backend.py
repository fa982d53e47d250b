"""Grids and the app's jobs on a Ray cluster: each chunk of cells is one Ray task, trained stacked as ``run_grid``
trains it locally, and ``RayRunner`` runs the job queue's portable jobs (trainings) as tasks.

Configs travel to the workers and numpy arrays come back; no data set travels: a worker builds the chunk's data
and model from its configs (``sweep.train_chunk``), so every machine needs sam-viz and its pinned packages (Ray
adds the driver's working directory to the workers' ``sys.path``; run from the repository root on each machine).
A worker that dies costs only its chunk, which Ray runs again elsewhere (``MAX_RETRIES``); a chunk whose retries
are spent leaves its cells marked ``Grid.failed``, and the others are kept.

Imported by ``sweep.run_grid`` only when the Ray backend is asked for, and by ``jobs.Registry.use_ray`` only when
the app is started with ``RAY_ADDRESS`` set.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import RayError, RayTaskError

from .jobs import WorkersLost
from .sweep import _chunks, train_chunk

if TYPE_CHECKING:
    from .sweep import _Plan, _Progress, _Sink
    from .train import StopFn

MAX_RETRIES = 3  # runs of a chunk after its worker died, before its cells are marked failed
# chunks per worker: the largest stacks the memory budget allows, one per worker at least (a stack of 13 moons cells
# takes 1.4x the time per cell of one of 49, a stack of 7 twice; smaller chunks would give finer progress)
CHUNKS_PER_WORKER = 1
POLL_S = 0.1  # how often the driver looks for finished chunks, a job's progress and a stop
PROGRESS_EVERY_S = 0.2  # a job's task reports progress (and learns of a stop) at most this often
# a grid's chunks report their steps, and the driver asks for them, at most this often: on a small machine the
# relay's messages take CPU from the chunks (0.2 s cost 1.59x -> 1.43x of scaling on 2 cores)
GRID_PROGRESS_EVERY_S = 1.0

_LOG = logging.getLogger(__name__)


@ray.remote(max_retries=MAX_RETRIES)
def _train_chunk(configs: Sequence[Any], lambda_max: bool, memory_budget_mb: float, relay: Any,
                 chunk: int) -> tuple[str, list[dict[str, Any]]]:
    """In a worker: ``sweep.train_chunk``, its steps done sent to ``relay`` (at most every
    ``GRID_PROGRESS_EVERY_S``, without waiting for the answer)."""
    sent = [time.monotonic()]

    def progress(done: int) -> None:
        if (now := time.monotonic()) - sent[0] >= GRID_PROGRESS_EVERY_S:
            sent[0] = now
            relay.report.remote(chunk, done, 0)

    return train_chunk(configs, lambda_max, memory_budget_mb, progress=progress)

_CONNECT_LOCK = threading.Lock()  # the app's job threads may connect at once


def connect(address: str | None = None) -> None:
    """Join the cluster at ``address`` (None: ``RAY_ADDRESS``, or a Ray started inside this process) unless this
    process has joined one already."""
    with _CONNECT_LOCK:
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

    Progress counts the finished cells' steps and the steps each running chunk reported (``_train_chunk``). A stop
    cancels the chunks not finished (their cells stay NaN with n_steps 0) and keeps the others.
    """
    connect(address)
    slots, resources = workers(plan.base.device)
    chunks = _chunks(plan, memory_budget_mb, min_chunks=slots * CHUNKS_PER_WORKER)
    task = _train_chunk.options(name="train_chunk", **resources)  # the workers' process title: ray::train_chunk
    relay = _Relay.remote()  # each running chunk's steps done, for progress between chunks
    pending = {task.remote([plan.cells[k] for k in ks], lambda_max, memory_budget_mb, relay, i): (i, ks)
               for i, ks in enumerate(chunks)}
    devices: set[str] = set()
    failed: list[int] = []
    reasons: list[str] = []
    done, last, asked = 0, 0, time.monotonic()
    reached: dict[int, int] = {}  # steps each running chunk has reported
    while pending:
        if should_stop is not None and should_stop():
            for ref in pending:
                ray.cancel(ref)
            sink.stopped = True
            break
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=POLL_S)
        for ref in ready:
            chunk, ks = pending.pop(ref)
            relay.forget.remote(chunk)
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
        if pending and (now := time.monotonic()) - asked >= GRID_PROGRESS_EVERY_S:
            asked = now  # the running chunks' steps, as a local grid reports them (a retried chunk never goes back)
            for chunk, steps in ray.get(relay.steps.remote()).items():
                reached[chunk] = max(reached.get(chunk, 0), steps)
        cell_steps = done * plan.steps + sum(len(ks) * reached.get(chunk, 0) for chunk, ks in pending.values())
        if cell_steps != last:
            last = cell_steps
            report(cell_steps, {"phase": "train", "cells_done": done, "n_cells": len(plan.cells)})
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


# ------------------------------------------------------------------------------------------------------ app jobs


@ray.remote(num_cpus=0)
class _Relay:
    """Each running job's (or grid chunk's) last progress, out of its task, and its Stop, into it (one actor per
    runner, one per grid)."""

    def __init__(self) -> None:
        self.progress: dict[int, tuple[int, int]] = {}
        self.stops: set[int] = set()

    def report(self, job: int, done: int, total: int) -> bool:
        self.progress[job] = (done, total)
        return job in self.stops

    def poll(self, job: int) -> tuple[int, int] | None:
        return self.progress.get(job)

    def steps(self) -> dict[int, int]:
        """Steps done by each reporting chunk of a grid."""
        return {job: done for job, (done, _) in self.progress.items()}

    def stop(self, job: int) -> None:
        self.stops.add(job)

    def forget(self, job: int) -> None:
        self.progress.pop(job, None)
        self.stops.discard(job)


@ray.remote(num_cpus=1, max_retries=MAX_RETRIES)
def _run_job(work: Callable[..., Any], relay: Any, job: int) -> Any:
    """In a worker: ``work(progress, should_stop)``, progress sent to and Stop read from ``relay``."""
    state = {"stop": False, "sent": -PROGRESS_EVERY_S}

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - state["sent"] >= PROGRESS_EVERY_S or done >= total:
            state["sent"] = now
            state["stop"] = ray.get(relay.report.remote(job, done, total))

    return work(progress, lambda: state["stop"])


class RayRunner:
    """Runs portable jobs (``jobs.Registry.submit(portable=True)``) as Ray tasks, one CPU each, with the
    ``ProcessRunner`` interface. It joins the cluster in the background; until then jobs run in the server.

    Args:
        address: the cluster's HOST:PORT (None: ``RAY_ADDRESS``).
    """

    def __init__(self, address: str | None = None) -> None:
        self._relay: Any = None
        self._ids = itertools.count()
        self._joined = threading.Event()
        threading.Thread(target=self._join, args=(address,), name="sam-viz ray join", daemon=True).start()

    def _join(self, address: str | None) -> None:
        try:
            connect(address)
            self._relay = _Relay.remote()
        except Exception:  # the server goes on: its jobs run in threads, as without a cluster
            _LOG.exception("sam-viz: could not join the Ray cluster at %s; jobs run in this server", address)
            return
        self._joined.set()

    @property
    def ready(self) -> bool:
        """Joined the cluster."""
        return self._joined.is_set()

    def run(self, work: Callable[..., Any], progress: Callable[[int, int], None],
            should_stop: Callable[[], bool]) -> Any:
        """``work(progress, should_stop)`` on the cluster (``work`` must pickle); blocks the calling (job) thread
        until it returns, relaying progress and a stop. Raises what ``work`` raised, or ``jobs.WorkersLost``
        when the cluster could not run it (its retries spent, the cluster gone)."""
        job = next(self._ids)
        told_stop = False
        try:
            ref = _run_job.remote(work, self._relay, job)
            while not ray.wait([ref], timeout=POLL_S)[0]:
                if (reported := ray.get(self._relay.poll.remote(job))) is not None:
                    progress(*reported)
                if not told_stop and should_stop():
                    self._relay.stop.remote(job)
                    told_stop = True
            if (reported := ray.get(self._relay.poll.remote(job))) is not None:
                progress(*reported)
            return ray.get(ref)
        except RayTaskError as err:  # the work's own exception, as it would be raised in a thread
            raise err.cause from None
        except RayError as err:
            raise WorkersLost(_reason(err)) from err
        finally:
            if self._relay is not None:
                self._relay.forget.remote(job)
