"""SSAM's must-hold (issue 12): sparsity 0 is SAM; the mask keeps exactly round((1 − sparsity)·N) entries (SSAM-F
and SSAM-D, across refreshes); the Fisher scores are single-sample gradients squared and summed, checked against a
plain-autograd loop, and the Fisher mask is their top entries; stacked runs and sweep cells equal single runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_sweep import assert_cell_equals_run
from tiny_nets import per_sample_ce as _per_sample_ce
from tiny_nets import random_batches, tanh_mlp
from torch import nn

from sam_viz.config import Config
from sam_viz.optim import BatchClosure, make
from sam_viz.optim.oracle import ClosureOracle
from sam_viz.optim.ssam import fisher_scores
from sam_viz.sweep import run_grid
from sam_viz.train import RECORD_FIELDS, run, train

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = Config(optimizer="ssam", n_samples=128, width=8, steps=8, batch_size=32, dtype="float64", device="cpu")


def _model(seed: int = 0) -> nn.Module:  # 3 classes: 2 would tie the output rows' Fisher
    return tanh_mlp(seed, classes=3)


N_ENTRIES = sum(p.numel() for p in _model().parameters())  # 3·8 + 8 + 8·3 + 3 = 59


def _batches(n: int = 6, size: int = 16, seed: int = 1):
    return random_batches(n, size, seed, classes=3)


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def _ours(name: str, batches, seed: int = 0, *, before_step=None, **hp) -> tuple[list[np.ndarray], list]:
    """A user's loop: backward at θ, then ``opt.step(BatchClosure(...))``; the path and the step reports.
    ``before_step(model, x, y)`` runs at θ_t, before the step (for references computed at the same point)."""
    model = _model(seed)
    opt = make(name, model.parameters(), **hp)
    path, reports = [_flat(model.parameters()).numpy().copy()], []
    for x, y in batches:
        if before_step is not None:
            before_step(model, x, y)
        closure = BatchClosure(model, _per_sample_ce, x, y)
        closure()
        opt.step(closure)
        path.append(_flat(model.parameters()).numpy().copy())
        reports.append(opt.last)
    return path, reports


def _reference_fisher(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n_samples: int) -> torch.Tensor:
    """Σ_i (∇ℓ_i)² over the first ``n_samples`` samples, one plain backward per sample, flat over all entries."""
    total = torch.zeros(N_ENTRIES, dtype=torch.float64)
    for i in range(n_samples):
        model.zero_grad()
        _per_sample_ce(model(x[i:i + 1]), y[i:i + 1]).sum().backward()
        g = _flat(p.grad for p in model.parameters())
        total += g * g
    model.zero_grad()
    return total


def _kept(count: int, scores: torch.Tensor) -> torch.Tensor:
    """The ``count`` largest scores as a bool mask (the reference: torch.topk)."""
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    mask[torch.topk(scores, count).indices] = True
    return mask


# ---- sparsity 0 is SAM ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mask", ["fisher", "dynamic"])
def test_sparsity_zero_is_sam(mask):
    hp = {"rho": 0.07, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}
    batches = _batches()
    ssam, reports = _ours("ssam", batches, sparsity=0.0, mask=mask, update_every=2, **hp)
    sam, _ = _ours("sam", batches, **hp)
    for a, b in zip(ssam, sam):
        np.testing.assert_array_equal(a, b)
    assert all(r.extra["mask_density"] == 1.0 for r in reports)
    assert all(r.grad_calls == 2 for r in reports)  # no Fisher passes
    # and in the training loop, every record
    a = run(SMALL.replace(sparsity=0.0, mask=mask, rho=0.07))
    b = run(SMALL.replace(optimizer="sam", rho=0.07))
    for name in RECORD_FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_array_equal(a.extra["mask_density"], 1.0)


# ---- the mask keeps exactly its share -----------------------------------------------------------------------


@pytest.mark.parametrize("mask", ["fisher", "dynamic"])
@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.77, 0.9, 0.99])
def test_mask_keeps_exactly_the_stated_share(mask, sparsity):
    kept = round((1 - sparsity) * N_ENTRIES)
    _, reports = _ours("ssam", _batches(8), sparsity=sparsity, mask=mask, update_every=2, drop_rate=0.5,
                       drop_horizon=8, num_samples=4, rho=0.05, lr=0.1)
    patterns = []
    for t, report in enumerate(reports):
        live = _flat(report.perturbation) != 0
        assert int(live.sum()) == kept, f"step {t}"
        assert report.extra["mask_density"] == pytest.approx(kept / N_ENTRIES, abs=1e-15)
        assert float(_flat(report.perturbation).norm()) <= 0.05 * (1 + 1e-12)  # ‖e‖ ≤ ρ: the norm is s's whole
        patterns.append(live)
    # refreshes at steps 0, 2, 4, ...: SSAM-F's mask serves its own step, SSAM-D's (chosen after the perturbation)
    # the next one; in between the mask holds, and its overlap with the previous step's is 1
    first_new = 2 if mask == "fisher" else 1
    for t in range(1, len(patterns)):
        if (t - first_new) % 2:
            assert torch.equal(patterns[t], patterns[t - 1]), f"step {t}"
            assert reports[t].extra["mask_overlap"] == 1.0, f"step {t}"
        else:
            overlap = float((patterns[t] & patterns[t - 1]).sum()) / kept
            assert reports[t].extra["mask_overlap"] == pytest.approx(overlap, abs=1e-15), f"step {t}"
    if mask == "dynamic" and round(kept * 0.5) > 0:  # step 0's refresh (death rate 0.5) replaced entries
        assert not torch.equal(patterns[1], patterns[0])


@pytest.mark.parametrize("mask", ["fisher", "dynamic"])
def test_training_loop_mask_density_is_the_stated_share(mask):
    for sparsity in (0.5, 0.9, 0.99):
        r = run(SMALL.replace(sparsity=sparsity, mask=mask, update_every=3, drop_horizon=8, num_samples=4))
        kept = round((1 - sparsity) * r.n_params)
        np.testing.assert_allclose(r.extra["mask_density"], kept / r.n_params, rtol=0, atol=1e-15)


# ---- Fisher scores against a loop over single samples -------------------------------------------------------


@pytest.mark.parametrize("n_samples", [1, 5, 16])
def test_fisher_scores_are_single_sample_gradients_squared_and_summed(n_samples):
    model = _model(3)
    x, y = _batches(1, size=16, seed=4)[0]
    expected = _reference_fisher(model, x, y, n_samples)
    closure = BatchClosure(model, _per_sample_ce, x, y)
    closure()
    oracle = ClosureOracle(list(model.parameters()), closure, "ssam")
    scores = fisher_scores(oracle, n_samples, oracle.grad().grads[0])
    assert [s.shape for s in scores] == [(1, *p.shape) for p in model.parameters()]
    np.testing.assert_allclose(_flat(scores).numpy(), expected.numpy(), rtol=1e-13, atol=0)
    assert oracle.grad_calls == 1 + n_samples and oracle.grad_samples == 16 + n_samples  # one sample per pass


@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.99])
def test_fisher_mask_is_the_top_of_the_loops_score(sparsity):
    """Every step refreshes (update_every 1): the perturbed entries are exactly the largest Fisher scores of a
    plain-autograd loop at θ_t over the batch's first num_samples samples."""
    n_samples = 6
    kept = round((1 - sparsity) * N_ENTRIES)
    expected_masks = []

    def record_fisher(model, x, y):
        scores = _reference_fisher(model, x, y, n_samples)
        ranked = scores.sort(descending=True).values
        assert ranked[kept - 1] > ranked[kept]  # no tie at the cut: the top set is unique
        expected_masks.append(_kept(kept, scores))

    _, reports = _ours("ssam", _batches(6), sparsity=sparsity, mask="fisher", update_every=1,
                       num_samples=n_samples, rho=0.05, lr=0.2, momentum=0.9, before_step=record_fisher)
    for t, (report, expected) in enumerate(zip(reports, expected_masks)):
        assert torch.equal(_flat(report.perturbation) != 0, expected), f"step {t}"
        assert report.grad_calls == 2 + n_samples  # the Fisher passes are counted


