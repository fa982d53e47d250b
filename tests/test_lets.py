"""LETS (this project's reading, spec §6b): rho_lr = 0 is SAM, the finite-difference hypergradient against autograd
through the unrolled step, ρ's bounds, the validation split carved out of the training set (and shared by the runs
compared with LETS), stacked runs and sweep cells."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_sweep import assert_cell_equals_run
from tiny_nets import flat_params as _flat
from tiny_nets import per_sample_ce as _per_sample_ce
from tiny_nets import random_batches as _batches
from tiny_nets import tanh_mlp as _model
from torch import nn
from torch.func import functional_call

from sam_viz.config import DEFAULT_VAL_FRACTION, Config, shared_validation
from sam_viz.data import make_dataset, train_size
from sam_viz.optim import OPTIMIZERS, BatchClosure, make
from sam_viz.optim.lets import radius_hypergradient
from sam_viz.optim.oracle import ClosureOracle
from sam_viz.settings import Settings
from sam_viz.sweep import run_grid
from sam_viz.train import RECORD_FIELDS, run, run_many, train

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = Config(optimizer="lets", n_samples=160, width=8, steps=8, batch_size=32, dtype="float64", device="cpu")
HP = {"rho": 0.05, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}


HELDOUT = _batches(1, size=24, seed=9)[0]


def _ours(name: str, batches, **hp) -> tuple[list[np.ndarray], list]:
    model = _model()
    opt = make(name, model.parameters(), **hp)
    path, reports = [_flat(model)], []
    for x, y in batches:
        closure = BatchClosure(model, _per_sample_ce, x, y, heldout=HELDOUT)
        closure()
        opt.step(closure)
        path.append(_flat(model))
        reports.append(opt.last)
    return path, reports


# ---- rho_lr = 0 is SAM ----------------------------------------------------------------------------------------

def test_rho_lr_zero_is_sam():
    batches = _batches()
    lets, reports = _ours("lets", batches, rho_lr=0.0, **HP)
    sam, _ = _ours("sam", batches, **HP)
    for a, b in zip(lets, sam):
        np.testing.assert_array_equal(a, b)
    assert all(r.extra["rho_t"] == HP["rho"] for r in reports)
    # in the training loop, every trajectory record of SAM on the same (validation-less) training samples
    a = run(SMALL.replace(rho_lr=0.0, rho=0.07))
    b = run(SMALL.replace(optimizer="sam", rho=0.07, val_fraction=DEFAULT_VAL_FRACTION))
    for name in RECORD_FIELDS:
        if name.startswith("grad_"):  # the cost: LETS still evaluates its hypergradient
            continue
        # ρ_t a tensor in LETS, a float in SAM: the same numbers up to the last bit of a cosine
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-14, atol=0, err_msg=name)
    assert (a.grad_calls >= 2).all() and a.grad_calls.max() == 4  # 2 extra backward passes a ρ-update


# ---- the hypergradient ----------------------------------------------------------------------------------------

def _autograd_hypergradient(model: nn.Module, batch, heldout, rho: float, lr: float) -> tuple[float, float]:
    """d/dρ ½(L_val(θ⁺) − L_B(θ⁺))², θ⁺ = θ − η ∇L_B(θ + ρ ŝ), by autograd through the unrolled step (the
    second derivative included): the exact value the central difference approximates."""
    names = [n for n, _ in model.named_parameters()]
    theta = [p.detach().clone().requires_grad_() for p in model.parameters()]
    x, y = batch

    def loss(params, xs, ys):
        return nn.functional.cross_entropy(functional_call(model, dict(zip(names, params)), (xs,)), ys)

    s = torch.autograd.grad(loss(theta, x, y), theta)
    theta = [t.detach() for t in theta]
    norm = torch.sqrt(sum((g * g).sum() for g in s))
    direction = [g / (norm + 1e-12) for g in s]
    r = torch.tensor(rho, dtype=torch.float64, requires_grad=True)
    point = [t + r * d for t, d in zip(theta, direction)]
    g = torch.autograd.grad(loss(point, x, y), point, create_graph=True)
    ahead = [p - lr * gi for p, gi in zip(theta, g)]
    gap = loss(ahead, *heldout) - loss(ahead, x, y)
    (dh,) = torch.autograd.grad(0.5 * gap * gap, r)
    return float(dh), float(gap.detach())


@pytest.mark.parametrize("rho,lr", [(0.05, 0.1), (0.3, 0.5), (1.0, 0.05)])
def test_the_hypergradient_matches_autograd_through_the_unrolled_step(rho, lr):
    model = _model(seed=3)
    x, y = _batches(1, size=32, seed=4)[0]
    expected, gap = _autograd_hypergradient(model, (x, y), HELDOUT, rho, lr)
    closure = BatchClosure(model, _per_sample_ce, x, y, heldout=HELDOUT)
    closure()
    params = list(model.parameters())
    oracle = ClosureOracle(params, closure, "lets")
    with torch.no_grad():
        stacked = [p.unsqueeze(0) for p in params]
        s = oracle.grad().grads
        hypergrad, ours_gap = radius_hypergradient(stacked, s, torch.tensor([rho], dtype=torch.float64),
                                                   {"lr": lr}, oracle)
    assert abs(expected) > 1e-6  # a hypergradient worth matching
    assert float(hypergrad[0]) == pytest.approx(expected, rel=1e-5, abs=1e-9)
    assert float(ours_gap[0]) == pytest.approx(gap, rel=1e-5, abs=1e-9)
    for p, q in zip(params, _model(seed=3).parameters()):  # θ_t is left where it was
        assert torch.equal(p.detach(), q.detach())


def test_rho_moves_against_the_hypergradient_and_stays_in_its_bounds():
    batches = _batches(6)
    _, reports = _ours("lets", batches, rho_lr=50.0, every=1, **HP)
    rhos = [r.extra["rho_t"] for r in reports]
    assert len(set(rhos)) > 2  # ρ is learned
    _, bounded = _ours("lets", batches, rho_lr=1e4, every=1, rho_min=0.02, rho_max=0.06, **HP)
    rhos = [r.extra["rho_t"] for r in bounded]
    assert all(0.02 - 1e-15 <= v <= 0.06 + 1e-15 for v in rhos[1:]) and any(v in (0.02, 0.06) for v in rhos[1:])


def test_rho_is_updated_every_k_steps():
    r = run(SMALL.replace(rho_lr=100.0, every=3, steps=9))
    rho = r.extra["rho_t"]
    changes = np.flatnonzero(np.diff(rho) != 0) + 1
    assert set(changes) <= {1, 4, 7} and len(changes) > 0  # ρ_t changes only after a learning step (t = 0, 3, 6)
    learned = np.isfinite(r.extra["val_train_gap"])
    np.testing.assert_array_equal(np.flatnonzero(learned), [0, 3, 6])
    np.testing.assert_array_equal(r.grad_calls, np.where(learned, 4.0, 2.0))


# ---- the validation split ---------------------------------------------------------------------------------------

def test_the_validation_split_is_carved_out_of_the_training_set():
    whole = make_dataset("moons", n_samples=200, seed=3)
    carved = make_dataset("moons", n_samples=200, seed=3, val_fraction=0.25)
    np.testing.assert_array_equal(carved.x_test, whole.x_test)  # the test split is untouched
    rows = {tuple(r) for r in whole.x_train}
    train_rows, val_rows = {tuple(r) for r in carved.x_train}, {tuple(r) for r in carved.x_val}
    assert train_rows | val_rows == rows and not train_rows & val_rows
    assert len(carved.y_val) == round(0.25 * len(whole.y_train)) and len(carved.y_train) == train_size(
        "moons", 200, 0.25, 0.25)
    assert len(make_dataset("moons", n_samples=200, seed=3).x_val) == 0


def test_runs_compared_with_lets_train_on_the_same_samples():
    base = Config(optimizer="sgd", n_samples=160, width=8, steps=8, batch_size=32, dtype="float64", device="cpu")
    configs = shared_validation([base, base.replace(optimizer="sam"), base.replace(optimizer="lets")])
    assert [c.val_fraction for c in configs] == [DEFAULT_VAL_FRACTION] * 3
    assert shared_validation([base, base.replace(optimizer="sam")])[0].val_fraction is None  # no LETS, no split
    runs = run_many(base, [("sam", {"rho": 0.05}), ("lets", {"rho": 0.05, "rho_lr": 0.0})])
    for name in ("train_loss", "weights", "batch_loss"):  # SAM beside LETS at rho_lr = 0: the same run (to rounding)
        np.testing.assert_allclose(getattr(runs[0], name), getattr(runs[1], name), rtol=1e-13, atol=1e-15,
                                   err_msg=name)
    assert runs[0].config.val_fraction == runs[1].config.val_fraction == DEFAULT_VAL_FRACTION
    settings = Settings(task="moons", runs=(("sgd", {}), ("lets", {})), val=0.3)
    assert [c.val_fraction for c in settings.configs()] == [0.3, 0.3]
    assert [c.val_fraction for c in Settings(task="moons", runs=(("sgd", {}), ("sam", {}))).configs()] == [None] * 2


def test_a_validation_share_of_zero_is_refused_for_lets():
    with pytest.raises(ValueError, match="val_fraction"):
        SMALL.replace(val_fraction=0.0)
    with pytest.raises(ValueError, match="val_fraction"):
        SMALL.replace(val_fraction=0.95)


def test_the_learn_text_says_the_rule_is_this_projects_reading():
    variant = OPTIMIZERS["lets"]
    assert variant.status == "experimental"
    assert "reading" in variant.where and "reading" in variant.description


# ---- stacked runs and sweep cells ------------------------------------------------------------------------------

def test_stacked_runs_equal_separate_runs():
    configs = [SMALL.replace(seed=s, rho=r, rho_lr=b) for s, r, b in zip([0, 1, 0], [0.02, 0.05, 0.2], [0.0, 10.0, 50.0])]
    for stacked, config in zip(train(configs), configs):
        single = run(config)
        for name in RECORD_FIELDS:
            np.testing.assert_allclose(getattr(stacked, name), getattr(single, name), rtol=1e-9, atol=1e-12,
                                       equal_nan=True, err_msg=name)
        for name in ("rho_t", "val_train_gap"):
            np.testing.assert_allclose(stacked.extra[name], single.extra[name], rtol=1e-9, atol=1e-12,
                                       equal_nan=True, err_msg=name)


def test_every_sweep_cell_equals_its_single_run():
    grid = run_grid(SMALL.replace(steps=6, rho_lr=20.0), ("rho", [0.01, 0.1]), ("lr", [0.05, 0.2]), seeds=2,
                    strategy="batched", lambda_max=False)
    for s, i, j in np.ndindex(grid.shape):
        assert_cell_equals_run(grid, s, i, j)
