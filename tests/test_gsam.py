"""GSAM against pytorch-optimizer 4.1.0's ``GSAM`` (constant and scheduled learning rates), its invariants (α = 0
is SAM, s_⊥ is orthogonal to g, the ρ schedule), its surrogate-gap series, stacked runs and sweep cells."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_optimizer as po
import torch
from pytorch_optimizer.lr_scheduler.proportion import ProportionScheduler
from test_optim import BASE_KW, _assert_paths_close, _batches, _flat, _model, _ours, _train
from test_sweep import SMALL, assert_cell_equals_run
from torch import nn

from sam_viz.optim import make
from sam_viz.optim.gsam import decompose, gsam_init, gsam_radius
from sam_viz.sweep import run_grid
from sam_viz.train import run, train

STEPS = 8


def _po_gsam(rho: float, rho_min: float, alpha: float, adaptive: bool, schedule: bool) -> list[np.ndarray]:
    """pytorch-optimizer's documented loop: set_closure, step, lr scheduler step, update_rho_t."""
    model = _model()
    base = torch.optim.SGD(model.parameters(), **BASE_KW)
    lr_schedule = torch.optim.lr_scheduler.StepLR(base, step_size=2, gamma=0.5 if schedule else 1.0)
    rho_schedule = ProportionScheduler(lr_schedule, max_lr=BASE_KW["lr"], min_lr=0.0, max_value=rho, min_value=rho_min)
    opt = po.GSAM(model.parameters(), base, model, rho_schedule, alpha=alpha, adaptive=adaptive)
    path = [_flat(model)]
    for x, y in _batches(STEPS):
        opt.set_closure(nn.functional.cross_entropy, x, y)
        opt.step()
        lr_schedule.step()
        opt.update_rho_t()
        path.append(_flat(model))
    return path


def _ours_gsam(schedule: bool, **hp) -> list[np.ndarray]:
    model = _model()
    opt = make("gsam", model.parameters(), **BASE_KW, **hp)
    lr_schedule = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5 if schedule else 1.0)
    path = [_flat(model)]
    for x, y in _batches(STEPS):
        def closure():
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss
        closure()
        opt.step(closure)
        lr_schedule.step()
        path.append(_flat(model))
    return path


@pytest.mark.parametrize("rho,rho_min,alpha,adaptive,schedule", [
    (0.05, 0.05, 0.4, False, False),
    (0.1, 0.02, 0.4, False, True),  # ρ_t follows the halving learning rate down towards ρ_min
    (0.1, 0.0, 0.8, False, True),
    (0.5, 0.1, 0.4, True, True),
])
def test_gsam_equals_pytorch_optimizer(rho, rho_min, alpha, adaptive, schedule):
    expected = _po_gsam(rho, rho_min, alpha, adaptive, schedule)
    ours = _ours_gsam(schedule, rho=rho, rho_min=rho_min, alpha=alpha, adaptive=adaptive)
    # its norms are float32 (spec §5): ε₃₂ ≈ 1.2e-7 of a step, so an entry near 0 differs by up to 2.3e-9 (seen on
    # an Intel Xeon); a wrong rule differs by more than 1e-4
    _assert_paths_close(ours, expected, rtol=1e-6, atol=2e-8)
    assert np.abs(ours[-1] - ours[0]).max() > 1e-3  # the run moved: the comparison is not vacuous
    sam = _ours("sam", rho=rho, adaptive=adaptive, batches=_batches(STEPS), **BASE_KW)
    assert np.abs(ours[-1] - sam[-1]).max() > 1e-6  # and GSAM is not SAM here


def test_alpha_zero_is_sam():
    _assert_paths_close(_ours("gsam", alpha=0.0, rho=0.1, rho_min=0.03, **BASE_KW),
                        _ours("sam", rho=0.1, **BASE_KW), rtol=1e-12, atol=0)


