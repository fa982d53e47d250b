"""Tests for sam_viz.data: determinism, shapes, splits, validation and the analytic losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.autograd.functional import hessian

from sam_viz.data import MAX_SAMPLES, TASKS, analytic_loss, make_dataset, train_size

CLASSIFICATION_TASKS = [name for name, info in TASKS.items() if info.kind == "classification"]
ANALYTIC_TASKS = [name for name, info in TASKS.items() if info.kind == "analytic"]
ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def _loss_np(name: str, w: np.ndarray) -> float:
    return analytic_loss(name, torch.as_tensor(w, dtype=torch.float64)).item()


def _grad(name: str, w: torch.Tensor) -> torch.Tensor:
    w = w.detach().clone().requires_grad_(True)
    analytic_loss(name, w).backward()
    return w.grad


def _hessian_eigvals(name: str, w: tuple[float, float]) -> torch.Tensor:
    h = hessian(lambda v: analytic_loss(name, v), torch.tensor(w, dtype=torch.float64))
    return torch.linalg.eigvalsh(h)


def test_registry_is_complete() -> None:
    assert CLASSIFICATION_TASKS == ["moons", "circles", "spirals", "xor", "blobs", "digits"]
    assert ANALYTIC_TASKS == ["sharp_flat", "rosenbrock", "himmelblau", "saddle", "noisy_quadratic"]
    for name, info in TASKS.items():
        assert info.name == name
        assert info.description and "\n" not in info.description


@pytest.mark.parametrize("name", ANALYTIC_TASKS)
def test_analytic_task_info_has_start_window_and_minima(name: str) -> None:
    info = TASKS[name]
    (x0, x1), (y0, y1) = info.xlim, info.ylim
    assert x0 < info.start[0] < x1 and y0 < info.start[1] < y1
    assert info.minima and info.suggested_lr > 0 and info.suggested_rho > 0
    for w in info.minima:
        assert x0 < w[0] < x1 and y0 < w[1] < y1


@pytest.mark.parametrize("name", CLASSIFICATION_TASKS)
def test_classification_shapes_and_dtypes(name: str) -> None:
    ds = make_dataset(name, n_samples=200, test_fraction=0.25)
    d = 64 if name == "digits" else 2
    assert ds.kind == "classification" and ds.name == name and ds.input_dim == d
    assert ds.x_train.shape == (150, d) and ds.x_test.shape == (50, d)
    assert ds.y_train.shape == (150,) and ds.y_test.shape == (50,)
    assert ds.x_train.dtype == np.float64 and ds.y_train.dtype == np.int64
    labels = np.concatenate([ds.y_train, ds.y_test])
    assert set(np.unique(labels)) == set(range(ds.n_classes))


@pytest.mark.parametrize("name", list(TASKS))
def test_same_seed_same_arrays_other_seed_other_arrays(name: str) -> None:
    a = make_dataset(name, n_samples=300, seed=3)
    b = make_dataset(name, n_samples=300, seed=3)
    c = make_dataset(name, n_samples=300, seed=4)
    for attr in ARRAYS:
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))
    assert not np.array_equal(a.x_train, c.x_train)


@pytest.mark.parametrize(("name", "kwargs"), [("blobs", {"n_classes": 4}), ("digits", {"n_samples": 1797})])
def test_split_is_stratified(name: str, kwargs: dict[str, int]) -> None:
    ds = make_dataset(name, test_fraction=0.3, **kwargs)
    counts_all = np.bincount(np.concatenate([ds.y_train, ds.y_test]))
    expected = counts_all * len(ds.y_test) / counts_all.sum()
    # Stratification leaves each class at most one example off its share.
    assert np.all(np.abs(np.bincount(ds.y_test, minlength=len(counts_all)) - expected) <= 1)


def test_zero_test_fraction_gives_empty_test_arrays() -> None:
    ds = make_dataset("moons", n_samples=100, test_fraction=0.0)
    assert ds.x_train.shape == (100, 2) and ds.y_train.shape == (100,)
    assert ds.x_test.shape == (0, 2) and ds.y_test.shape == (0,)
    assert ds.x_test.dtype == np.float64 and ds.y_test.dtype == np.int64


def test_tiny_sets_still_split() -> None:
    ds = make_dataset("digits", n_samples=8, test_fraction=0.9)
    assert len(ds.y_train) + len(ds.y_test) == 8 and len(ds.y_train) >= 1


def test_digits_scaled_capped_and_noise_free() -> None:
    full = make_dataset("digits", n_samples=MAX_SAMPLES, test_fraction=0.0)
    assert full.x_train.shape == (1797, 64) and full.n_classes == 10
    assert full.x_train.min() == 0.0 and full.x_train.max() == 1.0
    a = make_dataset("digits", n_samples=300, noise=0.0)
    b = make_dataset("digits", n_samples=300, noise=5.0)
    assert len(a.y_train) + len(a.y_test) == 300
    np.testing.assert_array_equal(a.x_train, b.x_train)


def test_xor_labels_follow_quadrants() -> None:
    ds = make_dataset("xor", n_samples=400, noise=0.0, test_fraction=0.0)
    assert np.all(np.abs(ds.x_train) <= 1.0)
    np.testing.assert_array_equal(ds.y_train, (ds.x_train[:, 0] * ds.x_train[:, 1] > 0).astype(np.int64))


def test_blobs_have_n_classes() -> None:
    ds = make_dataset("blobs", n_samples=500, n_classes=7)
    assert ds.n_classes == 7 and set(np.unique(ds.y_train)) == set(range(7))


def test_noise_widens_the_moons() -> None:
    clean = make_dataset("moons", noise=0.0, test_fraction=0.0).x_train
    noisy = make_dataset("moons", noise=0.5, test_fraction=0.0).x_train
    assert noisy.std() > clean.std()


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"name": "nope"}, "name"),
        ({"n_samples": 7}, "n_samples"),
        ({"n_samples": MAX_SAMPLES + 1}, "n_samples"),
        ({"n_samples": 100.0}, "n_samples"),
        ({"noise": -0.1}, "noise"),
        ({"noise": float("nan")}, "noise"),
        ({"noise": "0.1"}, "noise"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"test_fraction": 0.95}, "test_fraction"),
        ({"test_fraction": float("nan")}, "test_fraction"),
        ({"seed": -1}, "seed"),
        ({"seed": True}, "seed"),
        ({"n_classes": 1}, "n_classes"),
        ({"n_classes": 11}, "n_classes"),
    ],
)
def test_invalid_arguments_name_the_parameter(kwargs: dict[str, object], param: str) -> None:
    args = {"name": "blobs", **kwargs}
    with pytest.raises(ValueError, match=param):
        make_dataset(**args)


def test_unknown_task_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="moons.*sharp_flat"):
        make_dataset("nope")


def test_limits_and_numpy_scalars_are_accepted() -> None:
    ds = make_dataset("moons", n_samples=MAX_SAMPLES, test_fraction=0.0)
    assert ds.x_train.shape == (MAX_SAMPLES, 2)
    ds = make_dataset("moons", n_samples=np.int64(8), noise=np.float32(0.1), test_fraction=0.9)
    assert len(ds.y_train) + len(ds.y_test) == 8 and len(ds.y_train) >= 1


@pytest.mark.parametrize("name", ANALYTIC_TASKS)
def test_analytic_dataset_holds_centred_noise(name: str) -> None:
    ds = make_dataset(name, n_samples=257, noise=0.3, test_fraction=0.5)
    assert ds.kind == "analytic" and ds.n_classes == 0 and ds.input_dim == 2
    assert ds.x_train.shape == (257, 2) and ds.x_train.dtype == np.float64
    np.testing.assert_array_equal(ds.y_train, np.zeros(257, dtype=np.int64))
    assert ds.x_test.shape == (0, 2) and ds.y_test.shape == (0,)
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-15)
    assert ds.x_train.std() == pytest.approx(0.3, rel=0.15)


def test_zero_noise_gives_zero_vectors() -> None:
    ds = make_dataset("saddle", n_samples=16, noise=0.0)
    np.testing.assert_array_equal(ds.x_train, np.zeros((16, 2)))


@pytest.mark.parametrize("name", ANALYTIC_TASKS)
def test_full_batch_loss_equals_f(name: str) -> None:
    xi = torch.as_tensor(make_dataset(name, n_samples=1000, noise=1.0).x_train)
    for w in torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)):
        per_sample = analytic_loss(name, w) + xi @ w
        torch.testing.assert_close(per_sample.mean(), analytic_loss(name, w), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ANALYTIC_TASKS)
def test_analytic_loss_is_vectorised_in_both_dtypes(name: str) -> None:
    grid = torch.randn(3, 4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    values = analytic_loss(name, grid)
    assert values.shape == (3, 4) and values.dtype == torch.float64
    assert analytic_loss(name, grid[1, 2]).item() == values[1, 2].item()
    single = analytic_loss(name, grid.float())
    assert single.dtype == torch.float32
    torch.testing.assert_close(single.double(), values, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ANALYTIC_TASKS)
def test_gradient_matches_finite_differences(name: str) -> None:
    points = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for w in points:
        grad = _grad(name, w)
        eps = 1e-6
        fd = torch.stack([(analytic_loss(name, w + eps * e) - analytic_loss(name, w - eps * e)) / (2 * eps)
                          for e in torch.eye(2, dtype=torch.float64)])
        torch.testing.assert_close(grad, fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ANALYTIC_TASKS)
def test_listed_minima_are_minima(name: str) -> None:
    for w in TASKS[name].minima:
        grad = _grad(name, torch.tensor(w, dtype=torch.float64))
        assert grad.norm().item() < 1e-4
        assert _hessian_eigvals(name, w).min().item() > 0


def test_known_minimum_values() -> None:
    assert _loss_np("rosenbrock", np.array([1.0, 1.0])) == 0.0
    assert len(TASKS["himmelblau"].minima) == 4
    for w in TASKS["himmelblau"].minima:
        assert _loss_np("himmelblau", np.array(w)) < 1e-20
    for w in TASKS["saddle"].minima:
        assert _loss_np("saddle", np.array(w)) == -0.5
    assert _loss_np("noisy_quadratic", np.zeros(2)) == 0.0


def test_sharp_flat_minima_are_similar_in_depth_but_not_in_sharpness() -> None:
    sharp, flat = TASKS["sharp_flat"].minima
    assert abs(_loss_np("sharp_flat", np.array(sharp)) - _loss_np("sharp_flat", np.array(flat))) < 0.05
    lam_sharp = _hessian_eigvals("sharp_flat", sharp).max().item()
    lam_flat = _hessian_eigvals("sharp_flat", flat).max().item()
    assert lam_sharp >= 10 * lam_flat
    # The suggested step size must keep plain GD stable in the sharp minimum.
    assert TASKS["sharp_flat"].suggested_lr * lam_sharp < 2


def _descend(name: str, w: torch.Tensor, lr: float, rho: float, steps: int) -> torch.Tensor:
    """Gradient descent, or SAM (normalised ascent of radius rho) when rho > 0."""
    for _ in range(steps):
        g = _grad(name, w)
        if rho > 0:
            g = _grad(name, w + rho * g / g.norm())
        w = w - lr * g
    return w


def test_sharp_flat_gd_finds_sharp_and_sam_finds_flat() -> None:
    info = TASKS["sharp_flat"]
    start = torch.tensor(info.start, dtype=torch.float64)
    sharp, flat = (torch.tensor(m, dtype=torch.float64) for m in info.minima)
    gd = _descend("sharp_flat", start, info.suggested_lr, 0.0, 400)
    sam = _descend("sharp_flat", start, info.suggested_lr, info.suggested_rho, 600)
    assert (gd - sharp).norm() < 0.01
    assert (sam - flat).norm() < 0.1


def test_saddle_has_a_saddle_at_the_origin() -> None:
    assert _grad("saddle", torch.zeros(2, dtype=torch.float64)).norm().item() == 0.0
    low, high = _hessian_eigvals("saddle", (0.0, 0.0)).tolist()
    assert low < 0 < high
    assert _loss_np("saddle", np.array([0.0, 100.0])) > 0  # bounded below: the quartic wins


def test_noisy_quadratic_condition_number() -> None:
    low, high = _hessian_eigvals("noisy_quadratic", (0.3, -0.2)).tolist()
    assert 10 <= high / low <= 25


def test_analytic_loss_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="name"):
        analytic_loss("moons", torch.zeros(2))
    with pytest.raises(ValueError, match="w"):
        analytic_loss("rosenbrock", torch.zeros(3))


@pytest.mark.parametrize("name", list(TASKS))
def test_train_size_is_the_split_make_dataset_makes(name):
    fractions = (0.0,) if TASKS[name].kind == "analytic" else (0.0, 0.1, 0.25, 0.9)
    for n in (8, 17, 256, 1797, 1800, 4000):
        for fraction in fractions:
            built = make_dataset(name, n_samples=n, test_fraction=fraction)
            assert train_size(name, n, fraction) == built.x_train.shape[0], (n, fraction)
