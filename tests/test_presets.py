"""Each preset's explanation is a claim about what the picture shows: check it on the engine's numbers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sam_viz import scene
from sam_viz.curvature import over_training
from sam_viz.data import TASKS
from sam_viz.presets import PRESETS
from sam_viz.sweep import robustness, run_grid


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