def test_fisher_mask_is_refreshed_only_every_update_every_steps():
    n_samples, kept = 4, round(0.2 * N_ENTRIES)
    fishers = []
    _, reports = _ours("ssam", _batches(7), sparsity=0.8, mask="fisher", update_every=3, num_samples=n_samples,
                       rho=0.05, lr=0.3, before_step=lambda m, x, y: fishers.append(_reference_fisher(m, x, y, 4)))
    for t, report in enumerate(reports):
        chosen_at = t - t % 3
        assert torch.equal(_flat(report.perturbation) != 0, _kept(kept, fishers[chosen_at])), f"step {t}"
        assert report.grad_calls == (2 + n_samples if t % 3 == 0 else 2)


# ---- stacked runs and sweep cells ---------------------------------------------------------------------------


def _assert_runs_equal(a, b, rtol=1e-10, atol=1e-12):
    for name in RECORD_FIELDS:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, atol=atol, equal_nan=True,
                                   err_msg=name)
    assert set(a.extra) == set(b.extra)
    for name in a.extra:
        np.testing.assert_allclose(a.extra[name], b.extra[name], rtol=rtol, atol=atol, equal_nan=True, err_msg=name)


@pytest.mark.parametrize("mask", ["fisher", "dynamic"])
def test_stacked_runs_equal_separate_runs(mask):
    configs = [SMALL.replace(seed=s, rho=r, sparsity=k, mask=mask, update_every=3, num_samples=4, drop_horizon=8)
               for s, r, k in zip([0, 1, 0], [0.05, 0.1, 0.2], [0.5, 0.9, 0.99])]
    for stacked, config in zip(train(configs), configs):
        _assert_runs_equal(stacked, run(config))


