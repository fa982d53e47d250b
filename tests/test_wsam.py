"""WSAM against pytorch-optimizer 4.1.0's ``WSAM`` (decoupled and coupled), its invariants (γ = 0 is the base
optimizer; coupled with γ = ½ it is SAM), stacked runs and sweep cells."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_optimizer as po
import torch
from test_optim import BASE_KW, _assert_paths_close, _batches, _model, _ours, _train
from test_sweep import SMALL, assert_cell_equals_run

from sam_viz.optim import make
from sam_viz.sweep import run_grid
from sam_viz.train import run, train

STEPS = 8


@pytest.mark.parametrize("decouple", [True, False])
@pytest.mark.parametrize("gamma,adaptive,base", [
    (0.9, False, "sgd"),
    (0.6, True, "sgd"),
    (0.8, False, "adamw"),
])
def test_wsam_equals_pytorch_optimizer(decouple, gamma, adaptive, base):
    batches = _batches(STEPS)
    if base == "sgd":
        kw, base_cls = BASE_KW, torch.optim.SGD
    else:
        kw, base_cls = {"lr": 1e-2, "weight_decay": 1e-2}, torch.optim.AdamW
    rho = 0.5 if adaptive else 0.05
    model = _model()
    oracle = po.WSAM(model, model.parameters(), base_cls, rho=rho, gamma=gamma, adaptive=adaptive, decouple=decouple,
                     **kw)
    expected = _train(model, oracle, batches)
    ours = _ours("wsam", batches=batches, rho=rho, gamma=gamma, adaptive=adaptive, decouple=decouple, base=base, **kw)
    _assert_paths_close(ours, expected, rtol=1e-6, atol=1e-9)  # its norms are float32 (spec §5)
    assert np.abs(ours[-1] - ours[0]).max() > 1e-3
    sam = _ours("sam", batches=batches, rho=rho, adaptive=adaptive, base=base, **kw)
    assert np.abs(ours[-1] - sam[-1]).max() > 1e-6  # WSAM is not SAM here


def test_the_two_forms_differ_with_momentum():
    coupled = _ours("wsam", decouple=False, **BASE_KW)
    decoupled = _ours("wsam", decouple=True, **BASE_KW)
    assert np.abs(coupled[-1] - decoupled[-1]).max() > 1e-4


@pytest.mark.parametrize("decouple", [True, False])
def test_gamma_zero_is_the_base_optimizer(decouple):
    _assert_paths_close(_ours("wsam", gamma=0.0, decouple=decouple, **BASE_KW), _ours("sgd", **BASE_KW),
                        rtol=1e-12, atol=0)


def test_coupled_gamma_half_is_sam():
    _assert_paths_close(_ours("wsam", gamma=0.5, decouple=False, rho=0.1, **BASE_KW),
                        _ours("sam", rho=0.1, **BASE_KW), rtol=1e-12, atol=0)


@pytest.mark.parametrize("decouple", [True, False])
def test_stacked_runs_equal_single_runs(decouple):
    configs = [SMALL.replace(optimizer="wsam", dtype="float64", batch_size=32, seed=seed,
                             hparams={"rho": rho, "gamma": gamma, "decouple": decouple})
               for seed, rho, gamma in ((0, 0.0, 0.9), (1, 0.05, 0.5), (2, 0.3, 0.8))]
    for stacked, config in zip(train(configs), configs):
        single = run(config)
        for name in ("batch_loss", "perturbed_loss", "eps_norm", "grad_norm", "perturbed_grad_norm"):
            np.testing.assert_allclose(getattr(stacked, name), getattr(single, name), rtol=1e-10, atol=1e-12,
                                       err_msg=name)
        np.testing.assert_allclose(stacked.weights, single.weights, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("decouple", [True, False])
def test_every_sweep_cell_equals_its_single_run(decouple):
    base = SMALL.replace(optimizer="wsam", dtype="float64", batch_size=24, hparams={"decouple": decouple})
    grid = run_grid(base, ("rho", [0.02, 0.2]), ("gamma", [0.5, 0.9]), seeds=2, strategy="batched", lambda_max=False)
    for s, i, j in np.ndindex(grid.shape):
        assert_cell_equals_run(grid, s, i, j)


def test_a_user_loop_reports_the_step():
    model = _model()
    opt = make("wsam", model.parameters(), lr=0.1, rho=0.05)
    path = _train(model, opt, _batches(3))
    assert np.abs(path[-1] - path[0]).max() > 1e-4
    assert opt.last.grad_calls == 2 and opt.last.eps_norm == pytest.approx(0.05, rel=1e-9)


def test_every_parameter_group_shares_decouple():
    w, b = torch.nn.Parameter(torch.ones(2, 2)), torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="decouple"):
        make("wsam", [{"params": [w]}, {"params": [b], "decouple": False}])



def test_a_group_with_gamma_zero_steps_as_the_base_optimizer():
    # decoupled, a group's sharpness step is its own α (g − s): with γ = 0 its tensors take plain SGD's first step
    batches = _batches(1)
    model = _model()
    weights, biases = [model[0].weight, model[2].weight], [model[0].bias, model[2].bias]
    _train(model, make("wsam", [{"params": weights}, {"params": biases, "gamma": 0.0}], **BASE_KW), batches)
    reference = _model()
    _train(reference, make("sgd", reference.parameters(), **BASE_KW), batches)
    for ours, plain in ((model[0].bias, reference[0].bias), (model[2].bias, reference[2].bias)):
        torch.testing.assert_close(ours, plain, rtol=1e-12, atol=0)
    assert (model[0].weight - reference[0].weight).abs().max() > 1e-4
