"""``sam_viz.own_model``: the engine's analyses on a user's module (a tiny CNN with BatchNorm), in evaluation mode."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sam_viz import own_model as om
from sam_viz.optim import OPTIMIZERS
from sam_viz.planes import flat_parameters


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 2 * 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.bn(self.conv(x))).flatten(1))


def per_sample(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y, reduction="none")


LOSS = om.mean_loss(per_sample)


@pytest.fixture()
def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 1, 4, 4, generator=g)
    y = (x[:, 0, 1:3, 1:3].sum((1, 2)) > 0).long() + (x[:, 0, 0, 0] > 1).long()
    return (x[:32], y[:32]), (x[32:], y[32:])


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return TinyCNN()


def _buffers(m: nn.Module) -> dict[str, torch.Tensor]:
    return {n: b.clone() for n, b in m.named_buffers()}


def test_evaluation_mode_restores_every_flag(model):
    model.train()
    model.fc.eval()  # a mixed state must come back as it was
    with om.evaluation_mode(model):
        assert not any(m.training for m in model.modules())
    assert model.training and model.bn.training and not model.fc.training


def test_analyses_use_eval_mode_and_leave_the_model_alone(model, data):
    train, _ = data
    om.train_model(model, per_sample, train, optimizer="sam", steps=5, batch_size=16, lr=0.1, rho=0.05)
    model.train()
    before, theta = _buffers(model), flat_parameters(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", om.GeneralPathWarning)
        plane = om.planes(model, LOSS, train)["random"]
        s = om.own_surface(model, LOSS, train, plane, span=0.5, resolution=5)
    om.spectrum(model, LOSS, train, k=2, iters=10, n_vectors=1)
    om.own_layer_spectra(model, LOSS, train, k=1)
    after = _buffers(model)
    with om.evaluation_mode(model), torch.no_grad():
        eval_loss = float(LOSS(model(train[0]), train[1]))
    with torch.no_grad():
        train_mode_loss = float(LOSS(model(train[0]), train[1]))  # batch statistics (and updates the buffers)
    assert all(torch.equal(before[n], after[n]) for n in before if "num_batches" not in n)
    assert np.array_equal(flat_parameters(model), theta)
    # the surface's centre is the evaluation-mode loss at θ, which differs from the batch-statistics loss
    assert s.center_value == pytest.approx(eval_loss, rel=1e-5)
    assert abs(train_mode_loss - eval_loss) > 1e-4


def test_the_hessian_is_the_eval_mode_hessian(model, data):
    train, _ = data
    model = model.double()
    model.bn.running_mean.uniform_(-0.3, 0.3)
    model.train()
    x, y = train[0].double(), train[1]
    eigen, density = om.spectrum(model, LOSS, (x, y), k=3, iters=20, n_vectors=1)
    with om.evaluation_mode(model):
        from sam_viz.hessian import dense_hessian
        exact = torch.linalg.eigvalsh(dense_hessian(model, LOSS, (x, y))).flip(0).numpy()
    np.testing.assert_allclose(eigen.eigenvalues, exact[:3], rtol=1e-6, atol=1e-10)
    assert density is not None and np.isfinite(density.density).all()
    assert model.training


def test_general_path_warning_only_for_models_the_fused_evaluator_cannot_run(model, data):
    train, _ = data
    plane = om.planes(model, LOSS, train)["random"]
    with pytest.warns(om.GeneralPathWarning, match="not a chain of Linear layers"):
        s = om.own_surface(model, LOSS, train, plane, span=0.5, resolution=3)
    assert s.evaluator == "loop"
    mlp = nn.Sequential(nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 3))
    flat = (train[0].flatten(1), train[1])
    with warnings.catch_warnings():
        warnings.simplefilter("error", om.GeneralPathWarning)
        s = om.own_surface(mlp, LOSS, flat, om.planes(mlp, LOSS, flat)["random"], span=0.5, resolution=3)
    assert s.evaluator == "mlp"


# mup2 perturbs an MLP's layers by their width (its entry says so): not a method for a CNN
ANY_MODEL = [name for name in OPTIMIZERS if name != "mup2"]


@pytest.mark.parametrize("name", ANY_MODEL)
def test_every_registry_optimizer_trains_a_cnn_through_make(name, model, data):
    train, test = data
    theta0 = flat_parameters(model)
    result = om.train_model(model, per_sample, train, optimizer=name, steps=4, batch_size=16, snapshot_every=2,
                            heldout=test)
    assert not result.diverged and np.isfinite(result.loss).all()
    assert result.weights.shape == (3, theta0.size) and list(result.snapshot_step) == [0, 2, 4]
    assert np.array_equal(result.weights[0], theta0) and not np.array_equal(result.weights[-1], theta0)
    assert np.array_equal(result.weights[-1], flat_parameters(model))
    if OPTIMIZERS[name].two_pass:  # some skip the ascent on a step (sampa's first, looksam's k-1 of k)
        assert result.eps_norm.max() > 0


def test_train_model_rejects_bad_input(model, data):
    train, _ = data
    with pytest.raises(ValueError, match="Invalid optimizer"):
        om.train_model(model, per_sample, train, optimizer="nope")
    with pytest.raises(ValueError, match="Invalid steps"):
        om.train_model(model, per_sample, train, steps=0)
    with pytest.raises(ValueError, match="held-out"):
        om.train_model(model, per_sample, train, optimizer="lets")
    with pytest.raises(ValueError, match="rho"):
        om.train_model(model, per_sample, train, rho=-1.0)


def test_planes_pca_spans_the_snapshots_and_hessian_plane_holds_the_top_pair(model, data):
    train, _ = data
    result = om.train_model(model, per_sample, train, optimizer="sam", steps=12, batch_size=16, snapshot_every=3,
                            lr=0.2, rho=0.05)
    p = om.planes(model, LOSS, train, result)
    assert set(p) == {"random", "pca", "hessian"}
    assert all(np.array_equal(plane.origin, flat_parameters(model)) for plane in p.values())
    proj = om.trajectory(p["pca"], result, model, LOSS, train)
    assert proj.off_plane.shape == (5,) and proj.off_plane[-1] < 1e-9  # the final snapshot is the origin
    eigen, _ = om.spectrum(model, LOSS, train, k=2, density=False)
    np.testing.assert_allclose(p["hessian"].info["eigenvalues"], eigen.eigenvalues, rtol=1e-3)
    assert np.isnan(result.eps_at_snapshots()[-1]) and np.isfinite(result.eps_at_snapshots()[:-1]).all()


def explosive(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """exp(CE): finite while training is tame, inf in float32 once CE passes ~88 (a large learning rate)."""
    return torch.exp(per_sample(out, y))


def test_rho_lr_grid_cells_are_the_single_trainings(model, data):
    train, test = data
    initial = copy.deepcopy(model)
    kwargs = dict(steps=8, batch_size=16, momentum=0.9)
    grid = om.rho_lr_grid(model, explosive, train, test, rho=[0.0, 0.1], lr=[0.01, 10.0], **kwargs)
    assert grid.final_test_acc.shape == (2, 2)
    assert np.array_equal(flat_parameters(model), flat_parameters(initial))  # cells train copies
    assert not grid.diverged[0].any() and grid.diverged[1].all()
    assert np.isnan(grid.final_test_loss[1]).all() and np.isfinite(grid.final_test_loss[0]).all()
    single = copy.deepcopy(initial)
    om.train_model(single, explosive, train, optimizer="sam", rho=0.1, lr=0.01, **kwargs)
    with om.evaluation_mode(single), torch.no_grad():
        expected = float(explosive(single(test[0]), test[1]).mean())
    assert grid.final_test_loss[0, 1] == pytest.approx(expected, rel=1e-6)
    title, values, diverged = grid.panel("final_test_acc")
    assert title == "SAM" and values is grid.final_test_acc and diverged is grid.diverged
    with pytest.raises(ValueError, match="has no rho"):
        om.rho_lr_grid(model, per_sample, train, test, rho=[0.1], lr=[0.1], optimizer="sgd")
    with pytest.raises(ValueError, match="Invalid metric"):
        grid.panel("accuracy")
