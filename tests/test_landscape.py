"""Planes, surfaces and projections against naive per-point evaluation and exact geometry."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from sam_viz import landscape as L
from sam_viz.config import Config
from sam_viz.data import TASKS, analytic_loss
from sam_viz.models import split_parameters
from sam_viz.train import run, setup


@pytest.fixture(autouse=True)
def _fresh_caches():
    L.clear_caches()
    yield
    L.clear_caches()


def _setup(**kw):
    s = setup(Config(**({"task": "moons", "n_samples": 200, "test_fraction": 0.0, "width": 16, "device": "cpu"} | kw)))
    return s.model, s.loss, (s.x_train, s.y_train)


def _naive_surface(model, loss_fn, batch, plane, alpha, beta, with_accuracy=False):
    """The reference: copy the model, write each grid point's parameters into it, run it. Loss, or (loss,
    accuracy) grids."""
    clone = copy.deepcopy(model)
    out, acc = np.empty((len(beta), len(alpha))), np.empty((len(beta), len(alpha)))
    with torch.no_grad():
        for i, b in enumerate(beta):
            for j, a in enumerate(alpha):
                vec = torch.as_tensor(plane.point(a, b), dtype=next(clone.parameters()).dtype)
                torch.nn.utils.vector_to_parameters(vec, clone.parameters())
                logits = clone(batch[0])
                out[i, j] = float(loss_fn(logits, batch[1]))
                if with_accuracy:
                    acc[i, j] = float((logits.argmax(-1) == batch[1]).double().mean())
    return (out, acc) if with_accuracy else out


def _snapshot(model):
    return ([p.detach().clone() for p in model.parameters()], [p.requires_grad for p in model.parameters()],
            [None if p.grad is None else p.grad.clone() for p in model.parameters()], model.training)


def _assert_unchanged(model, snap):
    params, flags, grads, training = snap
    for p, q, f, g in zip(model.parameters(), params, flags, grads):
        assert torch.equal(p.detach(), q) and p.requires_grad == f
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)
    assert model.training == training


# ---- directions ---------------------------------------------------------------------------------------------

def test_filter_normalisation_holds_per_filter():
    model, _, _ = _setup(task="digits", model="cnn", n_samples=100)
    d = L.random_directions(model, seed=3)
    assert d.shape == (2, sum(p.numel() for p in model.parameters()))
    for k in range(2):
        views = split_parameters(model, torch.as_tensor(d[k]))
        for name, p in model.named_parameters():
            v = views[name]
            if p.dim() == 1:
                assert torch.all(v == 0), name  # ignore="biasbn"
            else:
                np.testing.assert_allclose(v.reshape(v.shape[0], -1).norm(dim=1), p.detach().double().reshape(p.shape[0], -1).norm(dim=1), rtol=1e-10)


def test_directions_are_seeded_and_biases_optional():
    model, _, _ = _setup()
    np.testing.assert_array_equal(L.random_directions(model, 1), L.random_directions(model, 1))
    assert not np.array_equal(L.random_directions(model, 1), L.random_directions(model, 2))
    d = L.random_directions(model, 1, ignore=None)
    views = split_parameters(model, torch.as_tensor(d[0]))
    bias = dict(model.named_parameters())["layers.0.bias"]
    assert float(views["layers.0.bias"].norm()) == pytest.approx(float(bias.detach().double().norm()), rel=1e-10)
    with pytest.raises(ValueError, match="ignore"):
        L.random_directions(model, 1, ignore="bn")


# ---- surfaces -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("evaluator", ["loop", "vmap", "mlp", "onednn", "auto"])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_surface_equals_naive_loop(evaluator, activation):
    model, loss_fn, batch = _setup(activation=activation)
    plane = L.random_plane(model, seed=0)
    snap = _snapshot(model)
    s = L.surface(model, loss_fn, batch, plane, span=1.0, resolution=9, evaluator=evaluator)
    expected = _naive_surface(model, loss_fn, batch, plane, s.alpha, s.beta)
    np.testing.assert_allclose(s.loss, expected, rtol=1e-5, atol=1e-6)
    assert s.loss.shape == (9, 9) and s.accuracy.shape == (9, 9)
    _assert_unchanged(model, snap)


FUSED_CASES = [
    {"activation": activation} for activation in ("gelu", "sigmoid", "softplus", "elu")
] + [
    {"model": "logistic"},  # one Linear: the first layer is also the two-class last layer
    {"depth": 3, "activation": "relu"},
    {"task": "digits", "n_samples": 120, "activation": "relu"},  # 64 inputs (factorised first layer), 10 classes
    {"task": "digits", "n_samples": 120, "model": "logistic"},
    {"task": "blobs", "activation": "tanh"},  # more than two classes on 2-D inputs
]


@pytest.mark.parametrize("evaluator", ["mlp", "onednn"])
@pytest.mark.parametrize("case", FUSED_CASES, ids=lambda c: "-".join(map(str, c.values())))
def test_fused_evaluators_equal_naive_loop_for_every_chain(evaluator, case):
    model, loss_fn, batch = _setup(**case)
    plane = L.random_plane(model, seed=2)
    s = L.surface(model, loss_fn, batch, plane, span=0.8, resolution=5, evaluator=evaluator)
    assert s.evaluator == evaluator
    loss, accuracy = _naive_surface(model, loss_fn, batch, plane, s.alpha, s.beta, with_accuracy=True)
    np.testing.assert_allclose(s.loss, loss, rtol=1e-5, atol=1e-6)
    # the accuracy surface as well: the fused paths compute it from logits (or the logit difference) themselves
    np.testing.assert_allclose(s.accuracy, accuracy, atol=1e-6)


def test_cnn_surface_equals_naive_loop_and_centre_is_the_model_loss():
    model, loss_fn, batch = _setup(task="digits", model="cnn", n_samples=150)
    plane = L.random_plane(model, seed=1)
    s = L.surface(model, loss_fn, batch, plane, span=0.5, resolution=5)
    np.testing.assert_allclose(s.loss, _naive_surface(model, loss_fn, batch, plane, s.alpha, s.beta), rtol=1e-5, atol=1e-6)
    assert s.center_value == pytest.approx(float(loss_fn(model(batch[0]), batch[1]).detach()), rel=1e-5)
    assert s.alpha[2] == 0.0 and s.beta[2] == 0.0  # odd resolution: the centre is on the grid


def test_accuracy_surface_matches_the_model():
    model, loss_fn, batch = _setup()
    s = L.surface(model, loss_fn, batch, L.random_plane(model, seed=0), resolution=3)
    acc = float((model(batch[0]).argmax(1) == batch[1]).double().mean())
    assert s.accuracy[1, 1] == pytest.approx(acc)


def test_progressive_grids_refine_and_reuse_points():
    model, loss_fn, batch = _setup()
    plane = L.random_plane(model, seed=0)
    levels = list(L.surfaces_progressive(model, loss_fn, batch, plane, span=1.0, resolution=41, levels=3))
    assert [lv.loss.shape for lv in levels] == [(11, 11), (21, 21), (41, 41)]
    final = levels[-1]
    np.testing.assert_array_equal(levels[0].loss, final.loss[::4, ::4])
    np.testing.assert_array_equal(levels[1].loss, final.loss[::2, ::2])
    assert not np.isnan(final.loss).any()
    L.clear_caches()
    np.testing.assert_allclose(L.surface(model, loss_fn, batch, plane, 1.0, 41).loss, final.loss, rtol=1e-6)


def test_the_engine_keeps_no_surfaces():
    model, loss_fn, batch = _setup()
    plane = L.random_plane(model, seed=0)
    first = L.surface(model, loss_fn, batch, plane, 1.0, 11)
    again = L.surface(model, loss_fn, batch, plane, 1.0, 11)
    assert again is not first  # computed again: caching views is the app's job
    np.testing.assert_array_equal(again.loss, first.loss)


def test_planner_choices_can_be_inspected_saved_loaded_and_fixed(tmp_path):
    model, loss_fn, batch = _setup()
    plane = L.random_plane(model, seed=0)
    planner = L.SurfacePlanner()
    name = planner.choose(model, loss_fn, batch, plane, accuracy=True)
    key = planner.key(model, loss_fn, batch, accuracy=True)
    assert planner.choices[key].evaluator == name and planner.choices[key].source == "measured"
    assert name in {n for n, _ in L.candidates(model, batch[0].shape[0])}
    assert set(planner.timings[key]) == {f"{n}/{c}" for n, c in L.candidates(model, batch[0].shape[0])}
    s = L.surface(model, loss_fn, batch, plane, 1.0, 5, planner=planner)
    assert s.evaluator == name and L.default_planner().choices == {}  # the planner passed, not the default
    # fixed by hand: the fix wins, and the surface is the same to float tolerance
    other = "loop" if name != "loop" else "vmap"
    planner.fix(key, other)
    fixed = L.surface(model, loss_fn, batch, plane, 1.0, 5, planner=planner)
    assert fixed.evaluator == other
    np.testing.assert_allclose(fixed.loss, s.loss, rtol=1e-5, atol=1e-6)
    # saved and loaded (FFTW's wisdom): a fresh planner takes the choice without measuring
    planner.save(tmp_path / "wisdom.json")
    loaded = L.SurfacePlanner().load(tmp_path / "wisdom.json")
    assert loaded.choices[key].evaluator == other and loaded.choices[key].source == "loaded" and not loaded.timings
    with pytest.raises(ValueError, match="evaluator"):
        planner.fix(key, "magic")
    # measure=False: the documented fixed default, no timing
    estimate = L.SurfacePlanner(measure=False)
    assert estimate.choose(model, loss_fn, batch, plane, True) == L.default_evaluator(model) == "mlp"
    assert not estimate.timings


def test_subsample_preview_is_seeded():
    model, loss_fn, batch = _setup()
    plane = L.random_plane(model, seed=0)
    a = L.surface(model, loss_fn, batch, plane, 1.0, 5, max_samples=50, seed=4)
    b = L.surface(model, loss_fn, batch, plane, 1.0, 5, max_samples=50, seed=4)
    assert a.n_samples == 50 and np.array_equal(a.loss, b.loss)
    assert not np.allclose(a.loss, L.surface(model, loss_fn, batch, plane, 1.0, 5).loss)


def test_limits_and_bad_planes_raise():
    model, loss_fn, batch = _setup()
    plane = L.random_plane(model, seed=0)
    with pytest.raises(ValueError, match="resolution"):
        L.surface(model, loss_fn, batch, plane, 1.0, L.MAX_RESOLUTION + 1)
    with pytest.raises(ValueError, match="span"):
        L.surface(model, loss_fn, batch, plane, float("nan"), 5)
    with pytest.raises(ValueError, match="plane"):
        L.surface(model, loss_fn, batch, L.axes_plane(), 1.0, 5)
    with pytest.raises(ValueError, match="evaluator"):
        L.surface(model, loss_fn, batch, plane, 1.0, 5, evaluator="magic")


def test_float64_models_get_the_evaluators_that_run_float64():
    model, loss_fn, batch = _setup(dtype="float64")
    plane = L.random_plane(model, seed=0)
    with pytest.raises(ValueError, match="onednn"):  # oneDNN has no float64 GEMM: not offered, with the valid list
        L.surface(model, loss_fn, batch, plane, 1.0, 5, evaluator="onednn")
    s = L.surface(model, loss_fn, batch, plane, 1.0, 5)
    assert s.evaluator != "onednn"
    np.testing.assert_allclose(s.loss, _naive_surface(model, loss_fn, batch, plane, s.alpha, s.beta), rtol=1e-10)


def test_analytic_surface_is_exact_and_matches_the_point_model():
    info = TASKS["sharp_flat"]
    s = L.analytic_surface("sharp_flat", info.xlim, info.ylim, 31)
    ww1, ww2 = np.meshgrid(s.alpha, s.beta)
    np.testing.assert_array_equal(s.loss, analytic_loss("sharp_flat", torch.as_tensor(np.stack([ww1, ww2], -1))).numpy())
    # the generic evaluator on the point model's coordinate plane gives the same numbers (noise has zero mean)
    model, loss_fn, batch = _setup(task="sharp_flat", model="point", dtype="float64", noise=0.5)
    generic = L.surface(model, loss_fn, batch, L.axes_plane(), (info.xlim[0], info.xlim[1]), 31)
    # axes_plane spans the same range on both axes: compare along the shared rows
    np.testing.assert_allclose(generic.loss[:, 0], analytic_loss("sharp_flat", torch.as_tensor(
        np.stack([np.full(31, generic.alpha[0]), generic.beta], -1))).numpy(), atol=1e-12)


# ---- planes from trajectories and projections ---------------------------------------------------------------

def test_pca_plane_recovers_a_planar_trajectory():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(50, 2)))[0]
    coords = np.stack([np.linspace(3, 0, 20), np.sin(np.linspace(0, 3, 20))], 1)
    traj = coords @ basis.T + 1.0
    plane = L.pca_plane(traj)
    assert sum(plane.explained_variance) == pytest.approx(1.0)
    assert plane.explained_variance[0] > plane.explained_variance[1]
    proj = L.project(plane, traj)
    np.testing.assert_allclose(proj.off_plane, 0, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm([plane.d1, plane.d2], axis=1), 1.0)
    with pytest.raises(ValueError, match="three snapshots"):
        L.pca_plane(traj[:2])


def test_three_point_plane_coordinates():
    rng = np.random.default_rng(1)
    a, b, c = rng.normal(size=(3, 30))
    plane = L.three_point_plane(a, b, c)
    proj = L.project(plane, np.stack([a, b, c]))
    np.testing.assert_allclose(proj.alpha[:2], [0, 1], atol=1e-12)
    np.testing.assert_allclose(proj.beta, [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(proj.off_plane, 0, atol=1e-12)
    with pytest.raises(ValueError, match="collinear"):
        L.three_point_plane(a, b, 2 * b - a)


def test_projection_reports_off_plane_distance_and_both_losses():
    model, loss_fn, batch = _setup()
    plane = L.random_plane(model, seed=0)
    q = np.linalg.qr(np.stack([plane.d1, plane.d2], 1))[0]  # orthonormal basis of the plane's directions
    normal = np.random.default_rng(2).normal(size=plane.d1.shape)
    normal -= q @ (q.T @ normal)
    normal /= np.linalg.norm(normal)
    inside = plane.point(0.3, -0.2)
    outside = inside + 0.5 * normal
    proj = L.project(plane, np.stack([inside, outside]), model, loss_fn, batch)
    np.testing.assert_allclose([proj.alpha[0], proj.beta[0]], [0.3, -0.2], atol=1e-9)
    assert proj.off_plane[0] == pytest.approx(0, abs=1e-9) and proj.off_plane[1] == pytest.approx(0.5, rel=1e-6)
    assert proj.true_loss[0] == pytest.approx(proj.plane_loss[0], rel=1e-6)
    assert proj.true_loss[1] != pytest.approx(proj.plane_loss[1], rel=1e-6)
    assert proj.plane_loss[1] == pytest.approx(proj.plane_loss[0], rel=1e-5)  # same projection


def test_trajectories_of_several_runs_share_one_plane():
    config = Config(n_samples=200, width=16, steps=40, snapshot_every=4, device="cpu", dtype="float64")
    runs = [run(config.with_optimizer(name)) for name in ("sgd", "sam")]
    plane = L.pca_plane([r.weights for r in runs])
    model, loss_fn, batch = _setup(width=16, dtype="float64", test_fraction=0.25)
    for r in runs:
        proj = L.project(plane, r.weights, model, loss_fn, batch)
        assert proj.alpha.shape == (r.weights.shape[0],)
        np.testing.assert_allclose(proj.true_loss[:-1], r.train_loss[r.snapshot_step[:-1]], rtol=1e-10)


def test_line_profile_hits_its_endpoints():
    model, loss_fn, batch = _setup()
    a = L.flat_parameters(model)
    b = a + L.random_directions(model, 0)[0]
    t, loss = L.line_profile(model, loss_fn, batch, a, b, resolution=5, span=(0.0, 1.0))
    assert t.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert loss[0] == pytest.approx(float(loss_fn(model(batch[0]), batch[1]).detach()), rel=1e-6)
