"""ESAM against the official code's step written out by hand (dydjw9/Efficient_SAM utils/Esam.py), its
invariants (β = γ = 1 is SAM, the selection, the ρ/β radius), per-run draws, stacked runs and sweep cells."""

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

from sam_viz.config import Config
from sam_viz.optim import BatchClosure, make
from sam_viz.optim.draws import run_seeds
from sam_viz.optim.esam import kept_tensors, sharpest_samples
from sam_viz.sweep import run_grid
from sam_viz.train import RECORD_FIELDS, run, train

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = Config(optimizer="esam", n_samples=128, width=8, steps=8, batch_size=32, dtype="float64", device="cpu")


def _ours(name: str, batches, seed: int = 0, **hp) -> tuple[list[np.ndarray], list]:
    """A user's loop: backward at θ, then ``opt.step(BatchClosure(...))``; the path and the step reports."""
    model = _model(seed)
    opt = make(name, model.parameters(), **hp)
    path, reports = [_flat(model)], []
    for x, y in batches:
        closure = BatchClosure(model, _per_sample_ce, x, y)
        closure()
        opt.step(closure)
        path.append(_flat(model))
        reports.append(opt.last)
    return path, reports


def _reference(batches, *, rho, beta, gamma, lr, momentum, weight_decay, seed=0) -> list[np.ndarray]:
    """The official ESAM step, written out: SWP zeroes the excluded tensors' ascent gradient and divides the scale
    by β; SDS keeps the samples strictly sharper than the ⌊γB⌋-th largest sharpness; every tensor descends. The
    tensor draws are the only thing taken from the implementation (its documented per-run generator)."""
    model = _model(seed)
    params = list(model.parameters())
    seeds = run_seeds([p.detach().unsqueeze(0) for p in params])
    base = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    path = [_flat(model)]
    for t, (x, y) in enumerate(batches):
        keep = kept_tensors(seeds, t, len(params), beta)[0].tolist()
        base.zero_grad()
        l_before = _per_sample_ce(model(x), y)
        l_before.mean().backward()
        with torch.no_grad():
            s = [p.grad.clone() if k else torch.zeros_like(p) for p, k in zip(params, keep)]
            norm = torch.sqrt(sum((g * g).sum() for g in s))
            scale = rho / (norm + 1e-12) / beta
            old = [p.clone() for p in params]
            for p, g in zip(params, s):
                p.add_(g * scale)
            sharpness = _per_sample_ce(model(x), y) - l_before.detach()
            if gamma >= 0.99:
                indices = torch.ones(len(y), dtype=torch.bool)
            else:
                position = int(len(y) * gamma)
                cutoff = torch.topk(sharpness, position).values[-1]
                indices = sharpness > cutoff
                if not indices.any():
                    indices = torch.ones(len(y), dtype=torch.bool)
        base.zero_grad()
        nn.functional.cross_entropy(model(x[indices]), y[indices]).backward()
        with torch.no_grad():
            for p, o in zip(params, old):
                p.copy_(o)
        base.step()
        path.append(_flat(model))
    return path


@pytest.mark.parametrize("beta,gamma", [(0.5, 0.5), (0.7, 0.3), (1.0, 0.6), (0.4, 1.0)])
def test_esam_equals_the_official_step_written_out(beta, gamma):
    hp = {"rho": 0.1, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}
    batches = _batches()
    ours, _ = _ours("esam", batches, beta=beta, gamma=gamma, **hp)
    expected = _reference(batches, beta=beta, gamma=gamma, **hp)
    for t, (a, b) in enumerate(zip(ours, expected)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13, err_msg=f"step {t}")


def test_beta_gamma_one_is_sam():
    hp = {"rho": 0.07, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}
    batches = _batches()
    esam, _ = _ours("esam", batches, beta=1.0, gamma=1.0, **hp)
    sam, _ = _ours("sam", batches, **hp)
    for a, b in zip(esam, sam):
        np.testing.assert_array_equal(a, b)
    # and in the training loop, every record
    a = run(SMALL.replace(beta=1.0, gamma=1.0, rho=0.07))
    b = run(SMALL.replace(optimizer="sam", rho=0.07))
    for name in RECORD_FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_array_equal(a.extra["samples_kept_share"], 1.0)
    np.testing.assert_array_equal(a.extra["tensors_perturbed_share"], 1.0)


