"""Trainings in worker processes (``Registry.use_processes``): the same numbers as in a thread, progress, Stop,
errors, and a dead worker costs nothing but the speed."""

from __future__ import annotations

import functools
import os
import signal
import time

import pytest
import torch

from sam_viz import scene
from sam_viz.config import Config
from sam_viz.jobs import Registry
from sam_viz.process_pool import ProcessRunner

CONFIGS = [Config(n_samples=128, width=16, steps=60, device="cpu"),
           Config(n_samples=128, width=16, steps=60, device="cpu").with_optimizer("sam")]


@pytest.fixture(scope="module")
def registry():
    reg = Registry(workers=1)
    reg.use_processes(threads=1)
    deadline = time.perf_counter() + 120
    while not reg.runner.ready and time.perf_counter() < deadline:  # warm: the jobs below then go to the worker
        time.sleep(0.1)
    yield reg
    reg.runner.shutdown()


def _submit(reg: Registry, key: str, configs=CONFIGS, **kwargs):
    return reg.submit(key, functools.partial(scene.train_all, configs), portable=True, **kwargs)


def test_a_training_in_a_worker_process_equals_one_in_a_thread(registry):
    job = _submit(registry, "same")
    assert job.wait(120) and job.error is None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the worker's thread count: GEMM results may depend on it
    try:
        here = scene.train_all(CONFIGS, lambda d, n: None, lambda: False)
    finally:
        torch.set_num_threads(threads)
    assert len(job.result) == 2 and all(a.equal_arrays(b) for a, b in zip(job.result, here))
    assert (job.done_units, job.total_units) == (60, 60)  # the last progress always arrives


def test_stop_reaches_the_worker_and_keeps_the_steps_done(registry):
    long = [c.replace(steps=20_000, snapshot_every=100) for c in CONFIGS]
    job = _submit(registry, "stop", long)
    deadline = time.perf_counter() + 60
    while job.done_units < 5 and time.perf_counter() < deadline:
        time.sleep(0.05)
    job.stop()
    assert job.wait(60) and job.error is None
    steps = job.result[0].n_steps
    assert 5 <= steps < 20_000 and job.result[1].n_steps == steps


def test_an_error_in_the_worker_is_the_jobs_error(registry):
    bad = [CONFIGS[0].replace(steps=10)]
    job = registry.submit("bad", functools.partial(scene.train_all, bad, "not a config"), portable=True)
    assert job.wait(60) and job.error is not None and job.result is None


def test_a_killed_worker_only_moves_the_jobs_into_threads():
    reg = Registry(workers=1)
    reg.use_processes(threads=1)
    runner: ProcessRunner = reg.runner
    deadline = time.perf_counter() + 120
    while not runner.ready and time.perf_counter() < deadline:
        time.sleep(0.1)
    first = _submit(reg, "warm", [CONFIGS[0].replace(steps=5)])
    assert first.wait(120) and first.error is None
    for pid in list(runner._executor._processes):  # the worker processes this runner started
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    job = _submit(reg, "after", [CONFIGS[0].replace(steps=5)])
    assert job.wait(120) and job.error is None and job.result[0].n_steps == 5
    assert reg.runner is None  # from now on in threads


def test_jobs_run_in_the_worker_process(registry):
    """The worker really does the work: the job's runs come back from another process id."""
    pids = registry.runner.run(_pid, lambda d, n: None, lambda: False)
    assert pids != os.getpid()


def _pid(progress, should_stop) -> int:
    return os.getpid()
