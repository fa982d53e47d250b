"""The CUDA path: training, stacked sweeps, the adapter, Hessian estimates and surfaces on a GPU give the CPU's
numbers (float64, to round-off). Skipped where CUDA is absent; ``benchmarks/gpu_check.sh`` runs this file on a
GPU machine, with pytest or, where pytest is not installed, as ``python tests/test_cuda.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sam_viz import hessian, landscape  # noqa: E402
from sam_viz.config import Config  # noqa: E402
from sam_viz.optim import OPTIMIZERS, make  # noqa: E402
from sam_viz.sweep import run_grid  # noqa: E402
from sam_viz.train import run, setup  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

BASE = Config(n_samples=128, width=16, steps=20, snapshot_every=5, dtype="float64")


def _both(config: Config):
    return run(config.replace(device="cpu")), run(config.replace(device="cuda"))


def test_every_optimizer_trains_on_cuda_as_on_the_cpu():
    for name in OPTIMIZERS:
        cpu, gpu = _both(BASE.replace(optimizer=name))
        assert gpu.device.startswith("cuda")
        np.testing.assert_allclose(gpu.weights, cpu.weights, rtol=1e-8, atol=1e-10, err_msg=name)
        np.testing.assert_allclose(gpu.grad_evals, cpu.grad_evals, err_msg=name)


def test_minibatch_training_on_cuda_matches_the_cpu():
    cpu, gpu = _both(BASE.replace(optimizer="sam", batch_size=32))
    np.testing.assert_allclose(gpu.weights, cpu.weights, rtol=1e-8, atol=1e-10)


def test_a_batched_grid_on_cuda_matches_the_cpu():
    grids = [run_grid(BASE.replace(optimizer="sam", device=d, steps=10), x=("rho", [0.01, 0.1]), y=("lr", [0.05, 0.1]),
                      strategy="batched", lambda_max=False) for d in ("cpu", "cuda")]
    np.testing.assert_allclose(grids[1].final_train_loss, grids[0].final_train_loss, rtol=1e-8)


def test_the_adapter_steps_on_cuda():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).cuda().double()
    x, y = torch.randn(16, 2, device="cuda", dtype=torch.float64), torch.randn(16, 1, device="cuda", dtype=torch.float64)
    opt = make("sam", model.parameters(), lr=0.1, rho=0.05)

    def closure():
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        return loss

    first = float(closure())
    for _ in range(20):
        opt.step(closure)
        closure()
    assert float(closure()) < first


def test_hessian_and_surface_on_cuda_match_the_cpu(devices=("cpu", "cuda")):
    eigen, loss = {}, {}
    for device in devices:
        s = setup(BASE.replace(device=device))  # θ_0 of the seed, the same on every device
        batch = (s.x_train, s.y_train)
        eigen[device] = hessian.top_eigenvalues(s.model, s.loss, batch, k=2, seed=0).eigenvalues
        plane = landscape.random_plane(s.model, seed=0)
        loss[device] = landscape.surface(s.model, s.loss, batch, plane, span=1.0, resolution=11).loss
    np.testing.assert_allclose(eigen[devices[1]], eigen[devices[0]], rtol=1e-6)
    np.testing.assert_allclose(loss[devices[1]], loss[devices[0]], rtol=1e-6)


if __name__ == "__main__":  # the GPU machine may lack pytest
    if not torch.cuda.is_available():
        print("CUDA is not available: nothing to check")
        sys.exit(0)
    failed = 0
    for test_name, fn in list(globals().items()):
        if test_name.startswith("test_") and callable(fn):
            try:
                fn()
                print(f"PASS {test_name}")
            except Exception as error:  # report every test, then fail
                failed += 1
                print(f"FAIL {test_name}: {type(error).__name__}: {error}")
    sys.exit(1 if failed else 0)
