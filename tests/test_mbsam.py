"""mSAM's must-hold (issue 12): m = 1 is SAM; each micro-batch's e_i comes from its own gradient (a hand-written
loop over the shards); the reported spread is the mean pairwise cosine of those e_i; m > B is an error; stacked
runs and sweep cells equal single runs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from test_sweep import assert_cell_equals_run
from tiny_nets import per_sample_ce as _per_sample_ce
from tiny_nets import random_batches, tanh_mlp
from torch import nn

from sam_viz.config import Config
from sam_viz.optim import BatchClosure, make
from sam_viz.sweep import run_grid
from sam_viz.train import RECORD_FIELDS, run, train

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = Config(optimizer="mbsam", n_samples=128, width=8, steps=8, batch_size=32, dtype="float64", device="cpu")


def _model(seed: int = 0) -> nn.Module:
    return tanh_mlp(seed, classes=3)


def _batches(n: int = 6, size: int = 18, seed: int = 1):
    return random_batches(n, size, seed, classes=3)


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def _ours(name: str, batches, seed: int = 0, **hp) -> tuple[list[np.ndarray], list]:
    """A user's loop: backward at θ, then ``opt.step(BatchClosure(...))``; the path and the step reports."""
    model = _model(seed)
    opt = make(name, model.parameters(), **hp)
    path, reports = [_flat(model.parameters()).numpy().copy()], []
    for x, y in batches:
        closure = BatchClosure(model, _per_sample_ce, x, y)
        closure()
        opt.step(closure)
        path.append(_flat(model.parameters()).numpy().copy())
        reports.append(opt.last)
    return path, reports


def _shard_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    return [p.grad.detach().clone() for p in model.parameters()]


def _reference(batches, *, m, rho, lr, momentum, weight_decay, seed=0):
    """mSAM written out: shard i = samples [i⌊B/m⌋, (i+1)⌊B/m⌋) (the remainder sits out), e_i = ρ s_i/(‖s_i‖ +
    1e-12) from the shard's own gradient, h_i = ∇L_{B_i}(θ + e_i), and torch's SGD on mean_i h_i. Returns the
    path and, per step, the list of e_i (flat)."""
    model = _model(seed)
    params = list(model.parameters())
    base = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    path, perturbations = [_flat(params).numpy().copy()], []
    for x, y in batches:
        size = len(y) // m
        theta = [p.detach().clone() for p in params]
        descents, step_eps = [], []
        for i in range(m):
            xi, yi = x[i * size:(i + 1) * size], y[i * size:(i + 1) * size]
            s_i = _shard_gradient(model, xi, yi)
            norm = torch.sqrt(sum((g * g).sum() for g in s_i))
            e_i = [rho * g / (norm + 1e-12) for g in s_i]
            with torch.no_grad():
                for p, t, e in zip(params, theta, e_i):
                    p.copy_(t + e)
            descents.append(_shard_gradient(model, xi, yi))
            with torch.no_grad():
                for p, t in zip(params, theta):
                    p.copy_(t)
            step_eps.append(_flat(e_i))
        for p, parts in zip(params, zip(*descents)):
            p.grad = torch.stack(parts).mean(dim=0)
        base.step()
        path.append(_flat(params).numpy().copy())
        perturbations.append(step_eps)
    return path, perturbations


HP = {"rho": 0.1, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}


# ---- m = 1 is SAM --------------------------------------------------------------------------------------------


def test_m_one_is_sam():
    hp = {**HP, "rho": 0.07}
    batches = _batches()
    mbsam, reports = _ours("mbsam", batches, m=1, **hp)
    sam, _ = _ours("sam", batches, **hp)
    for a, b in zip(mbsam, sam):
        np.testing.assert_array_equal(a, b)
    assert all(np.isnan(r.extra["microbatch_cosine"]) for r in reports)  # one perturbation: no pair
    # and in the training loop, every record
    a = run(SMALL.replace(m=1, rho=0.07))
    b = run(SMALL.replace(optimizer="sam", rho=0.07))
    for name in RECORD_FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert np.isnan(a.extra["microbatch_cosine"]).all()


# ---- each micro-batch's e_i from its own gradient --------------------------------------------------------------


