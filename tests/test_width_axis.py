"""The width sweep axis: a grid over the MLP's hidden width (one stack per width), in the URL and on the page."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_sensitivity_page import _decode, _heatmaps, _page, _q
from test_sweep import assert_cell_equals_run

from sam_viz import scene, sweep
from sam_viz.config import Config
from sam_viz.hessian import top_eigenvalues
from sam_viz.settings import DEFAULTS, WIDTH_AXIS_VALUES, from_query, replace, to_query
from sam_viz.sweep import Grid, run_grid
from sam_viz.train import run, setup
from sam_viz.ui.sensitivity_page import selected_settings

SMALL = Config(n_samples=96, width=8, steps=10, device="cpu", dtype="float64", batch_size=24)


@pytest.mark.parametrize("optimizer", ["sam", "sgd"])
def test_every_cell_of_a_width_by_lr_grid_equals_its_single_run(optimizer):
    grid = run_grid(SMALL.replace(optimizer=optimizer), ("width", [4, 16]), ("lr", [0.05, 0.5]), seeds=2,
                    strategy="batched")
    assert grid.shape == (2, 2, 2) and not grid.stopped
    for s, i, j in np.ndindex(grid.shape):
        config = grid.cell_config(s, i, j)
        assert config.width == (4, 16)[j] and isinstance(config.width, int)
        r = run(config)
        assert_cell_equals_run(grid, s, i, j, r)
        # λ_max on the cell's own architecture
        st = setup(config.replace(steps=1))
        lam = top_eigenvalues(st.model, st.loss, (st.x_train, st.y_train), k=1,
                              weights=torch.as_tensor(r.final_weights)).eigenvalues[0]
        np.testing.assert_allclose(grid.lambda_max[s, i, j], float(lam), rtol=1e-6)


def test_width_on_the_y_axis_in_float32():
    base = SMALL.replace(optimizer="sam", dtype="float32")
    grid = run_grid(base, ("rho", [0.0, 0.1]), ("width", [3, 12]), strategy="batched", lambda_max=False)
    for s, i, j in np.ndindex(grid.shape):
        assert grid.cell_config(s, i, j).width == (3, 12)[i]
        assert_cell_equals_run(grid, s, i, j)


def test_one_stacked_call_per_width(monkeypatch):
    calls = []
    real = sweep.train

    def recording(configs, **kwargs):
        calls.append(sorted({c.width for c in configs}) + [len(configs)])
        return real(configs, **kwargs)

    monkeypatch.setattr(sweep, "train", recording)
    run_grid(SMALL.replace(optimizer="sam"), ("width", [4, 8, 16]), ("lr", [0.05, 0.5]), seeds=2,
             strategy="batched", lambda_max=False)
    assert calls == [[4, 4], [8, 4], [16, 4]]  # each width's 2 lr × 2 seeds in one stack


def test_a_seed_only_grid_still_stacks_every_seed():
    grid = run_grid(SMALL.replace(optimizer="sam"), ("width", [8]), ("lr", [0.1]), seeds=3, strategy="batched",
                    lambda_max=False)
    assert grid.shape == (3, 1, 1)
    for s in range(3):
        assert_cell_equals_run(grid, s, 0, 0)
    plain = run_grid(SMALL.replace(optimizer="sam"), ("rho", [0.05]), ("lr", [0.1]), seeds=3, strategy="batched",
                     lambda_max=False)
    np.testing.assert_allclose(plain.final_train_loss, grid.final_train_loss, rtol=1e-12)  # width 8 is the base


def test_bad_widths_and_models_without_a_width_raise():
    for values, message in (([0.5], "whole numbers"), ([16, 2000], "not 2000"), ([0], "not 0")):
        with pytest.raises(ValueError, match=message):
            run_grid(SMALL, ("width", values), ("lr", [0.1]))
    with pytest.raises(ValueError, match="logistic model has no width"):
        run_grid(SMALL.replace(model="logistic"), ("width", [4]), ("lr", [0.1]))
    with pytest.raises(ValueError, match="depth 0"):
        run_grid(SMALL.replace(depth=0), ("width", [4]), ("lr", [0.1]))
    with pytest.raises(ValueError, match="both 'width'"):
        run_grid(SMALL, ("width", [4]), ("width", [8]))


def test_a_width_grid_saves_loads_and_lists_its_widths(tmp_path):
    grid = run_grid(SMALL.replace(optimizer="sgd", steps=3), ("width", [2, 6]), ("lr", [0.1]), strategy="batched",
                    lambda_max=False)
    back = Grid.load(grid.save(tmp_path / "w.npz"))
    assert back.x_name == "width" and back.cell_config(0, 0, 1).width == 6
    frame = grid.to_frame()
    assert frame["width"].tolist() == [2, 6]


def test_the_command_line_sweeps_widths(tmp_path, capsys):
    import argparse

    parser = argparse.ArgumentParser()
    sweep.add_sweep_parser(parser.add_subparsers())
    args = parser.parse_args(["sweep", "--x", "width", "--x-values", "4,8", "--y-values", "0.1", "--set", "steps=3",
                              "--set", "n_samples=64", "--set", "device=cpu", "--no-lambda-max", "--quiet",
                              "--out", str(tmp_path / "w")])
    assert sweep.sweep_main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["cells"] == 2


# ---- the URL and the sweep plan ----------------------------------------------------------------------------------


def test_url_round_trip_of_a_width_axis():
    settings, notes = from_query({"sx": "width", "sxv": "16,32,64", "runs": "sgd;sam"})
    assert not notes and settings.sx == "width" and settings.sxv == (16.0, 32.0, 64.0)
    assert to_query(settings) == {"sx": "width", "sxv": "16,32,64"}  # sgd;sam are the default runs
    assert from_query(to_query(settings))[0] == settings
    on_y, notes = from_query({"sy": "width", "syv": "4,8", "sx": "lr", "sxv": "0.1,1"})
    assert not notes and on_y.syv == (4.0, 8.0) and from_query(to_query(on_y))[0] == on_y
    # an axis switched without values takes widths, not the ρ defaults
    assert from_query({"sx": "width"}) == (replace(DEFAULTS, sx="width"), [])
    assert replace(DEFAULTS, sx="width").sxv == WIDTH_AXIS_VALUES


@pytest.mark.parametrize("typed,used,reason", [
    ("12.5,16", (12.0, 16.0), "not a whole number"),
    ("1,16,3000", (2.0, 16.0, 128.0), "clamped"),
    ("abc", WIDTH_AXIS_VALUES, "not 1 to 9 widths"),
])
def test_a_bad_width_value_gives_a_note_not_a_crash(typed, used, reason):
    settings, notes = from_query({"sx": "width", "sxv": typed})
    assert settings.sxv == used
    assert notes and any(reason in n for n in notes), notes
    assert scene.sweep_plan(settings).entries  # still sweepable


def test_the_plan_sweeps_sgd_and_sam_over_widths_and_says_why_not():
    settings = from_query({"sx": "width", "sxv": "4,8", "runs": "sgd;sam"})[0]
    plan = scene.sweep_plan(settings)
    assert [label for label, _ in plan.entries] == ["SGD", "SAM"] and not plan.skipped  # SGD has a width and an lr
    logistic = scene.sweep_plan(from_query({"sx": "width", "model": "logistic"})[0])
    assert not logistic.entries and "The width cannot be swept: the logistic model has no width" in logistic.message
    analytic = scene.sweep_plan(from_query({"sx": "width", "task": "rosenbrock"})[0])
    assert not analytic.entries and "point model has no width" in analytic.message


# ---- the page ------------------------------------------------------------------------------------------------------


PAGE_QUERY = {"runs": "sgd;sam", "steps": "15", "sx": "width", "sxv": "4,8", "syv": "0.05,0.5"}


def test_the_sensitivity_page_sweeps_widths():
    at = _page(**PAGE_QUERY)
    assert at.selectbox(key="v_sx").value == "width"
    assert at.text_input(key="sxv_text").value == "4,8"
    heat = _heatmaps(at)
    assert len(heat) == 2 and all(_decode(h["z"]).shape == (2, 2) for h in heat)
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert "width" in fig["layout"]["title"]["text"]
    assert any("hidden units" in str(v.get("title", {}).get("text", "")) for k, v in fig["layout"].items()
               if k.startswith("xaxis"))
    # a typed fraction is rounded, with one note under the box
    at.text_input(key="sxv_text").set_value("4, 6.5").run()
    assert not at.exception
    assert at.text_input(key="sxv_text").value == "4,6" and _q(at, "sxv") == "4,6"
    assert any("rounded to a whole number" in w.value for w in at.warning)


def test_switching_the_axis_to_width_takes_widths():
    at = _page(runs="sam", steps="10", sxv="0.01,0.1", syv="0.1")
    at.selectbox(key="v_sx").set_value("width").run()
    assert not at.exception and not at.error
    assert at.text_input(key="sxv_text").value == ",".join(f"{v:g}" for v in WIDTH_AXIS_VALUES)
    assert _q(at, "sx") == "width"
    at.selectbox(key="v_sx").set_value("rho").run()  # and back: ρ's defaults, not widths as radii
    assert not at.exception
    assert _q(at, "sxv") is None


def test_a_cell_of_a_width_sweep_opens_at_its_width():
    settings = from_query(PAGE_QUERY)[0]
    grids = [(label, run_grid(config, x=("width", [4, 8]), y=("lr", [0.05, 0.5]), strategy="batched",
                              lambda_max=False)) for label, config in scene.sweep_plan(settings).entries]
    event = {"selection": {"points": [{"curve_number": 5, "point_number": 1, "customdata": [1, 1, 1, 0.5, 8]}]}}
    opened = selected_settings(event, grids, settings)
    (config,) = opened.configs()
    assert (config.optimizer, config.width, config.hp["lr"]) == ("sam", 8, 0.5)
    assert from_query(to_query(opened)) == (opened, [])
