"""The cost axis and a method's own series, from the engine's records to the figures and the pages."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_app import PAGES, _assert_ok, _decode, _figures, _page

from sam_viz import plots
from sam_viz.config import Config
from sam_viz.sweep import run_grid
from sam_viz.train import run

SMALL = Config(n_samples=96, width=8, steps=8, snapshot_every=2, device="cpu", dtype="float64")


def test_cost_series_reach_the_series_figure_as_recorded():
    sgd, sam = run(SMALL.replace(optimizer="sgd")), run(SMALL.replace(optimizer="sam"))
    fig = plots.series_figure([sgd, sam], "grad_evals", labels=["SGD", "SAM"])
    lines = [t for t in fig.data if t.mode == "lines"]
    np.testing.assert_array_equal(lines[0].y, sgd.grad_evals)
    np.testing.assert_array_equal(lines[1].y, 2 * np.ones(SMALL.steps))
    total = plots.metric_series(sam, "total_grad_evals")
    np.testing.assert_array_equal(total, np.cumsum(sam.grad_evals))


def test_an_extra_series_is_drawn_for_runs_that_have_it_and_hidden_for_the_others():
    sgd = run(SMALL.replace(optimizer="sgd"))
    with_series = dataclasses.replace(sgd, extra={"mask_density": np.linspace(1, 0.5, SMALL.steps)})
    fig = plots.series_figure([with_series, sgd], plots.EXTRA_PREFIX + "mask_density", labels=["a", "b"],
                              y_title="mask density")
    lines = [t for t in fig.data if t.mode == "lines"]
    np.testing.assert_array_equal(lines[0].y, with_series.extra["mask_density"])
    assert lines[1].visible == "legendonly" and "not recorded" in lines[1].name
    assert fig.layout.yaxis.title.text == "mask density"
    with pytest.raises(ValueError, match="Unknown metric"):
        plots.series_figure([sgd], "no_such_metric")


def test_layer_small_multiples_have_one_panel_per_run_and_one_line_per_layer():
    sgd = run(SMALL.replace(optimizer="sgd"))
    values = np.arange(SMALL.steps * 3, dtype=np.float64).reshape(SMALL.steps, 3) + 1
    a = dataclasses.replace(sgd, extra={"layer_eps_ratio": values},
                            extra_labels={"layer_eps_ratio": ("input", "hidden", "output")})
    b = dataclasses.replace(a, extra={"layer_eps_ratio": 2 * values})
    fig = plots.layer_series_figure([a, b, sgd], "layer_eps_ratio", labels=["w32", "w128", "plain"])
    assert len(fig.data) == 6 and [t.name for t in fig.data[:3]] == ["input", "hidden", "output"]
    np.testing.assert_array_equal(fig.data[4].y, 2 * values[:, 1])
    assert fig.data[3].xaxis == "x2"
    assert "not recorded by plain" in fig.layout.annotations[-1].text.lower()
    with pytest.raises(ValueError, match="expected"):
        plots.layer_series_figure([dataclasses.replace(a, extra={"layer_eps_ratio": values[:2]})], "layer_eps_ratio")


def test_a_grid_records_each_cells_gradient_evaluations():
    base = SMALL.replace(optimizer="sam", steps=5)
    grid = run_grid(base, x=("rho", [0.01, 0.1]), y=("lr", [0.05, 0.1]), strategy="batched", lambda_max=False)
    np.testing.assert_array_equal(grid.total_grad_evals, 10.0)
    fig = plots.cost_figure([("SAM", grid.total_grad_evals, grid.final_test_acc)], metric_title="final test acc")
    np.testing.assert_array_equal(fig.data[0].x, grid.total_grad_evals.reshape(-1))
    np.testing.assert_array_equal(fig.data[0].y, grid.final_test_acc.reshape(-1))


def test_the_perturbations_page_shows_the_cost_of_each_run():
    at = _page(PAGES["Perturbations"], steps="20", runs="sgd;sam").run()
    _assert_ok(at)
    notes = " ".join(c.value for c in at.caption)
    assert "Gradient evaluations in training, in batches: SGD 20 (1 per step); SAM 40 (2 per step)." in notes
    figures = {f["layout"]["uirevision"]: f for f in _figures(at)}
    cost = figures["series:grad_evals:step"]
    ys = [_decode(t["y"]) for t in cost["data"] if t.get("mode") == "lines"]
    assert [float(np.nanmax(y)) for y in ys] == [1.0, 2.0]


def test_the_loss_surface_page_states_each_runs_evaluations():
    at = _page(PAGES["Loss_surface"], steps="20", runs="sgd;sam").run()
    _assert_ok(at)
    assert any("SGD 20 (1 per step); SAM 40 (2 per step)" in c.value for c in at.caption)
