"""Tests for sam_viz.models: architectures, deterministic initialisation, losses and validation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sam_viz.data import TASKS, Dataset, analytic_loss, make_dataset
from sam_viz.models import ACTIVATIONS, MODELS, PlanePoint, accuracy, build_model, loss_fn


@pytest.fixture(scope="module")
def moons() -> Dataset:
    return make_dataset("moons", n_samples=64)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return make_dataset("digits", n_samples=200)


@pytest.fixture(scope="module")
def sharp_flat() -> Dataset:
    return make_dataset("sharp_flat", n_samples=64, noise=0.5)


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry() -> None:
    assert list(MODELS) == ["logistic", "mlp", "cnn", "point"]
    assert MODELS["cnn"].fits("digits", "classification")
    assert not MODELS["cnn"].fits("moons", "classification")
    assert MODELS["point"].fits("rosenbrock", "analytic")
    assert not MODELS["mlp"].fits("rosenbrock", "analytic")


def test_logistic_is_one_linear_layer(moons: Dataset) -> None:
    model = build_model(moons, "logistic")
    assert [name for name, _ in model.named_parameters()] == ["layers.0.weight", "layers.0.bias"]
    assert model(torch.zeros(5, 2)).shape == (5, 2)


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_mlp_structure(moons: Dataset, depth: int) -> None:
    model = build_model(moons, "mlp", depth=depth, width=7)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == depth + 1
    assert linears[-1].out_features == moons.n_classes
    expected = 2 * 2 + 2 if depth == 0 else (2 * 7 + 7) + (depth - 1) * (7 * 7 + 7) + (7 * 2 + 2)
    assert _n_params(model) == expected
    assert model(torch.zeros(3, 2)).shape == (3, 2)


def test_mlp_depth_zero_equals_logistic(moons: Dataset) -> None:
    mlp, logistic = _params(build_model(moons, "mlp", depth=0)), _params(build_model(moons, "logistic"))
    assert mlp.keys() == logistic.keys()
    for name in mlp:
        assert torch.equal(mlp[name], logistic[name])


def test_cnn_has_1898_parameters(digits: Dataset) -> None:
    model = build_model(digits, "cnn")
    assert _n_params(model) == 1898
    x = torch.as_tensor(digits.x_train[:6], dtype=torch.float32)
    assert model(x).shape == (6, 10)
    assert all(name.endswith(("weight", "bias")) for name, _ in model.named_parameters())


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_builds_and_runs(digits: Dataset, activation: str) -> None:
    x = torch.as_tensor(digits.x_train[:4], dtype=torch.float32)
    for name in ("mlp", "cnn"):
        out = build_model(digits, name, activation=activation, depth=1, width=8)(x)
        assert out.shape == (4, 10) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["logistic", "mlp", "cnn"])
def test_same_seed_identical_other_seed_different(digits: Dataset, name: str) -> None:
    a, b = _params(build_model(digits, name, seed=5)), _params(build_model(digits, name, seed=5))
    c = _params(build_model(digits, name, seed=6))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_build_leaves_global_rng_untouched(digits: Dataset, name: str) -> None:
    torch.manual_seed(123)
    state = torch.get_rng_state()
    build_model(digits, name, seed=9)
    assert torch.equal(torch.get_rng_state(), state)


def test_init_ignores_global_rng(moons: Dataset) -> None:
    torch.manual_seed(1)
    a = _params(build_model(moons, "mlp"))
    torch.manual_seed(2)
    b = _params(build_model(moons, "mlp"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_float32_and_float64_start_together(digits: Dataset, name: str) -> None:
    single = build_model(digits, name, dtype=torch.float32)
    double = build_model(digits, name, dtype=torch.float64)
    for (_, p32), (_, p64) in zip(single.named_parameters(), double.named_parameters()):
        assert p32.dtype == torch.float32 and p64.dtype == torch.float64
        assert (p32.double() - p64).abs().max().item() <= 1e-7


def test_init_follows_pytorch_default_bounds(digits: Dataset) -> None:
    model = build_model(digits, "cnn", dtype=torch.float64)
    for module in model.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            bound = 1 / math.sqrt(module.weight[0].numel())
            assert module.weight.abs().max() <= bound and module.bias.abs().max() <= bound
            # Uniform draws fill most of the interval.
            assert module.weight.abs().max() > 0.5 * bound


def test_point_model_starts_at_task_start_and_computes_per_sample_loss(sharp_flat: Dataset) -> None:
    model = build_model(sharp_flat, "point", dtype=torch.float64)
    assert isinstance(model, PlanePoint) and model.task == "sharp_flat"
    assert [name for name, _ in model.named_parameters()] == ["weight"]  # ASAM scales weight tensors: this one too
    assert model.w is model.weight
    assert model.w.tolist() == list(TASKS["sharp_flat"].start)
    xi = torch.as_tensor(sharp_flat.x_train)
    out = model(xi)
    assert out.shape == (64,)
    y = torch.as_tensor(sharp_flat.y_train)
    full = loss_fn("analytic")(out, y)
    torch.testing.assert_close(full, analytic_loss("sharp_flat", model.w), rtol=1e-12, atol=1e-12)


def test_point_minibatch_gradient_is_true_gradient_plus_mean_noise(sharp_flat: Dataset) -> None:
    model = build_model(sharp_flat, "point", dtype=torch.float64, start=(0.5, -0.25))
    xi = torch.as_tensor(sharp_flat.x_train[:8])
    loss_fn("analytic")(model(xi), torch.zeros(8, dtype=torch.int64)).backward()
    w = torch.tensor([0.5, -0.25], dtype=torch.float64, requires_grad=True)
    analytic_loss("sharp_flat", w).backward()
    torch.testing.assert_close(model.w.grad, w.grad + xi.mean(dim=0))


def test_point_model_dtype(sharp_flat: Dataset) -> None:
    model = build_model(sharp_flat, "point", start=(1.0, 2.0))
    assert model.w.dtype == torch.float32 and model.w.tolist() == [1.0, 2.0]


def test_loss_fn_and_accuracy() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 5.0]])
    y = torch.tensor([0, 0, 0, 1])
    torch.testing.assert_close(loss_fn("classification")(logits, y), F.cross_entropy(logits, y))
    acc = accuracy(logits, y)
    assert acc.ndim == 0 and acc.item() == 0.75
    assert loss_fn("analytic")(torch.tensor([1.0, 3.0]), y[:2]).item() == 2.0
    with pytest.raises(ValueError, match="dataset_kind"):
        loss_fn("regression")


@pytest.mark.parametrize(
    ("task", "kwargs", "param"),
    [
        ("moons", {"model": "resnet"}, "model"),
        ("moons", {"model": "cnn"}, "model"),
        ("moons", {"model": "point"}, "model"),
        ("rosenbrock", {"model": "mlp"}, "model"),
        ("moons", {"activation": "swish"}, "activation"),
        ("moons", {"depth": -1}, "depth"),
        ("moons", {"depth": 9}, "depth"),
        ("moons", {"width": 0}, "width"),
        ("moons", {"width": 1025}, "width"),
        ("moons", {"seed": -1}, "seed"),
        ("moons", {"dtype": torch.int64}, "dtype"),
        ("moons", {"start": (0.0, 0.0)}, "start"),
        ("rosenbrock", {"model": "point", "start": (float("nan"), 0.0)}, "start"),
        ("rosenbrock", {"model": "point", "start": (0.0, float("inf"))}, "start"),
        ("rosenbrock", {"model": "point", "start": (0.0, 1.0, 2.0)}, "start"),
    ],
)
def test_invalid_arguments_name_the_parameter(task: str, kwargs: dict[str, object], param: str) -> None:
    dataset = make_dataset(task, n_samples=16)
    with pytest.raises(ValueError, match=param):
        build_model(dataset, **kwargs)


def test_model_mismatch_lists_fitting_models() -> None:
    with pytest.raises(ValueError, match="valid: point"):
        build_model(make_dataset("saddle", n_samples=16), "logistic")
