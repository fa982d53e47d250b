"""μP² and the μP model: the initialisation's scales, plain SAM at the base width, a hand-written reference of the
layerwise step, how each layer's perturbation scales over three widths, the per-layer diagnostic against exact
spectral norms, the Config's checks, stacked runs and sweep cells."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_sweep import assert_cell_equals_run
from torch import nn

from sam_viz.config import Config
from sam_viz.data import make_dataset
from sam_viz.models import build_model, mup_init_std
from sam_viz.optim import make
from sam_viz.optim.mup2 import linear_layers, spectral_norm
from sam_viz.sweep import run_grid
from sam_viz.train import RECORD_FIELDS, run, train

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = Config(optimizer="mup2", parameterization="mup", n_samples=256, width=32, depth=2, steps=8, batch_size=64,
              dtype="float64", device="cpu")
WIDTHS = (32, 128, 512)


def _model(width: int, base_width: int = 32, seed: int = 0) -> nn.Module:
    return build_model(make_dataset("moons", n_samples=256), "mlp", depth=2, width=width, seed=seed,
                       dtype=torch.float64, parameterization="mup", base_width=base_width)


def _batch(seed: int = 1, size: int = 64):
    data = make_dataset("moons", n_samples=256)
    index = torch.randperm(len(data.y_train), generator=torch.Generator().manual_seed(seed))[:size]
    return torch.as_tensor(data.x_train[index.numpy()]), torch.as_tensor(data.y_train[index.numpy()])


def _flat(model: nn.Module) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy().copy()


def _loop(name: str, model: nn.Module, steps: int = 4, **hp) -> tuple[list[np.ndarray], list]:
    opt = make(name, model.parameters(), **hp)
    path, reports = [_flat(model)], []
    for t in range(steps):
        x, y = _batch(seed=t)

        def closure():
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss
        closure()
        opt.step(closure)
        path.append(_flat(model))
        reports.append(opt.last)
    return path, reports


# ---- the μP model ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("width", WIDTHS)
def test_the_mup_initialisation_has_the_spec_scales(width):
    model = _model(width)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    r = width / 32
    expected = [math.sqrt(2 / 2), math.sqrt(2 / width), math.sqrt(2 / (width * r))]  # input (d = 2), hidden, output
    for module, role, std in zip(linears, ("input", "hidden", "output"), expected):
        assert mup_init_std(role, module.in_features, width, r) == pytest.approx(std)
        assert float(module.weight.detach().std()) == pytest.approx(std, rel=0.25 if module.weight.numel() < 100 else 0.06)
        assert torch.equal(module.bias, torch.zeros_like(module.bias))
    # the output layer starts ∝ 1/n: 16× smaller at 16× the width over the base
    assert mup_init_std("output", 512, 512, 16) / mup_init_std("output", 32, 32, 1) == pytest.approx(1 / 16)


def test_mup_needs_an_mlp_with_hidden_layers():
    data = make_dataset("moons", n_samples=64)
    with pytest.raises(ValueError, match="mup"):
        build_model(data, "logistic", parameterization="mup")
    with pytest.raises(ValueError, match="mup"):
        build_model(data, "mlp", depth=0, parameterization="mup")
    with pytest.raises(ValueError, match="parameterization"):
        build_model(data, "mlp", parameterization="ntk")


# ---- plain SAM at the base width ------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["mpp", "global", "naive"])
def test_at_the_base_width_mup2_is_sam_under_mup(mode):
    a = run(BASE.replace(perturb_mode=mode))
    b = run(BASE.replace(optimizer="sam"))
    for name in RECORD_FIELDS:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-12, atol=1e-14, equal_nan=True,
                                   err_msg=name)
    ours, _ = _loop("mup2", _model(32), perturb_mode=mode, momentum=0.9)
    sam, _ = _loop("sam", _model(32), momentum=0.9)
    for p, q in zip(ours, sam):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-14)


def test_away_from_the_base_width_the_modes_differ():
    paths = {mode: run(BASE.replace(width=128, perturb_mode=mode)).weights[-1] for mode in ("mpp", "global", "naive")}
    assert np.abs(paths["mpp"] - paths["naive"]).max() > 1e-6
    assert np.abs(paths["global"] - paths["naive"]).max() > 1e-6


# ---- the layerwise step against a hand-written reference --------------------------------------------------------

def _reference(width: int, mode: str, steps: int = 4, lr: float = 0.1, rho: float = 0.05, momentum: float = 0.9):
    """The μP² step written out on an nn.Module: per-layer radii and gradient-norm scales, one global normaliser,
    then torch's SGD with one parameter group per layer at μP's learning rate."""
    model = _model(width)
    r = width / 32
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    lr_f, rho_f, scale = [r, 1.0, 1 / r], {"mpp": [r, 1.0, 1 / r], "global": [r ** -0.5] * 3, "naive": [1.0] * 3}[mode], \
        {"mpp": [r ** 0.5, 1.0, r ** -0.5]}.get(mode, [1.0] * 3)
    sgd = torch.optim.SGD([{"params": list(m.parameters()), "lr": lr * f} for m, f in zip(linears, lr_f)],
                          lr=lr, momentum=momentum)
    path = [_flat(model)]
    for t in range(steps):
        x, y = _batch(seed=t)
        sgd.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            layer_norms = [torch.sqrt(sum((p.grad ** 2).sum() for p in m.parameters())) for m in linears]
            norm = torch.sqrt(sum((c * n) ** 2 for c, n in zip(scale, layer_norms)))
            saved = [p.clone() for p in model.parameters()]
            for m, f in zip(linears, rho_f):
                for p in m.parameters():
                    p.add_(rho * f * p.grad / (norm + 1e-12))
        sgd.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            for p, s in zip(model.parameters(), saved):
                p.copy_(s)
        sgd.step()
        path.append(_flat(model))
    return path


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("mode", ["mpp", "global", "naive"])
def test_mup2_equals_the_layerwise_reference(width, mode):
    ours, _ = _loop("mup2", _model(width), perturb_mode=mode, momentum=0.9)
    expected = _reference(width, mode)
    for t, (a, b) in enumerate(zip(ours, expected)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13, err_msg=f"step {t}")


# ---- how each layer's perturbation scales with width -------------------------------------------------------------

@pytest.mark.parametrize("mode", ["mpp", "global", "naive"])
def test_each_layers_radius_scales_with_width_as_the_spec_says(mode):
    # ‖e_l‖ = ρ_l ‖g_l‖ / N: the ratio of the input to the output layer's ‖e‖ over that of their ‖g‖ is
    # ρ_input/ρ_output = r² under μP², 1 under global and naive; global's whole ‖e‖ is ρ·r^−½
    for width in WIDTHS:
        r = width / 32
        model = _model(width)
        x, y = _batch()
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt = make("mup2", model.parameters(), perturb_mode=mode, rho=0.05)
        params = list(model.parameters())
        grads = [p.grad.clone() for p in params]

        def closure():
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss
        opt.step(closure)
        e = opt.last.perturbation
        e_norm = [math.sqrt(float((e[i] ** 2).sum() + (e[i + 1] ** 2).sum())) for i in range(0, 6, 2)]
        g_norm = [math.sqrt(float((grads[i] ** 2).sum() + (grads[i + 1] ** 2).sum())) for i in range(0, 6, 2)]
        radius = {"mpp": [r, 1, 1 / r], "global": [1, 1, 1], "naive": [1, 1, 1]}[mode]
        for layer in (0, 1):
            assert (e_norm[layer] / e_norm[2]) / (g_norm[layer] / g_norm[2]) == pytest.approx(
                radius[layer] / radius[2], rel=1e-9), (width, layer)
        if mode == "global":
            assert math.sqrt(sum(v * v for v in e_norm)) == pytest.approx(0.05 / math.sqrt(r), rel=1e-9)
        if mode == "naive":
            assert math.sqrt(sum(v * v for v in e_norm)) == pytest.approx(0.05, rel=1e-9)


def test_mup2_keeps_every_layer_perturbed_as_width_grows_and_naive_sam_does_not():
    # the paper's point, measured: the effective perturbation ‖e_l‖₂/‖W_l‖₂ of each layer over widths 32 → 512
    ratios = {mode: np.array([run(BASE.replace(width=w, steps=1, perturb_mode=mode)).extra["layer_eps_ratio"][0]
                              for w in WIDTHS]) for mode in ("mpp", "naive")}
    mpp, naive = ratios["mpp"], ratios["naive"]
    spread = mpp.max(axis=0) / mpp.min(axis=0)
    assert (spread < 2.0).all(), mpp  # μP²: every layer within a factor 2 over a 16× width range
    assert naive[0, 0] / naive[-1, 0] > 10  # plain SAM under μP: the input layer's perturbation fades
    assert naive[-1, 2] / naive[0, 2] > 3  # and the output layer takes it over


def test_the_per_layer_diagnostic_equals_exact_spectral_norms():
    config = BASE.replace(width=128, steps=12, snapshot_every=1)
    r = run(config)
    sizes = [math.prod(s) for s in r.param_shapes]
    cuts = np.cumsum([0, *sizes])
    for t in (0, 5, 11):
        exact = []
        for layer in range(3):
            a, b = cuts[2 * layer], cuts[2 * layer + 1]
            shape = r.param_shapes[2 * layer]
            w = torch.as_tensor(r.weights[t][a:b]).reshape(shape)
            e = torch.as_tensor(r.perturbations[t][a:b]).reshape(shape)
            exact.append(float(torch.linalg.matrix_norm(e, 2) / torch.linalg.matrix_norm(w, 2)))
        np.testing.assert_allclose(r.extra["layer_eps_ratio"][t], exact, rtol=2e-2, err_msg=f"step {t}")
    assert r.extra_labels["layer_eps_ratio"] == ("input", "hidden 1", "output")


def test_power_iteration_converges_to_the_top_singular_value():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(3, 40, 30, generator=g, dtype=torch.float64)
    v = torch.full((3, 30), 30 ** -0.5, dtype=torch.float64)
    sigma = spectral_norm(m, v, 200)
    np.testing.assert_allclose(sigma.numpy(), torch.linalg.matrix_norm(m, 2).numpy(), rtol=1e-8)
    assert torch.allclose(v.norm(dim=1), torch.ones(3, dtype=torch.float64))  # updated in place, unit length


# ---- Config, stacked runs, sweep cells ------------------------------------------------------------------------

def test_config_checks_the_parameterization_and_shares_the_base_width():
    with pytest.raises(ValueError, match="parameterization"):
        Config(optimizer="mup2")  # an SP model
    with pytest.raises(ValueError, match="mup"):
        Config(optimizer="sam", parameterization="mup", model="logistic")
    assert BASE.replace(base_width=64).hp["base_width"] == 64  # the optimizer's n₀ is the model's
    assert BASE.hp["base_width"] == 32
    with pytest.raises(ValueError, match="bias"):
        linear_layers([torch.zeros(1, 4), torch.zeros(1, 3, 2)])
    # weights then biases (parameter groups without weight decay on biases) pair up as the modules' order does
    w_in, w_h, w_out = torch.zeros(1, 8, 2), torch.zeros(1, 8, 8), torch.zeros(1, 3, 8)
    b_in, b_h, b_out = torch.zeros(1, 8), torch.zeros(1, 8), torch.zeros(1, 3)
    assert linear_layers([w_in, b_in, w_h, b_h, w_out, b_out]) == [[0, 1], [2, 3], [4, 5]]
    assert linear_layers([w_in, w_h, w_out, b_in, b_h, b_out]) == [[0, 3], [1, 4], [2, 5]]


def test_stacked_runs_equal_separate_runs():
    configs = [BASE.replace(width=64, seed=s, rho=r, lr=l) for s, r, l in zip([0, 1, 0], [0.0, 0.05, 0.2],
                                                                              [0.1, 0.05, 0.2])]
    for stacked, config in zip(train(configs), configs):
        single = run(config)
        for name in RECORD_FIELDS:
            np.testing.assert_allclose(getattr(stacked, name), getattr(single, name), rtol=1e-9, atol=1e-12,
                                       equal_nan=True, err_msg=name)
        np.testing.assert_allclose(stacked.extra["layer_eps_ratio"], single.extra["layer_eps_ratio"], rtol=1e-7,
                                   equal_nan=True)


def test_every_sweep_cell_equals_its_single_run():
    grid = run_grid(BASE.replace(steps=6, width=64), ("rho", [0.0, 0.1]), ("lr", [0.05, 0.2]), seeds=2,
                    strategy="batched", lambda_max=False)
    for s, i, j in np.ndindex(grid.shape):
        assert_cell_equals_run(grid, s, i, j)