def test_the_subtracted_part_is_orthogonal_to_the_perturbed_gradient():
    gen = torch.Generator().manual_seed(3)
    s = [torch.randn(2, 4, 3, generator=gen, dtype=torch.float64), torch.randn(2, 5, generator=gen, dtype=torch.float64)]
    g = [torch.randn(2, 4, 3, generator=gen, dtype=torch.float64), torch.randn(2, 5, generator=gen, dtype=torch.float64)]
    norm = lambda ts: torch.sqrt(sum(t.reshape(2, -1).pow(2).sum(1) for t in ts))  # noqa: E731
    alpha = torch.tensor([0.4, 1.0], dtype=torch.float64)
    direction = decompose(s, g, alpha, norm(s), norm(g))
    # d = g − α s_⊥ with s_⊥ = s − (⟨s, g⟩/‖g‖²) g, written out per run
    for r in range(2):
        s_r, g_r = torch.cat([t[r].reshape(-1) for t in s]), torch.cat([t[r].reshape(-1) for t in g])
        s_perp = s_r - (s_r @ g_r) / (g_r @ g_r) * g_r
        torch.testing.assert_close(torch.cat([d[r].reshape(-1) for d in direction]), g_r - alpha[r] * s_perp,
                                   rtol=1e-10, atol=1e-12)
        assert abs(float(s_perp @ g_r)) < 1e-10


def test_the_radius_follows_the_learning_rate():
    params = [torch.zeros(1, 3, dtype=torch.float64)]
    hp = {"lr": 0.2, "rho": 0.1, "rho_min": 0.02, "base": "sgd"}
    state = gsam_init(params, hp)
    radius = lambda lr: float(gsam_radius(state, {**hp, "lr": lr})[0])  # noqa: E731
    assert radius(0.2) == 0.1  # a constant learning rate: exactly ρ
    assert radius(0.1) == pytest.approx(0.02 + 0.08 * 0.5, rel=1e-14)  # halfway to η_min = 0
    assert radius(0.0) == pytest.approx(0.02, rel=1e-14)
    assert radius(0.4) == 0.1  # a larger learning rate becomes η_max: ρ again (a warm-up keeps ρ)
    assert radius(0.2) == pytest.approx(0.06, rel=1e-14)


def test_the_surrogate_gap_is_recorded():
    r = run(SMALL.replace(optimizer="gsam", dtype="float64", batch_size=32))
    gap = r.extra["surrogate_gap"]
    np.testing.assert_allclose(gap, r.perturbed_loss - r.batch_loss, rtol=1e-10, atol=1e-14)
    assert (gap > 0).all()  # a small ρ along the gradient raises the loss
    np.testing.assert_array_equal(r.grad_calls, 2)


def test_stacked_runs_equal_single_runs():
    configs = [SMALL.replace(optimizer="gsam", dtype="float64", batch_size=32, seed=seed,
                             hparams={"rho": rho, "alpha": alpha})
               for seed, rho, alpha in ((0, 0.0, 0.4), (1, 0.05, 0.2), (2, 0.3, 0.9))]
    for stacked, config in zip(train(configs), configs):
        single = run(config)
        for name in ("batch_loss", "perturbed_loss", "eps_norm", "effective_rho", "grad_norm", "perturbed_grad_norm"):
            np.testing.assert_allclose(getattr(stacked, name), getattr(single, name), rtol=1e-10, atol=1e-12,
                                       err_msg=name)
        np.testing.assert_allclose(stacked.weights, single.weights, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(stacked.extra["surrogate_gap"], single.extra["surrogate_gap"], rtol=1e-9, atol=1e-12)


def test_every_sweep_cell_equals_its_single_run():
    base = SMALL.replace(optimizer="gsam", dtype="float64", batch_size=24)
    grid = run_grid(base, ("rho", [0.02, 0.2]), ("alpha", [0.0, 0.6]), seeds=2, strategy="batched", lambda_max=False)
    for s, i, j in np.ndindex(grid.shape):
        assert_cell_equals_run(grid, s, i, j)


def test_a_user_loop_reports_the_step():
    model = _model()
    opt = make("gsam", model.parameters(), lr=0.1, rho=0.05)
    path = _train(model, opt, _batches(3))
    assert np.abs(path[-1] - path[0]).max() > 1e-4
    assert opt.last.grad_calls == 2 and opt.last.eps_norm == pytest.approx(0.05, rel=1e-9)
    assert np.isnan(opt.last.extra["surrogate_gap"])  # a plain closure gives no loss at θ
