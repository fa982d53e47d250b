"""The Ray backend on Ray's embedded local mode: every cell equals the local grid's, stop keeps the finished cells,
a chunk that cannot be trained marks its cells, the command line, and no Ray import unless asked for."""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import ray

from sam_viz import ray_backend
from sam_viz.config import Config
from sam_viz.sweep import (
    CELL_FIELDS,
    STEP_FIELDS,
    Grid,
    add_sweep_parser,
    resolve_backend,
    run_grid,
    sweep_main,
    train_chunk,
)

ROOT = Path(__file__).resolve().parents[1]
BASE = Config(n_samples=96, width=8, steps=12, device="cpu", dtype="float64")
X, Y = ("rho", [0.0, 0.1]), ("lr", [0.05, 0.5])


@pytest.fixture(scope="module")
def embedded_ray():
    """Ray inside this process, 2 CPUs, on loopback."""
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    yield
    ray.shutdown()


def assert_cells_equal(grid: Grid, reference: Grid, mask: np.ndarray | None = None) -> None:
    """Every array of ``grid`` equals ``reference``'s (float64 round-off), on the cells of ``mask``."""
    mask = np.ones(grid.shape, dtype=bool) if mask is None else mask
    for name in (*STEP_FIELDS, *CELL_FIELDS):
        np.testing.assert_allclose(getattr(grid, name)[mask], getattr(reference, name)[mask], rtol=1e-10, atol=1e-12,
                                   equal_nan=True, err_msg=name)


@pytest.fixture(scope="module")
def local_grid():
    return run_grid(BASE, X, Y, seeds=2, strategy="batched")


def test_ray_equals_local_cell_for_cell(embedded_ray, local_grid):
    calls = []
    grid = run_grid(BASE, X, Y, seeds=2, backend="ray", progress=lambda *a: calls.append(a))
    assert grid.strategy == "ray" and grid.device == "cpu" and not grid.stopped
    assert not grid.failed.any() and grid.failure == ""
    assert np.isfinite(grid.lambda_max).all()  # computed by the workers, each at its cell's θ_n
    assert_cells_equal(grid, local_grid)
    # progress in cell-steps, never backwards, ending at the total (a fast machine finishes this small grid
    # within one GRID_PROGRESS_EVERY_S, so one report may be all there is; streaming is the next test's)
    done = [c[0] for c in calls]
    assert calls and done == sorted(done) and done[-1] == calls[-1][1] == 8 * BASE.steps


def test_progress_arrives_while_the_chunks_train(embedded_ray):
    """As on one machine, progress counts the steps of the running chunks, not only finished chunks."""
    steps = 3000  # a few seconds a chunk: reports come every GRID_PROGRESS_EVERY_S
    calls = []
    run_grid(BASE.replace(steps=steps, dtype="float32"), X, Y, backend="ray", progress=lambda *a: calls.append(a[0]))
    total = 4 * steps
    assert calls == sorted(calls) and calls[-1] == total
    assert any(0 < done < total and done % steps for done in calls), calls  # between whole cells: within a chunk


def test_stop_cancels_the_rest_and_keeps_finished_cells(embedded_ray):
    config = BASE.replace(steps=300)  # chunks long enough that some are still waiting when Stop comes
    local = run_grid(config, X, Y, seeds=2, strategy="batched")
    calls = []
    grid = run_grid(config, X, Y, seeds=2, backend="ray", progress=lambda *a: calls.append(a),
                    should_stop=lambda: any(c[2]["cells_done"] for c in calls),  # after the first whole cell
                    memory_budget_mb=0.01)  # a cell a chunk
    finished = grid.n_steps > 0
    assert grid.stopped and calls
    # the chunks still running when Stop came are cancelled: only whole cells are kept (8 chunks on 2 CPUs)
    assert finished.sum() >= calls[-1][2]["cells_done"] >= 1 and not finished.all()
    assert (grid.n_steps[finished] == config.steps).all()
    assert_cells_equal(grid, local, finished)
    assert np.isnan(grid.final_train_loss[~finished]).all() and np.isnan(grid.batch_loss[~finished]).all()
    assert not grid.failed.any()
    assert run_grid(BASE, X, Y, backend="ray", should_stop=lambda: True).n_steps.sum() == 0


def test_a_chunk_that_cannot_be_trained_marks_its_cells(embedded_ray, local_grid, monkeypatch, tmp_path):
    def dies_at_large_lr(configs, lambda_max, budget, relay, chunk):  # nested: Ray ships it by value to the workers
        if configs[0].hp["lr"] > 0.1:
            os._exit(1)  # the worker process dies, on every try
        return train_chunk(configs, lambda_max, budget)

    monkeypatch.setattr(ray_backend, "MAX_RETRIES", 1)
    monkeypatch.setattr(ray_backend, "_train_chunk", ray.remote(max_retries=1)(dies_at_large_lr))
    grid = run_grid(BASE, X, Y, seeds=2, backend="ray", memory_budget_mb=0.01)  # a cell a chunk
    large_lr = np.zeros(grid.shape, dtype=bool)
    large_lr[:, 1, :] = True
    np.testing.assert_array_equal(grid.failed, large_lr)
    assert "4 of 8 cells could not be trained" in grid.failure and "tried 2 times" in grid.failure
    assert_cells_equal(grid, local_grid, ~large_lr)
    assert (grid.n_steps[large_lr] == 0).all() and np.isnan(grid.final_train_loss[large_lr]).all()
    loaded = Grid.load(grid.save(tmp_path / "g.npz"))
    np.testing.assert_array_equal(loaded.failed, grid.failed)
    assert loaded.failure == grid.failure and grid.summary()["failure"] == grid.failure


