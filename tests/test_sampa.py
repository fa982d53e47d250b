"""SAMPa (sequential form) against a hand-written reference of its two gradients, including the previous-batch rule;
its invariant (full batch, ρ = 0 and λ = 0 is SGD), a resumed checkpoint, stacked runs and sweep cells."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from test_sweep import assert_cell_equals_run
from tiny_nets import flat_params as _flat
from tiny_nets import per_sample_ce as _per_sample_ce
from tiny_nets import random_batches as _batches
from tiny_nets import tanh_mlp as _model
from torch import nn

from sam_viz.config import Config
from sam_viz.optim import BatchClosure, make
from sam_viz.sweep import run_grid
from sam_viz.train import RECORD_FIELDS, run, train

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = Config(optimizer="sampa", n_samples=128, width=8, steps=8, batch_size=32, dtype="float64", device="cpu")
HP = {"rho": 0.1, "lmbda": 0.3, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}


def _ours(name: str, batches, model=None, opt=None, **hp) -> tuple[list[np.ndarray], nn.Module, object]:
    """A user's loop: backward at θ, then ``opt.step(BatchClosure(...))``; the path, the model and the optimizer."""
    model = _model() if model is None else model
    opt = make(name, model.parameters(), **hp) if opt is None else opt
    path = [_flat(model)]
    for x, y in batches:
        closure = BatchClosure(model, _per_sample_ce, x, y)
        closure()
        opt.step(closure)
        path.append(_flat(model))
    return path, model, opt


def _gradient(model: nn.Module, point: list[torch.Tensor], x, y) -> list[torch.Tensor]:
    """∇L_B at ``point`` (the model's parameters are restored afterwards)."""
    params = list(model.parameters())
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, q in zip(params, point):
            p.copy_(q)
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    grads = [p.grad.detach().clone() for p in params]
    with torch.no_grad():
        for p, q in zip(params, saved):
            p.copy_(q)
    return grads


def _reference(batches, *, rho, lmbda, lr, momentum, weight_decay, probe_on_this_batch=False) -> list[np.ndarray]:
    """SAMPa's sequential step written out (spec §6b): perturb along the previous look-ahead gradient g_y, probe on
    the previous batch, take the look-ahead y = θ − η(g_y + wd·θ + μ·b) on this batch, descend with torch's SGD on
    (1 − λ)·g_pert + λ·g_new. The first step has no previous batch: it probes θ itself on its own batch.
    ``probe_on_this_batch``: the rule without SAMPa's previous batch, to show that the rule is tested."""
    model = _model()
    params = list(model.parameters())
    sgd = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    g_y = [torch.zeros_like(p) for p in params]
    previous = None
    path = [_flat(model)]
    for x, y in batches:
        theta = [p.detach().clone() for p in params]
        if previous is None:
            g_pert = _gradient(model, theta, x, y)
        else:
            norm = torch.sqrt(sum((g * g).sum() for g in g_y))
            probed = (x, y) if probe_on_this_batch else previous
            g_pert = _gradient(model, [t + rho * g / (norm + 1e-12) for t, g in zip(theta, g_y)], *probed)
        buffers = [sgd.state[p].get("momentum_buffer", torch.zeros_like(p)) for p in params]
        ahead = [t - lr * (g + weight_decay * t + momentum * b) for t, g, b in zip(theta, g_y, buffers)]
        g_new = _gradient(model, ahead, x, y)
        for p, gp, gn in zip(params, g_pert, g_new):
            p.grad = (1 - lmbda) * gp + lmbda * gn
        sgd.step()
        g_y, previous = g_new, (x, y)
        path.append(_flat(model))
    return path


@pytest.mark.parametrize("hp", [HP, {**HP, "lmbda": 0.0}, {**HP, "lmbda": 1.0, "momentum": 0.0},
                                {**HP, "rho": 0.5, "weight_decay": 0.0}])
def test_sampa_equals_the_two_gradient_reference_with_the_previous_batch(hp):
    batches = _batches(7)
    ours, _, _ = _ours("sampa", batches, **hp)
    expected = _reference(batches, **hp)
    for t, (a, b) in enumerate(zip(ours, expected)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13, err_msg=f"step {t}")
    assert np.abs(ours[-1] - ours[0]).max() > 1e-2


