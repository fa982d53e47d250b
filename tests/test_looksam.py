"""LookSAM against pytorch-optimizer 4.1.0's ``LookSAM``, its invariants (k = 1 is SAM, g_v is orthogonal to s per
tensor), its cost (two gradients every k-th step, one in between), stacked runs and sweep cells."""

from __future__ import annotations

import json

import numpy as np
import pytest
import pytorch_optimizer as po
import torch
from test_optim import BASE_KW, _assert_paths_close, _batches, _model, _ours, _train
from test_sweep import SMALL, assert_cell_equals_run

from sam_viz.cli import main
from sam_viz.optim import make
from sam_viz.optim.looksam import orthogonal_part
from sam_viz.records import Run
from sam_viz.sweep import run_grid
from sam_viz.train import run, setup, train

STEPS = 8


@pytest.mark.parametrize("k,alpha,adaptive,base", [
    (1, 0.7, False, "sgd"),
    (3, 0.7, False, "sgd"),
    (2, 0.3, True, "sgd"),
    (3, 0.7, False, "adamw"),
])
def test_looksam_equals_pytorch_optimizer(k, alpha, adaptive, base):
    batches = _batches(STEPS)
    if base == "sgd":
        kw, base_cls = BASE_KW, torch.optim.SGD
    else:
        kw, base_cls = {"lr": 1e-2, "weight_decay": 1e-2}, torch.optim.AdamW
    model = _model()
    oracle = po.LookSAM(model.parameters(), base_cls, rho=0.1, k=k, alpha=alpha, adaptive=adaptive, **kw)
    expected = _train(model, oracle, batches)
    ours = _ours("looksam", batches=batches, rho=0.1, k=k, alpha=alpha, adaptive=adaptive, base=base, **kw)
    _assert_paths_close(ours, expected, rtol=1e-6, atol=1e-9)  # its norms are float32 (spec §5)
    assert np.abs(ours[-1] - ours[0]).max() > 1e-3
    if k > 1:  # the reuse steps are not SAM's
        sam = _ours("sam", batches=batches, rho=0.1, adaptive=adaptive, base=base, **kw)
        assert np.abs(ours[-1] - sam[-1]).max() > 1e-6


def test_k_one_is_sam():
    _assert_paths_close(_ours("looksam", k=1, rho=0.1, **BASE_KW), _ours("sam", rho=0.1, **BASE_KW), rtol=1e-12, atol=0)


def test_the_stored_part_is_orthogonal_to_the_plain_gradient_per_tensor():
    gen = torch.Generator().manual_seed(4)
    s = [torch.randn(2, 4, 3, generator=gen, dtype=torch.float64), torch.randn(2, 5, generator=gen, dtype=torch.float64)]
    g = [torch.randn(2, 4, 3, generator=gen, dtype=torch.float64), torch.randn(2, 5, generator=gen, dtype=torch.float64)]
    for s_i, g_i, v_i in zip(s, g, orthogonal_part(s, g)):
        for r in range(2):
            a, b = s_i[r].reshape(-1), g_i[r].reshape(-1)
            torch.testing.assert_close(v_i[r].reshape(-1), b - (a @ b) / (a @ a) * a, rtol=1e-10, atol=1e-12)
            assert abs(float(v_i[r].reshape(-1) @ a)) < 1e-10


@pytest.mark.parametrize("batch_size", [0, 32])
def test_a_full_step_every_k_steps_and_one_gradient_in_between(batch_size):
    r = run(SMALL.replace(optimizer="looksam", dtype="float64", batch_size=batch_size, steps=8, hparams={"k": 3}))
    batch = batch_size or setup(SMALL).x_train.shape[0]
    calls = np.array([2, 1, 1, 2, 1, 1, 2, 1])
    np.testing.assert_array_equal(r.grad_calls, calls)
    np.testing.assert_array_equal(r.grad_samples, calls * batch)
    full = calls == 2
    np.testing.assert_allclose(r.eps_norm[full], 0.1, rtol=1e-9)  # the default ρ
    np.testing.assert_array_equal(r.eps_norm[~full], 0.0)
    np.testing.assert_array_equal(r.perturbed_params[~full], 0)
    assert np.isfinite(r.perturbed_loss[full]).all() and np.isnan(r.perturbed_loss[~full]).all()


def test_the_adapter_asks_for_one_gradient_between_full_steps():
    model = _model()
    opt = make("looksam", model.parameters(), k=2, **BASE_KW)
    calls = []
    for batch in _batches(5):
        _train(model, opt, [batch])
        calls.append(opt.last.grad_calls)
    assert calls == [2, 1, 2, 1, 2]


# Three classes: with two, the output bias's gradient has entries (a, −a), so s ∥ g there and its g_v is rounding
# noise (~1e-17), which the reuse scales by ‖s‖/(‖g_v‖ + 1e-8) into ~1e-10 differences between the stacked and the
# single run's rounding: above the float64 tolerance of these comparisons, though harmless.
BLOBS = SMALL.replace(task="blobs", n_classes=3)


def test_stacked_runs_equal_single_runs():
    configs = [BLOBS.replace(optimizer="looksam", dtype="float64", batch_size=32, seed=seed,
                             hparams={"rho": rho, "alpha": alpha, "k": 3})
               for seed, rho, alpha in ((0, 0.0, 0.7), (1, 0.05, 0.2), (2, 0.3, 1.0))]
    for stacked, config in zip(train(configs), configs):
        single = run(config)
        for name in ("batch_loss", "perturbed_loss", "eps_norm", "grad_norm", "perturbed_grad_norm", "grad_calls"):
            np.testing.assert_allclose(getattr(stacked, name), getattr(single, name), rtol=1e-10, atol=1e-12,
                                       err_msg=name)
        np.testing.assert_allclose(stacked.weights, single.weights, rtol=1e-10, atol=1e-12)


def test_every_sweep_cell_equals_its_single_run():
    base = BLOBS.replace(optimizer="looksam", dtype="float64", batch_size=24, hparams={"k": 4})
    grid = run_grid(base, ("rho", [0.02, 0.2]), ("alpha", [0.3, 0.9]), seeds=2, strategy="batched", lambda_max=False)
    for s, i, j in np.ndindex(grid.shape):
        assert_cell_equals_run(grid, s, i, j)


def test_the_command_line_takes_k_and_hessian_keeps_its_own(tmp_path):
    small = ["--optimizer", "looksam", "--steps", "4", "--n-samples", "64", "--width", "8", "--device", "cpu", "--quiet"]
    assert main(["train", *small, "--k", "3", "--out", str(tmp_path / "run")]) == 0
    assert Run.load(tmp_path / "run.npz").config.hp["k"] == 3
    # hessian's --k is its number of eigenvalues; the hyperparameter is --hp-k there
    assert main(["hessian", *small, "--k", "2", "--hp-k", "5", "--every", "0", "--out", str(tmp_path / "h")]) == 0
    result = json.loads((tmp_path / "h.json").read_text())
    assert len(result["eigenvalues"]) == 2 and result["config"]["k"] == 5


def test_every_parameter_group_shares_k():
    w, b = torch.nn.Parameter(torch.ones(2, 2)), torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="k"):
        make("looksam", [{"params": [w]}, {"params": [b], "k": 3}])
    opt = make("looksam", [{"params": [w]}, {"params": [b], "alpha": 0.2}])  # α may differ by group
    assert opt.param_groups[1]["alpha"] == 0.2
