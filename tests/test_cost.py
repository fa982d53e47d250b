"""Every run records its cost (gradient evaluations, samples, parameters moved) and a method's own series; the
oracle's masked gradient equals the gradient of the selected samples; a BatchClosure answers sub-batch requests
in the torch.optim adapter."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sam_viz.config import Config
from sam_viz.optim import OPTIMIZERS, BatchClosure, ClosureOracle, Program, global_norm
from sam_viz.oracle import ModelOracle
from sam_viz.records import Run
from sam_viz.train import run, setup, train

SMALL = Config(n_samples=96, width=8, steps=6, snapshot_every=2, device="cpu", dtype="float64")


@pytest.mark.parametrize("optimizer, calls", [("sgd", 1), ("adam", 1), ("sam", 2), ("fsam", 2), ("lightsam1", 2)])
@pytest.mark.parametrize("batch_size", [0, 32])
def test_each_step_records_its_gradient_evaluations(optimizer, calls, batch_size):
    r = run(SMALL.replace(optimizer=optimizer, batch_size=batch_size))
    batch = batch_size or setup(SMALL).x_train.shape[0]
    np.testing.assert_array_equal(r.grad_calls, calls)
    np.testing.assert_array_equal(r.grad_evals, calls)
    np.testing.assert_array_equal(r.grad_samples, calls * batch)
    # a SAM-type step moves every parameter entry (a dense e); a one-pass method moves none
    np.testing.assert_array_equal(r.perturbed_params, r.n_params if calls == 2 else 0)


def test_cost_series_survive_save_and_load_and_old_files_read_as_nan():
    r = run(SMALL.replace(optimizer="sam"))
    buffer = io.BytesIO()
    r.save(buffer)
    buffer.seek(0)
    assert Run.load(buffer).equal_arrays(r)
    old = dataclasses.replace(r, grad_calls=None, grad_evals=None, grad_samples=None, perturbed_params=None)
    assert np.isnan(old.grad_evals).all() and old.grad_evals.shape == r.step.shape


def _with_extra(monkeypatch):
    """A SAM-like test program that reports a per-run scalar and a two-column series."""
    sam = OPTIMIZERS["sam"]

    def step(params, state, hp, oracle, names):
        report = sam.program.step(params, state, hp, oracle, names)
        norm = report["grad_norm"]
        report["extra"] = {"twice_norm": 2 * norm, "pair": torch.stack([norm, -norm], dim=1)}
        report["extra_labels"] = {"pair": ("plus", "minus")}
        return report

    program = Program(sam.program.init, step, two_pass=True)
    monkeypatch.setitem(OPTIMIZERS, "sam", dataclasses.replace(sam, program=program))


def test_a_programs_extra_series_are_recorded_per_run_and_saved(monkeypatch):
    _with_extra(monkeypatch)
    configs = [SMALL.replace(optimizer="sam", hparams={"rho": rho}) for rho in (0.01, 0.1)]
    runs = train(configs)
    for r in runs:
        np.testing.assert_allclose(r.extra["twice_norm"], 2 * r.grad_norm, rtol=1e-12)
        assert r.extra["pair"].shape == (SMALL.steps, 2)
        np.testing.assert_allclose(r.extra["pair"][:, 1], -r.grad_norm, rtol=1e-12)
        assert r.extra_labels["pair"] == ("plus", "minus")
        buffer = io.BytesIO()
        r.save(buffer)
        buffer.seek(0)
        loaded = Run.load(buffer)
        assert loaded.equal_arrays(r) and loaded.extra_labels == r.extra_labels
    single = run(configs[1])
    np.testing.assert_allclose(runs[1].extra["pair"], single.extra["pair"], rtol=1e-10)


def test_masked_gradient_is_the_gradient_of_the_selected_samples():
    s = setup(SMALL)
    oracle = ModelOracle(s.model, s.loss, s.dataset.kind, (s.x_train, s.y_train), (s.x_test, s.y_test))
    theta = [p.detach().unsqueeze(0) for p in s.model.parameters()]
    stacked = [torch.cat([t, 1.01 * t]) for t in theta]
    oracle.begin(stacked, (s.x_train, s.y_train, None))
    mask = torch.zeros(2, s.x_train.shape[0], dtype=torch.bool)
    mask[0, ::3] = True
    mask[1, 1::2] = True
    got = oracle.grad(mask=mask)
    assert oracle.grad_calls == 1
    np.testing.assert_array_equal(oracle.grad_samples.numpy(), mask.sum(1).double().numpy())
    for r in range(2):
        one = ModelOracle(s.model, s.loss, s.dataset.kind, (s.x_train, s.y_train), (s.x_test, s.y_test))
        point = [t[r:r + 1].clone() for t in stacked]
        one.begin(point, (s.x_train, s.y_train, None))
        index = torch.nonzero(mask[r]).squeeze(1)
        direct = one.grad(point, batch=index)
        masked = one.grad(point, mask=mask[r:r + 1])
        for a, b, c in zip(got.grads, direct.grads, masked.grads):
            np.testing.assert_allclose(a[r].numpy(), b[0].numpy(), rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(c[0].numpy(), b[0].numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(float(got.loss[r]), float(direct.loss[0]), rtol=1e-12)


def test_batch_closure_answers_sub_batches_per_sample_losses_and_the_held_out_batch():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).double()
    x, y = torch.randn(10, 3, dtype=torch.float64), torch.randint(0, 2, (10,))
    xv, yv = torch.randn(4, 3, dtype=torch.float64), torch.randint(0, 2, (4,))
    closure = BatchClosure(model, lambda out, t: F.cross_entropy(out, t, reduction="none"), x, y, heldout=(xv, yv))
    closure()
    params = list(model.parameters())
    oracle = ClosureOracle(params, closure, "test")
    theta = [p.detach().clone() for p in params]
    point = [(p + 0.1).unsqueeze(0) for p in theta]
    index = torch.tensor([1, 4, 7])
    probe = oracle.grad(point, batch=index, per_sample=True)
    # the reference: the same sub-batch at the same point, by hand
    ref = [t + 0.1 for t in theta]
    for p, value in zip(params, ref):
        p.data.copy_(value)
    model.zero_grad()
    losses = F.cross_entropy(model(x[index]), y[index], reduction="none")
    losses.mean().backward()
    for g, p in zip(probe.grads, params):
        np.testing.assert_allclose(g[0].numpy(), p.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(probe.per_sample[0].numpy(), losses.detach().numpy(), rtol=1e-12)
    for p, value in zip(params, theta):
        p.data.copy_(value)
    held = oracle.loss(batch="heldout")
    np.testing.assert_allclose(float(held.loss[0]), float(F.cross_entropy(model(xv), yv).detach()), rtol=1e-12)
    assert oracle.grad_calls == 1 and oracle.grad_samples == 3.0
    for p, value in zip(params, theta):  # θ_t restored by copy
        assert torch.equal(p.detach(), value)


def test_a_plain_closure_says_what_it_cannot_answer():
    model = torch.nn.Linear(2, 1)
    x, y = torch.randn(4, 2), torch.randn(4, 1)

    def closure():
        model.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        return loss

    closure()
    oracle = ClosureOracle(list(model.parameters()), closure, "esam")
    with pytest.raises(NotImplementedError, match="BatchClosure"):
        oracle.grad(batch=torch.tensor([0, 1]))
    assert float(global_norm(oracle.grad().grads)[0]) > 0