def test_the_probe_uses_the_previous_batch_not_this_one():
    # the reference probing θ + e on the step's own batch instead parts from SAMPa at the second step
    batches = _batches(4)
    ours, _, _ = _ours("sampa", batches, **HP)
    this_batch = _reference(batches, probe_on_this_batch=True, **HP)
    np.testing.assert_allclose(ours[1], this_batch[1], rtol=1e-10, atol=1e-13)  # the first step: no previous
    assert np.abs(ours[2] - this_batch[2]).max() > 1e-6


def test_full_batch_rho_zero_lambda_zero_is_sgd():
    hp = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}
    full = _batches(1, size=64)[0]
    sampa, _, _ = _ours("sampa", [full] * 6, rho=0.0, lmbda=0.0, **hp)
    sgd, _, _ = _ours("sgd", [full] * 6, **hp)
    for a, b in zip(sampa, sgd):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    # and in the training loop: every trajectory record (the cost and ‖g_y‖ series say what SAMPa computed)
    config = SMALL.replace(batch_size=0, rho=0.0, lmbda=0.0, **hp)
    a, b = run(config), run(config.replace(optimizer="sgd", **hp))
    for name in ("batch_loss", "train_loss", "train_acc", "test_loss", "test_acc", "weights", "effective_lr"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-12, atol=1e-14, err_msg=name)
    np.testing.assert_array_equal(a.grad_calls, 2.0)  # two gradients a step all the same


def test_lambda_and_rho_matter():
    batches = _batches(5)
    base, _, _ = _ours("sampa", batches, **HP)
    for change in ({"rho": 0.3}, {"lmbda": 0.8}):
        other, _, _ = _ours("sampa", batches, **{**HP, **change})
        assert np.abs(other[-1] - base[-1]).max() > 1e-4, change


def test_a_resumed_checkpoint_probes_on_the_saved_previous_batch():
    batches, k = _batches(6), 3
    expected, _, _ = _ours("sampa", batches, **HP)
    _, model, opt = _ours("sampa", batches[:k], **HP)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    x_prev, y_prev = checkpoint["opt"]["state"]["previous_batch"]
    assert torch.equal(x_prev, batches[k - 1][0]) and torch.equal(y_prev, batches[k - 1][1])
    resumed = _model(seed=7)
    resumed.load_state_dict(checkpoint["model"])
    opt = make("sampa", resumed.parameters(), **HP)
    opt.load_state_dict(checkpoint["opt"])
    after, _, _ = _ours("sampa", batches[k:], model=resumed, opt=opt)
    for t, (a, b) in enumerate(zip(after, expected[k:])):
        np.testing.assert_array_equal(a, b, err_msg=f"step {k + t}")


def test_the_first_perturbation_is_zero_and_later_ones_have_norm_rho():
    config = SMALL.replace(rho=0.2)
    r = run(config)
    assert r.eps_norm[0] == 0.0
    np.testing.assert_allclose(r.eps_norm[1:], 0.2, rtol=1e-10)
    np.testing.assert_array_equal(r.effective_rho, 0.2)


def _assert_runs_equal(a, b, rtol=1e-10, atol=1e-12):
    for name in RECORD_FIELDS:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, atol=atol, equal_nan=True,
                                   err_msg=name)


def test_stacked_runs_equal_separate_runs():
    configs = [SMALL.replace(seed=s, rho=r, lmbda=m) for s, r, m in zip([0, 1, 0], [0.0, 0.05, 0.2], [0.2, 0.0, 0.7])]
    for stacked, config in zip(train(configs), configs):
        _assert_runs_equal(stacked, run(config))


def test_every_sweep_cell_equals_its_single_run():
    grid = run_grid(SMALL.replace(steps=6), ("rho", [0.0, 0.1]), ("lr", [0.05, 0.2]), seeds=2, strategy="batched",
                    lambda_max=False)
    for s, i, j in np.ndindex(grid.shape):
        assert_cell_equals_run(grid, s, i, j)
