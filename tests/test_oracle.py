"""The gradient oracle: every batch a step program may ask for, per-sample losses, one run and stacked runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam_viz.config import Config
from sam_viz.optim import OPTIMIZERS, ClosureOracle
from sam_viz.oracle import ModelOracle
from sam_viz.train import setup

CONFIG = Config(n_samples=64, width=6, device="cpu", dtype="float64")


def _direct(s, point_k, x, y):
    """Loss, gradient and per-sample losses of one run by plain autograd on a copy of the model."""
    model = setup(CONFIG).model
    with torch.no_grad():
        for p, q in zip(model.parameters(), point_k):
            p.copy_(q)
    out = model(x)
    loss = s.loss(out, y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    per_sample = torch.nn.functional.cross_entropy(out, y, reduction="none")
    return loss.detach(), [g.detach() for g in grads], per_sample.detach()


@pytest.mark.parametrize("runs", [1, 3])
def test_every_batch_and_per_sample_losses_match_autograd(runs):
    s = setup(CONFIG)
    oracle = ModelOracle(s.model, s.loss, s.dataset.kind, (s.x_train, s.y_train), (s.x_test, s.y_test))
    g = torch.Generator().manual_seed(0)
    params = [p.detach().unsqueeze(0) + 0.1 * torch.randn(runs, *p.shape, generator=g, dtype=p.dtype)
              for p in s.model.parameters()]
    first = torch.arange(0, 16)
    oracle.begin(params, (s.x_train[first], s.y_train[first], None))
    oracle.begin(params, (s.x_train[16:40], s.y_train[16:40], None))
    point = [p + 0.01 for p in params]
    sub = torch.tensor([1, 5, 7])
    cases = {"step": (s.x_train[16:40], s.y_train[16:40]), "previous": (s.x_train[first], s.y_train[first]),
             "heldout": (s.x_test, s.y_test), "train": (s.x_train, s.y_train),
             sub: (s.x_train[16:40][sub], s.y_train[16:40][sub])}
    for batch, (x, y) in cases.items():
        probe = oracle.grad(point, batch=batch, per_sample=True)
        loss_only = oracle.loss(point, batch=batch, per_sample=True)
        for k in range(runs):
            loss, grads, per_sample = _direct(s, [q[k] for q in point], x, y)
            np.testing.assert_allclose(probe.loss[k], loss, rtol=1e-12)
            np.testing.assert_allclose(loss_only.loss[k], loss, rtol=1e-12)
            np.testing.assert_allclose(probe.per_sample[k], per_sample, rtol=1e-12)
            for a, b in zip(probe.grads, grads):
                np.testing.assert_allclose(a[k], b, rtol=1e-10, atol=1e-14)


def test_theta_gradient_is_computed_once_per_step():
    s = setup(CONFIG)
    oracle = ModelOracle(s.model, s.loss, s.dataset.kind, (s.x_train, s.y_train), (s.x_test, s.y_test))
    params = [p.detach().unsqueeze(0).clone() for p in s.model.parameters()]
    oracle.begin(params, (s.x_train, s.y_train, None))
    assert oracle.grad() is oracle.grad()
    with pytest.raises(ValueError, match="previous"):
        oracle.grad(batch="previous")


def test_the_closure_oracle_knows_only_the_step_batch():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))

    def closure():
        w.grad = None
        loss = (w**2).sum()
        loss.backward()
        return loss

    closure()
    oracle = ClosureOracle([w], closure, "sam")
    np.testing.assert_allclose(oracle.grad().grads[0][0], [2.0, 4.0])
    probe = oracle.grad([torch.tensor([[3.0, 0.0]], dtype=torch.float64)])
    np.testing.assert_allclose(probe.grads[0][0], [6.0, 0.0])
    assert float(probe.loss[0]) == 9.0 and w.tolist() == [1.0, 2.0]  # θ restored
    for kwargs in ({"batch": "heldout"}, {"per_sample": True}, {"batch": torch.tensor([0])}):
        with pytest.raises(NotImplementedError, match="closure"):
            oracle.grad(**kwargs)


def test_the_registry_says_where_two_over_eta_applies():
    limit = {name: v.gd_stability_limit({"momentum": 0.0} if "momentum" in v.hparams else {})
             for name, v in OPTIMIZERS.items()}
    # every rule whose step is θ ← θ − η·(some gradient) with the SGD base; not Adam's, LightSAM's or AdaSAM's
    # preconditioned steps, nor Monge-SAM's metric
    assert {n for n, ok in limit.items() if ok} == {"sgd", "sam", "asam", "fsam", "msam", "ssam", "esam", "mbsam",
                                                    "sampa", "lets", "gsam", "looksam", "wsam"}
    assert not OPTIMIZERS["sgd"].gd_stability_limit()  # momentum 0.9 by default
    assert not OPTIMIZERS["sam"].gd_stability_limit({"momentum": 0.0, "base": "adam"})


def test_learn_text_is_derived_from_the_registry():
    from sam_viz.learn import LATEX, WHERE

    assert list(LATEX) == list(OPTIMIZERS) == list(WHERE)
    assert all(LATEX[n] == v.latex and WHERE[n] == v.where and v.latex for n, v in OPTIMIZERS.items())
