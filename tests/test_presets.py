"""Each preset's explanation is a claim about what the picture shows: check it on the engine's numbers."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from test_sensitivity_page import _benchmark_table

from sam_viz import scene
from sam_viz.curvature import over_training
from sam_viz.data import TASKS
from sam_viz.evidence import EVIDENCE
from sam_viz.presets import PRESETS
from sam_viz.sweep import robustness, run_grid

ROOT = Path(__file__).resolve().parents[1]


def _runs(name: str, **changes):
    settings = dataclasses.replace(PRESETS[name].settings(), **changes)
    return scene.train_all(settings.configs(), lambda *a: None, lambda: False)


def test_sharp_vs_flat_sgd_stays_sharp_and_sam_finds_the_flat_minimum():
    sgd, sam = _runs("sharp_vs_flat")
    sharp, flat = TASKS["sharp_flat"].minima
    assert np.linalg.norm(sgd.final_weights - sharp) < 0.05
    assert np.linalg.norm(sam.final_weights - flat) < 0.05


def test_rho_too_large_stalls():
    small, large = _runs("rho_too_large")
    assert large.final_train_loss > 2 * small.final_train_loss
    assert large.final_test_acc < small.final_test_acc - 0.05
    assert large.eps_norm.mean() == pytest.approx(3.0, rel=1e-4)


def test_fsam_perturbation_has_less_full_gradient():
    sam, fsam = _runs("fsam_removes_full_gradient")
    cos_sam, cos_fsam = np.nanmean(sam.cos_eps_fullgrad), np.nanmean(fsam.cos_eps_fullgrad)
    assert 0.6 < cos_sam < 0.85 and 0.2 < cos_fsam < 0.5  # "about 0.7 … about 0.35"


def test_adam_and_lightsam3_end_in_different_minima_but_not_at_small_rho():
    adam, light = _runs("adam_vs_lightsam3")
    minima = np.array(TASKS["himmelblau"].minima)
    nearest = [int(np.argmin(np.linalg.norm(minima - r.final_weights, axis=1))) for r in (adam, light)]
    assert nearest[0] != nearest[1]
    settings = PRESETS["adam_vs_lightsam3"].settings()
    small = dataclasses.replace(settings, runs=(settings.runs[0], ("lightsam3", (("lr", 0.05), ("rho", 0.05)))))
    adam2, light2 = scene.train_all(small.configs(), lambda *a: None, lambda: False)
    assert np.linalg.norm(adam2.final_weights - light2.final_weights) < 0.1


def test_sam_ends_with_lower_lambda_max():
    sgd, sam = _runs("sam_lower_lambda_max")
    curves = [over_training(r, every=10) for r in (sgd, sam)]
    lam = [c.lambda_max[-1] for c in curves]
    assert 6 < lam[0] < 10 and 2 < lam[1] < 3.5  # "about 8" and "near 2.7"
    assert curves[1].lambda_max.max() > lam[1] * 1.3  # SAM's rises, then falls


def test_bigger_batches_raise_the_cosine():
    _, small = _runs("batch_size_noise")
    _, large = _runs("batch_size_noise", batch=128)
    assert 0.45 < np.nanmean(small.cos_eps_fullgrad) < 0.75  # "about 0.6"
    assert np.nanmean(large.cos_eps_fullgrad) > 0.98  # "about 0.99"
    assert abs(abs(large.final_weights[1]) - 0.1) < 0.03  # settles about ρ from the minimum on the sharp axis


def test_lightsam_degrades_more_gently_than_sam():
    settings = PRESETS["lightsam_parameter_agnostic"].settings()
    grids = {}
    for _, config in scene.sweep_configs(settings):
        grids[config.optimizer] = run_grid(config, x=(settings.sx, list(settings.sxv)), y=(settings.sy, list(settings.syv)),
                                           lambda_max=False, strategy="batched")  # as the app runs it
    sam, light = grids["sam"].final_test_acc[0], grids["lightsam1"].final_test_acc[0]
    top = list(settings.syv).index(10.0)
    assert np.all(sam[top] < 0.6)  # η = 10: SAM collapses to chance
    assert np.all(light[top, :3] > 0.75)  # LightSAM-I still learns for ρ ≤ 1
    spread = {name: robustness(g, "test_acc").std for name, g in grids.items()}
    assert spread["lightsam1"] < spread["sam"] - 0.02 and spread["lightsam2"] < spread["sam"]


# ---- the SAM family's presets ----------------------------------------------------------------------------------

def test_esam_cells_cost_less_than_sams():
    settings = PRESETS["esam_cost"].settings()
    grids = {config.optimizer: run_grid(config, x=(settings.sx, list(settings.sxv)), y=(settings.sy, list(settings.syv)),
                                        seeds=settings.sseeds, lambda_max=False, strategy="batched")
             for _, config in scene.sweep_configs(settings)}
    steps = settings.steps
    np.testing.assert_array_equal(grids["sam"].total_grad_evals, 2 * steps)
    assert np.all(grids["esam"].total_grad_evals < 1.6 * steps)  # "left of SAM's" on the cost chart
    assert np.all(grids["esam"].total_grad_evals > 1.3 * steps)


def test_gsams_surrogate_gap_is_not_smaller_than_sams():
    sam, gsam = _runs("gsam_surrogate_gap")
    last = slice(-sam.n_steps // 4, None)
    gaps = [np.nanmean((r.perturbed_loss - r.batch_loss)[last]) for r in (sam, gsam)]
    assert gaps[1] > 0.9 * gaps[0]  # the preset says the claim is not reproduced: the picture must not show it
    assert "not reproduced" in PRESETS["gsam_surrogate_gap"].explanation


def test_ssam_perturbs_the_stated_share_and_less_than_rho():
    sam, half, tenth = _runs("ssam_sparsity")
    np.testing.assert_allclose(half.extra["mask_density"], 0.5, atol=1e-6)
    np.testing.assert_allclose(tenth.extra["mask_density"], 0.1, atol=1e-6)
    assert np.all(tenth.eps_norm < half.eps_norm + 1e-7) and np.all(half.eps_norm < sam.eps_norm + 1e-7)


def test_more_micro_batches_end_flatter():
    runs = _runs("msam_flatness")
    final = [over_training(r, every=r.n_steps // 2).lambda_max[-1] for r in runs]
    assert final[0] > final[1] > final[2]  # m = 1, 4, 16


def test_sampa_costs_sams_evaluations_and_starts_unperturbed():
    sgd, sam, sampa = _runs("sampa_parallel")
    np.testing.assert_array_equal(sgd.grad_calls, 1)
    np.testing.assert_array_equal(sam.grad_calls, 2)
    np.testing.assert_array_equal(sampa.grad_calls, 2)
    assert sampa.eps_norm[0] == 0 and sampa.eps_norm[1] == pytest.approx(0.1, rel=1e-5)


def test_lets_radii_move_together_but_do_not_meet():
    low, high = _runs("lets_learned_radius")
    start, end = abs(low.extra["rho_t"][0] - high.extra["rho_t"][0]), abs(low.extra["rho_t"][-1] - high.extra["rho_t"][-1])
    assert low.extra["rho_t"][-1] > 10 * low.extra["rho_t"][0]  # "both climb"
    assert end < start and end > 0.1  # closer, not one value
    assert "not reproduced" in PRESETS["lets_learned_radius"].explanation


def test_mup2_perturbs_the_input_layer_that_naive_sam_leaves_alone():
    naive, mup2 = _runs("mup2_layers")
    assert naive.extra_labels["layer_eps_ratio"] == ("input", "hidden 1", "output")  # depth 2: two hidden layers
    first_naive, first_mup2 = naive.extra["layer_eps_ratio"][0], mup2.extra["layer_eps_ratio"][0]
    assert first_mup2[0] > 4 * first_naive[0]  # input: perturbed far more by μP²
    assert first_naive[-1] > 4 * first_mup2[-1]  # output: plain SAM puts its perturbation there


# ---- the measured tables the presets quote -----------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(EVIDENCE))
def test_a_presets_table_is_the_measured_one_and_its_text_quotes_it(name):
    ev = EVIDENCE[name]
    assert name in PRESETS
    header, rows = _benchmark_table(ROOT / ev.source, ev.command)
    assert list(ev.columns) == header and [list(r) for r in ev.rows] == rows
    cells = " | ".join(" | ".join(r) for r in rows)
    for quoted in re.findall(r"\d+\.\d+ ± \d+\.\d+", PRESETS[name].explanation):
        assert quoted in cells, quoted  # every mean ± std the explanation states is in the table


def test_the_width_presets_sweep_every_run_over_widths():
    for name, runs in (("mup2_width_transfer", 3), ("overparam_width", 2)):
        settings = PRESETS[name].settings()
        plan = scene.sweep_plan(settings)
        assert settings.sx == "width" and len(plan.entries) == runs and not plan.problem, name


def test_sams_gain_over_sgd_does_not_grow_with_width_at_the_presets_scale():
    settings = PRESETS["overparam_width"].settings()
    grids = {config.optimizer: run_grid(config, x=(settings.sx, list(settings.sxv)), y=(settings.sy, list(settings.syv)),
                                        seeds=settings.sseeds, lambda_max=False, strategy="batched")
             for _, config in scene.sweep_configs(settings)}
    sgd, sam = (grids[n].final_test_acc.mean(axis=0)[0] for n in ("sgd", "sam"))
    assert np.all(sgd > 0.85) and np.all(sam > 0.85)  # every width learns the moons
    assert np.all(np.abs(sam - sgd) < 0.03)  # "no growing gain": within a few test points at every width