@pytest.mark.parametrize("m,batch_size", [(2, 18), (3, 18), (4, 18), (5, 18), (18, 18)])
def test_each_micro_batch_is_perturbed_by_its_own_gradient(m, batch_size):
    """Against the loop over shards, over 6 steps in float64 (m = 4 and 5 leave a remainder of 2 and 3 out)."""
    batches = _batches(6, size=batch_size)
    ours, reports = _ours("mbsam", batches, m=m, **HP)
    expected, perturbations = _reference(batches, m=m, **HP)
    for t, (a, b) in enumerate(zip(ours, expected)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13, err_msg=f"step {t}")
    for t, (report, eps) in enumerate(zip(reports, perturbations)):
        # the reported perturbation is the mean of the e_i; each e_i has norm ρ, their mean less where they differ
        mean = torch.stack(eps).mean(dim=0)
        np.testing.assert_allclose(_flat(report.perturbation).numpy(), mean.numpy(), rtol=1e-10, atol=1e-14,
                                   err_msg=f"step {t}")
        assert report.eps_norm == pytest.approx(float(mean.norm()), rel=1e-10)
        assert report.eps_norm < HP["rho"]
        assert report.grad_calls == 2 * m and report.grad_samples == 2 * m * (batch_size // m)


def test_the_remainder_sits_out():
    """Samples past m⌊B/m⌋ never reach the step: changing them changes nothing."""
    batches = _batches(4, size=18)
    changed = [(torch.cat([x[:16], x[16:] + 5.0]), torch.cat([y[:16], (y[16:] + 1) % 3])) for x, y in batches]
    a, _ = _ours("mbsam", batches, m=4, **HP)
    b, _ = _ours("mbsam", changed, m=4, **HP)
    for p, q in zip(a, b):
        np.testing.assert_array_equal(p, q)


# ---- the spread: mean pairwise cosine of the e_i -----------------------------------------------------------


@pytest.mark.parametrize("m", [2, 3, 6])
def test_extra_is_the_mean_pairwise_cosine_of_the_reference_perturbations(m):
    batches = _batches(5, size=18)
    _, reports = _ours("mbsam", batches, m=m, **HP)
    _, perturbations = _reference(batches, m=m, **HP)
    for t, (report, eps) in enumerate(zip(reports, perturbations)):
        cosines = [float(torch.dot(a, b) / (a.norm() * b.norm())) for a, b in itertools.combinations(eps, 2)]
        assert report.extra["microbatch_cosine"] == pytest.approx(np.mean(cosines), rel=1e-9, abs=1e-12), f"step {t}"
        assert -1 <= report.extra["microbatch_cosine"] < 1


def test_training_loop_records_the_cosine():
    r = run(SMALL.replace(m=4))
    cosine = r.extra["microbatch_cosine"]
    assert cosine.shape == (r.n_steps,) and np.isfinite(cosine).all() and (cosine < 1).all()
    np.testing.assert_array_equal(r.grad_calls, 8.0)
    np.testing.assert_array_equal(r.grad_samples, 64.0)  # 2 passes over 4 shards of 8: SAM's samples


# ---- m > B -----------------------------------------------------------------------------------------------------


def test_more_micro_batches_than_samples_is_a_clear_error():
    model = _model()
    opt = make("mbsam", model.parameters(), m=19, **HP)
    x, y = _batches(1, size=18)[0]
    closure = BatchClosure(model, _per_sample_ce, x, y)
    closure()
    with pytest.raises(ValueError, match="19 micro-batches need at least 19 samples"):
        opt.step(closure)
    with pytest.raises(ValueError, match="micro-batches"):
        run(SMALL.replace(m=33))


# ---- stacked runs and sweep cells ------------------------------------------------------------------------------


def _assert_runs_equal(a, b, rtol=1e-10, atol=1e-12):
    for name in RECORD_FIELDS:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, atol=atol, equal_nan=True,
                                   err_msg=name)
    assert set(a.extra) == set(b.extra)
    for name in a.extra:
        np.testing.assert_allclose(a.extra[name], b.extra[name], rtol=rtol, atol=atol, equal_nan=True, err_msg=name)


@pytest.mark.parametrize("m", [1, 3, 4])
def test_stacked_runs_equal_separate_runs(m):
    configs = [SMALL.replace(seed=s, rho=r, lr=lr, m=m)
               for s, r, lr in zip([0, 1, 0], [0.0, 0.05, 0.2], [0.1, 0.05, 0.2])]
    for stacked, config in zip(train(configs), configs):
        _assert_runs_equal(stacked, run(config))


def test_every_sweep_cell_equals_its_single_run():
    grid = run_grid(SMALL.replace(steps=6, m=4), ("rho", [0.0, 0.1]), ("lr", [0.05, 0.2]), seeds=2,
                    strategy="batched", lambda_max=False)
    for s, i, j in np.ndindex(grid.shape):
        r = run(grid.cell_config(s, i, j))
        assert_cell_equals_run(grid, s, i, j, r)
        assert grid.total_grad_evals[s, i, j] == pytest.approx(float(np.nansum(r.grad_evals)), rel=1e-12)
