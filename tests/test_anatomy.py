"""The step anatomy's numbers are the engine's: θ_t, e_t and the update as the run records them, the probe where the
step program evaluated it, each method's neighbourhood, and the F-SAM decomposition."""

import numpy as np
import pytest

from sam_viz.anatomy import MAX_ANATOMY_STEPS, anatomy, step_from
from sam_viz.config import Config
from sam_viz.data import analytic_loss
from sam_viz.train import run

METHODS = ["sgd", "sam", "asam", "fsam", "lightsam1", "lightsam2", "lightsam3"]
CONFIG = Config(task="sharp_flat", model="point", steps=6, dtype="float64")


def _hp(result, method, key):
    return dict(result.runs[method].config.hparams)[key]


@pytest.fixture(scope="module")
def result():
    return anatomy(CONFIG, METHODS)


def test_every_step_equals_the_runs_records(result):
    for m in METHODS:
        recorded = result.runs[m]
        steps = result.steps[m]
        assert len(steps) == CONFIG.steps
        for t, s in enumerate(steps):
            assert s.step == t
            np.testing.assert_array_equal(s.theta, recorded.weights[t])
            np.testing.assert_array_equal(s.theta_next, recorded.weights[t + 1])
            np.testing.assert_allclose(s.update, recorded.weights[t + 1] - recorded.weights[t], rtol=0, atol=1e-15)
            if m == "sgd":
                assert s.perturbation is None and s.probe is None and s.neighbourhood is None
                np.testing.assert_array_equal(recorded.perturbations[t], 0.0)
            else:
                np.testing.assert_array_equal(s.perturbation, recorded.perturbations[t])
                np.testing.assert_allclose(s.probe, s.theta + s.perturbation, rtol=0, atol=1e-15)
                assert np.linalg.norm(s.perturbation) == pytest.approx(recorded.eps_norm[t], rel=1e-12)


def test_a_separate_training_run_has_the_same_path(result):
    """The recording oracle changes nothing: an ordinary run of the same config takes the same steps."""
    plain = run(CONFIG.with_optimizer("fsam").replace(snapshot_every=1))
    np.testing.assert_array_equal(plain.weights, result.runs["fsam"].weights)


def test_sgd_descends_along_the_full_gradient(result):
    _assert_heavy_ball(result, "sgd", [s.ascent_grad for s in result.steps["sgd"]])


def _assert_heavy_ball(result, method, grads):
    """torch SGD with momentum μ (no weight decay): Δ_t = μ Δ_{t−1} − lr g_t, Δ_0 = −lr g_0."""
    lr, mu = _hp(result, method, "lr"), _hp(result, method, "momentum")
    assert _hp(result, method, "weight_decay") == 0
    previous = np.zeros(2)
    for s, g in zip(result.steps[method], grads):
        np.testing.assert_allclose(s.update, mu * previous - lr * g, rtol=1e-9, atol=1e-15)
        previous = s.update


def test_sam_probe_sits_on_the_rho_ball_and_its_gradient_moves_theta(result):
    rho = dict(result.runs["sam"].config.hparams)["rho"]
    for s in result.steps["sam"]:
        assert np.linalg.norm(s.perturbation) == pytest.approx(rho, rel=1e-9)
        assert s.neighbourhood.kind == "ball" and s.neighbourhood.semi_axes[0] == rho
        np.testing.assert_allclose(s.perturbation, rho * s.ascent_grad / np.linalg.norm(s.ascent_grad), rtol=1e-9)
    _assert_heavy_ball(result, "sam", [s.probe_grad for s in result.steps["sam"]])


def test_probe_gradient_is_the_gradient_at_the_probe(result):
    import torch
    s = result.steps["sam"][2]
    w = torch.tensor(s.probe, dtype=torch.float64, requires_grad=True)
    analytic_loss("sharp_flat", w).backward()  # full batch, no noise: the probe's gradient is ∇f
    np.testing.assert_allclose(s.probe_grad, w.grad.numpy(), rtol=1e-10)


def test_asam_perturbation_lies_on_its_ellipse(result):
    hp = dict(result.runs["asam"].config.hparams)
    rho, eta = hp["rho"], hp.get("eta", 0.01)
    for s in result.steps["asam"]:
        axes = s.neighbourhood.semi_axes
        assert np.sum((s.perturbation / axes) ** 2) == pytest.approx(1.0, rel=1e-9)
        # the point model's parameter is its weight: T = |θ_t| + η, an ellipse wherever |θ_1| ≠ |θ_2|
        np.testing.assert_allclose(axes, rho * (np.abs(s.theta) + eta), rtol=1e-12)
        assert s.neighbourhood.kind == ("ellipse" if not np.isclose(abs(s.theta[0]), abs(s.theta[1])) else "ball")
    assert any(s.neighbourhood.kind == "ellipse" for s in result.steps["asam"])


def test_fsam_parts_sum_to_e_and_split_along_the_full_gradient(result):
    for s in result.steps["fsam"]:
        np.testing.assert_allclose(s.eps_full_part + s.eps_noise_part, s.perturbation, rtol=0, atol=1e-15)
        assert abs(s.eps_noise_part @ s.full_grad) <= 1e-9 * np.linalg.norm(s.full_grad) * np.linalg.norm(s.perturbation)
        cos = np.linalg.norm(s.eps_full_part) * np.sign(s.eps_full_part @ s.full_grad) / np.linalg.norm(s.perturbation)
        assert cos == pytest.approx(result.runs["fsam"].cos_eps_fullgrad[s.step], abs=1e-9)