def test_selected_samples_are_exactly_those_above_the_cutoff():
    g = torch.Generator().manual_seed(3)
    sharpness = torch.randn(4, 20, generator=g, dtype=torch.float64)
    gammas = torch.tensor([0.1, 0.35, 0.5, 0.95], dtype=torch.float64)
    selected = sharpest_samples(sharpness, gammas)
    for r in range(4):
        position = int(20 * float(gammas[r]))
        cutoff = torch.topk(sharpness[r], position).values[-1]
        expected = sharpness[r] > cutoff  # strictly above: the ⌊γB⌋-th sharpest itself is left out
        assert torch.equal(selected[r], expected)
        assert int(selected[r].sum()) == position - 1
    assert sharpest_samples(sharpness, 0.99).all()  # the official code's "every sample" threshold
    assert sharpest_samples(torch.zeros(2, 8, dtype=torch.float64), 0.5).all()  # ρ = 0: all tie, keep the batch
    assert sharpest_samples(sharpness, 0.02).all()  # ⌊γB⌋ = 0 leaves nothing above the cut-off
    # γ stored in float32 (stacked runs) selects as many samples as the Python float of a single run
    for gamma in (0.3, 0.7, 0.55):
        assert torch.equal(sharpest_samples(sharpness, torch.tensor([gamma] * 4, dtype=torch.float32)),
                           sharpest_samples(sharpness, gamma))


def test_ascent_scale_divides_by_beta():
    beta, rho = 0.5, 0.05
    batches = _batches(8)
    _, reports = _ours("esam", batches, beta=beta, gamma=1.0, rho=rho, lr=0.1)
    model = _model()
    seeds = run_seeds([p.detach().unsqueeze(0) for p in model.parameters()])
    partial = 0
    for t, report in enumerate(reports):
        keep = kept_tensors(seeds, t, 4, beta)[0]
        assert report.eps_norm == pytest.approx(rho / beta, rel=1e-9) or not keep.any()
        e = torch.cat([q.reshape(-1) for q in report.perturbation])
        assert float(e.norm()) == pytest.approx(rho / beta, rel=1e-9) or not keep.any()
        for k, q in zip(keep.tolist(), report.perturbation):
            assert bool((q != 0).any()) == k  # excluded tensors are not perturbed
        partial += 0 < int(keep.sum()) < 4
        assert report.extra["tensors_perturbed_share"] == pytest.approx(float(keep.double().mean()))
    assert partial > 0  # some steps perturbed only part of the tensors
    assert kept_tensors(seeds, 0, 4, beta).all()  # the first step perturbs every tensor, as the code does


def test_tensor_draws_keep_each_tensor_with_probability_beta_and_depend_only_on_the_run():
    seeds = torch.tensor([11, 12, 13], dtype=torch.int64)
    keeps = torch.stack([kept_tensors(seeds, t, 10, torch.tensor([0.2, 0.5, 0.9])) for t in range(1, 401)])
    np.testing.assert_allclose(keeps.double().mean(dim=(0, 2)).numpy(), [0.2, 0.5, 0.9], atol=0.03)
    alone = torch.stack([kept_tensors(seeds[1:2], t, 10, 0.5) for t in range(1, 401)])
    assert torch.equal(alone[:, 0], keeps[:, 1])  # run 1's draws with or without the runs beside it


def test_cost_counts_the_kept_samples():
    r = run(SMALL.replace(beta=0.6, gamma=0.5))
    np.testing.assert_array_equal(r.grad_calls, 2.0)
    np.testing.assert_allclose(r.grad_samples, 32 + 32 * r.extra["samples_kept_share"])
    assert (r.extra["samples_kept_share"] == 15 / 32).all()  # ⌊0.5·32⌋ = 16, strictly above the 16th: 15
    assert (r.grad_evals < 2).all()


def _assert_runs_equal(a, b, rtol=1e-10, atol=1e-12):
    for name in RECORD_FIELDS:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, atol=atol, equal_nan=True,
                                   err_msg=name)
    assert set(a.extra) == set(b.extra)
    for name in a.extra:
        np.testing.assert_allclose(a.extra[name], b.extra[name], rtol=rtol, atol=atol, equal_nan=True, err_msg=name)


def test_stacked_runs_equal_separate_runs():
    configs = [SMALL.replace(seed=s, rho=r, beta=b, gamma=g)
               for s, r, b, g in zip([0, 1, 0], [0.0, 0.05, 0.2], [0.5, 0.7, 1.0], [0.5, 0.6, 0.99])]
    for stacked, config in zip(train(configs), configs):
        _assert_runs_equal(stacked, run(config))


def test_runs_of_different_seeds_draw_different_tensors():
    a, b = (run(SMALL.replace(seed=s, steps=12)) for s in (0, 1))
    assert not np.array_equal(a.extra["tensors_perturbed_share"], b.extra["tensors_perturbed_share"])


def test_every_sweep_cell_equals_its_single_run():
    grid = run_grid(SMALL.replace(steps=6), ("rho", [0.0, 0.1]), ("lr", [0.05, 0.2]), seeds=2, strategy="batched",
                    lambda_max=False)
    for s, i, j in np.ndindex(grid.shape):
        assert_cell_equals_run(grid, s, i, j)