def test_command_line_backend_ray(embedded_ray, local_grid, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_sweep_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["sweep", "--x", "rho", "--x-values", "0,0.1", "--y", "lr", "--y-values", "0.05,0.5",
                              "--seeds", "2", "--set", "n_samples=96", "--set", "width=8", "--set", "steps=12",
                              "--set", "device=cpu", "--set", "dtype=float64", "--backend", "ray", "--quiet",
                              "--out", str(tmp_path / "sw")])
    assert sweep_main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["strategy"] == "ray" and summary["cells"] == 8 and summary["failed"] == 0
    assert_cells_equal(Grid.load(tmp_path / "sw.npz"), local_grid)


def test_auto_backend_follows_ray_address(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert resolve_backend("auto") == "local" and resolve_backend("auto", "127.0.0.1:6379") == "ray"
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    assert resolve_backend("auto") == "ray" and resolve_backend("local") == "local"
    with pytest.raises(ValueError, match="backend"):
        resolve_backend("dask")
    with pytest.raises(ValueError, match="local backend"):
        run_grid(BASE, X, Y, backend="local", address="127.0.0.1:6379")


def test_ray_is_not_imported_unless_asked_for():
    code = """
import sys
import app  # noqa: F401  (the home page: its import starts the app's modules)
import sam_viz.cli, sam_viz.jobs, sam_viz.process_pool, sam_viz.scene, sam_viz.sweep, sam_viz.ui
from sam_viz.config import Config
grid = sam_viz.sweep.run_grid(Config(n_samples=64, width=4, steps=2, device="cpu"), ("rho", [0.1]), ("lr", [0.1]),
                              backend="auto", lambda_max=False)
assert grid.strategy != "ray"
print(sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")))
"""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_app_jobs_run_on_ray(embedded_ray):
    from sam_viz import scene
    from sam_viz.jobs import Registry

    registry = Registry(workers=2)
    registry.use_ray()
    assert registry.runner.ready or _wait(lambda: registry.runner.ready, 60)

    def where(_progress, _should_stop):  # nested: shipped by value
        return os.getpid()

    job = registry.submit("pid", where, portable=True)
    assert job.wait(120) and job.error is None and job.result != os.getpid()  # a Ray worker ran it

    configs = [BASE.replace(optimizer="sam", rho=0.1), BASE.replace(optimizer="sgd")]
    job = registry.submit("train", functools.partial(scene.train_all, configs), portable=True)
    assert job.wait(120) and job.error is None
    assert job.done_units == job.total_units == BASE.steps  # the last progress is relayed
    for remote, here in zip(job.result, scene.train_all(configs, lambda *_: None, lambda: False)):
        np.testing.assert_allclose(remote.train_loss, here.train_loss, rtol=1e-10, atol=1e-12)

    long = [BASE.replace(steps=20_000, snapshot_every=1000)]
    job = registry.submit("long", functools.partial(scene.train_all, long), portable=True)
    assert _wait(lambda: job.done_units > 0, 120)
    job.stop()  # reaches the task through the relay: the run keeps its steps so far
    assert job.wait(120) and job.error is None
    assert job.result[0].stopped and 0 < job.result[0].n_steps < 20_000

    job = registry.submit("bad", functools.partial(scene.train_all, [BASE.replace(batch_size=10_000)]), portable=True)
    assert job.wait(120) and job.error.startswith("ValueError: Invalid batch_size")  # raised as in a thread
    assert registry.runner is not None  # a job's own error does not lose the cluster


def _wait(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("n_cells, workers", [(49, 2), (49, 1), (8, 2), (3, 4), (1, 2)])
def test_chunks_share_the_cells_among_the_workers(n_cells, workers):
    from sam_viz.sweep import _chunks, _plan

    rows = 7 if n_cells == 49 else 1  # at most 15 values an axis
    plan = _plan(BASE, ("rho", [0.01 * (k + 1) for k in range(n_cells // rows)]),
                 ("lr", [0.1 * (k + 1) for k in range(rows)]), 1)
    wanted = workers * ray_backend.CHUNKS_PER_WORKER
    chunks = _chunks(plan, 512, min_chunks=wanted)
    assert sorted(k for chunk in chunks for k in chunk) == list(range(n_cells))  # every cell once
    assert all(chunks) and min(n_cells, workers) <= len(chunks) <= min(n_cells, wanted)  # none empty, none idle
    assert len({len(chunk) for chunk in chunks[:-1]}) <= 1 and len(chunks[-1]) <= len(chunks[0])  # even