def test_a_dense_run_stacked_with_sparse_ones_equals_its_single_run():
    """Dynamic masks: a sparsity-0 run beside sparse ones takes an all-ones mask that no refresh changes."""
    configs = [SMALL.replace(seed=s, rho=r, sparsity=k, mask="dynamic", update_every=3, drop_horizon=8)
               for s, r, k in zip([0, 1, 0], [0.05, 0.1, 0.2], [0.5, 0.9, 0.0])]
    for stacked, config in zip(train(configs), configs):
        _assert_runs_equal(stacked, run(config))


def test_a_dense_fisher_run_stacked_with_sparse_ones_records_sams_cost():
    configs = [SMALL.replace(seed=s, rho=r, sparsity=k, update_every=3, num_samples=4)
               for s, r, k in zip([0, 1, 0], [0.05, 0.1, 0.2], [0.5, 0.9, 0.0])]
    for stacked, config in zip(train(configs), configs):
        _assert_runs_equal(stacked, run(config))


@pytest.mark.parametrize("mask", ["fisher", "dynamic"])
def test_every_sweep_cell_equals_its_single_run(mask):
    grid = run_grid(SMALL.replace(steps=6, mask=mask, update_every=2, num_samples=4, drop_horizon=6),
                    ("rho", [0.0, 0.1]), ("lr", [0.05, 0.2]), seeds=2, strategy="batched", lambda_max=False)
    for s, i, j in np.ndindex(grid.shape):
        assert_cell_equals_run(grid, s, i, j)


@pytest.mark.parametrize("sparsities", [
    [0.5, 0.9],
    [0.0, 0.9],
])
def test_every_sparsity_cell_equals_its_single_run(sparsities):
    """Also in cost (``total_grad_evals``, which ``assert_cell_equals_run`` leaves out)."""
    grid = run_grid(SMALL.replace(steps=6, update_every=2, num_samples=4), ("sparsity", sparsities),
                    ("rho", [0.05, 0.2]), seeds=1, strategy="batched", lambda_max=False)
    for s, i, j in np.ndindex(grid.shape):
        r = run(grid.cell_config(s, i, j))
        assert_cell_equals_run(grid, s, i, j, r)
        assert grid.total_grad_evals[s, i, j] == pytest.approx(float(np.nansum(r.grad_evals)), rel=1e-12)