def test_lightsam1_radius_shrinks(result):
    radii = [s.neighbourhood.semi_axes[0] for s in result.steps["lightsam1"]]
    rho = dict(result.runs["lightsam1"].config.hparams)["rho"]
    assert all(r <= rho + 1e-12 for r in radii)
    effective = [s.effective_rho for s in result.steps["lightsam1"]]
    assert all(a > b for a, b in zip(effective, effective[1:]))  # ρ/√u_t: u_t grows every step


def test_step_from_takes_every_method_from_the_same_point(result):
    theta = result.steps["sam"][3].theta
    steps = step_from(CONFIG, theta, ["sgd", "sam", "fsam"])
    for s in steps.values():
        np.testing.assert_array_equal(s.theta, theta)
        assert s.step == 0
    # fresh state: F-SAM's first step has no EMA yet, so it is SAM's step
    np.testing.assert_allclose(steps["fsam"].perturbation, steps["sam"].perturbation, rtol=1e-12)


@pytest.mark.parametrize("bad, message", [
    (dict(config=Config(task="moons"), methods=["sam"]), "analytic"),
    (dict(config=CONFIG.replace(steps=MAX_ANATOMY_STEPS + 1), methods=["sam"]), "steps"),
    (dict(config=CONFIG, methods=["nope"]), "method"),
    (dict(config=CONFIG, methods=["sam", "sam"]), "twice"),
    (dict(config=CONFIG, methods=[]), "methods"),
])
def test_bad_input_gets_a_clear_message(bad, message):
    with pytest.raises(ValueError, match=message):
        anatomy(**bad)


def test_figure_arrows_are_the_engines_numbers(result):
    from sam_viz.anatomy import loss_function
    from sam_viz.plots import ANATOMY_STAGES, anatomy_figure

    steps = list(result.at(3).values())
    fig = anatomy_figure(steps, loss_function("sharp_flat"), stage=5)
    arrows = {(t.meta["method"], t.meta["arrow"]): (np.array(t.x, float), np.array(t.y, float))
              for t in fig.data if isinstance(t.meta, dict) and "arrow" in t.meta}
    for s in steps:
        lr = s.effective_lr
        expected = {"ascent": (s.theta, s.theta + lr * s.ascent_grad), "update": (s.theta, s.theta_next)}
        if s.perturbation is not None:
            expected["perturbation"] = (s.theta, s.theta + s.perturbation)
            expected["probe_grad"] = (s.probe, s.probe - lr * s.probe_grad)
        if s.method == "fsam":
            expected["eps_full"] = (s.theta, s.theta + s.eps_full_part)
            expected["eps_noise"] = (s.theta + s.eps_full_part, s.theta + s.perturbation)
        drawn = {key for m, key in arrows if m == s.method}
        assert drawn == set(expected), s.method
        for key, (tail, head) in expected.items():
            xs, ys = arrows[(s.method, key)]
            np.testing.assert_allclose([xs[0], ys[0]], tail, rtol=0, atol=1e-12)
            np.testing.assert_allclose([xs[1], ys[1]], head, rtol=0, atol=1e-12)
    # one panel per method, equal aspect in each, and the neighbourhood drawn for every method with an e_t
    for i in range(1, len(steps) + 1):
        yaxis = fig.layout[f"yaxis{'' if i == 1 else i}"]
        assert yaxis.scaleanchor == f"x{'' if i == 1 else i}" and yaxis.scaleratio == 1
    hoods = [t for t in fig.data if isinstance(t.meta, dict) and t.meta.get("shape") == "neighbourhood"]
    assert len(hoods) == len(steps) - 1  # SGD has none
    # stage 1 draws only θ_t and the ascent gradient; the stages are the five
    first = anatomy_figure(steps, loss_function("sharp_flat"), stage=1)
    assert {t.meta["arrow"] for t in first.data if isinstance(t.meta, dict) and "arrow" in t.meta} == {"ascent"}
    assert len(ANATOMY_STAGES) == 5
    with pytest.raises(ValueError, match="stage"):
        anatomy_figure(steps, loss_function("sharp_flat"), stage=6)


def test_figure_contour_is_the_exact_loss(result):
    from sam_viz.anatomy import loss_function
    from sam_viz.plots import anatomy_figure

    fig = anatomy_figure([result.at(0)["sam"]], loss_function("sharp_flat"), resolution=21)
    contour = next(t for t in fig.data if isinstance(t, __import__("plotly").graph_objects.Contour))
    import torch

    from sam_viz.data import analytic_loss
    x, y = np.array(contour.x), np.array(contour.y)
    w = torch.tensor([[x[4], y[7]]], dtype=torch.float64)
    assert np.array(contour.z)[7][4] == pytest.approx(float(analytic_loss("sharp_flat", w)[0]), rel=1e-12)


def test_a_diverged_run_leaves_the_step_report_where_it_diverged():
    """Rosenbrock at SGD's default η diverges within a few steps; LightSAM-I's adaptive η does not."""
    a = anatomy(Config(task="rosenbrock", model="point", steps=30, dtype="float64"), ["sgd", "lightsam1"])
    k = a.diverged["sgd"]
    assert "lightsam1" not in a.diverged and a.n_steps == 30
    assert len(a.steps["sgd"]) == k  # the diverged step itself has a NaN/inf loss and no step taken
    assert set(a.at(k - 1)) == {"sgd", "lightsam1"} and set(a.at(k)) == {"lightsam1"}
