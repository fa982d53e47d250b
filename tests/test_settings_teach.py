"""Teaching features below the UI: the start domain the engine enforces, the URL fields of presenter mode and the
anatomy step, the click-to-start picker layer and the presenter fonts of a figure."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import pytest

from sam_viz import plots
from sam_viz.config import Config
from sam_viz.data import TASKS, start_limits, task_info
from sam_viz.settings import DEFAULTS, from_query, to_query
from sam_viz.train import setup

ANALYTIC = [name for name, t in TASKS.items() if t.kind == "analytic"]


# ---- the start domain -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ANALYTIC)
def test_the_start_domain_holds_the_plot_window_and_the_default_start(task):
    info = task_info(task)
    (x0, x1), (y0, y1) = start_limits(task)
    assert x0 < info.xlim[0] < info.xlim[1] < x1 and y0 < info.ylim[0] < info.ylim[1] < y1
    assert x0 <= info.start[0] <= x1 and y0 <= info.start[1] <= y1
    Config(task=task, model="point", start_x=x0, start_y=y1)  # the edges are inside


def test_a_task_without_a_start_has_no_start_domain():
    with pytest.raises(ValueError, match="no start point"):
        start_limits("moons")


@pytest.mark.parametrize("coord", ["start_x", "start_y"])
def test_config_refuses_a_start_outside_the_domain_and_names_it(coord):
    (x0, x1), (y0, y1) = start_limits("himmelblau")
    beyond = (x1 if coord == "start_x" else y1) + 0.5
    with pytest.raises(ValueError, match=rf"Invalid {coord}: {beyond}.*himmelblau.*domain"):
        Config(task="himmelblau", model="point", **{coord: beyond})
    with pytest.raises(ValueError, match=coord):
        Config.from_flat({"task": "himmelblau", "model": "point", coord: str(beyond)})


def test_a_start_on_a_classification_task_gets_trains_own_clear_error():
    config = Config(task="moons", start_x=50.0)  # no domain: train says only the point model takes a start
    with pytest.raises(ValueError, match="only the 'point' model takes a start"):
        setup(config)


def test_a_link_with_a_start_outside_the_domain_is_clamped_with_a_note():
    (x0, x1), (y0, y1) = start_limits("sharp_flat")
    settings, notes = from_query({"task": "sharp_flat", "start_x": str(x1 + 3), "start_y": str(y0 - 1)})
    assert (settings.start_x, settings.start_y) == (x1, y0)
    assert len(notes) == 2 and all("sharp_flat's domain" in n and "clamped" in n for n in notes)
    (config, *_) = settings.configs()
    assert (config.start_x, config.start_y) == (x1, y0)  # and the engine accepts what the URL made of it


def test_a_start_inside_the_domain_and_a_blank_one_pass_unchanged():
    settings, notes = from_query({"task": "rosenbrock", "start_x": "1.25", "start_y": "nan"})
    assert not notes and settings.start_x == 1.25 and math.isnan(settings.start_y)


# ---- presenter mode and the anatomy step in the URL ------------------------------------------------------------


@pytest.mark.parametrize("raw", ["1", "true", "on"])
def test_present_round_trips_through_the_url(raw):
    settings, notes = from_query({"present": raw, "task": "sharp_flat"})
    assert settings.present and not notes
    again, notes = from_query(to_query(settings))
    assert again == settings and not notes
    assert "present" not in to_query(DEFAULTS)


def test_present_that_is_no_boolean_falls_back_with_a_note():
    settings, notes = from_query({"present": "projector"})
    assert not settings.present and notes and "present" in notes[0]


def test_the_anatomy_step_round_trips_and_is_a_view_option():
    settings, notes = from_query({"astep": "7", "task": "saddle"})
    assert settings.astep == 7 and not notes
    assert to_query(settings)["astep"] == "7"
    assert settings.configs() == from_query({"task": "saddle"})[0].configs()  # the step trains nothing
    _, notes = from_query({"astep": "-3"})
    assert notes and "astep" in notes[0]


# ---- the picker layer -------------------------------------------------------------------------------------------


def test_picker_points_cover_the_box_and_carry_their_position():
    trace = plots.picker_points((-1.5, 3.5), (-1.0, 1.0), n=11)
    x, y, custom = np.asarray(trace.x), np.asarray(trace.y), np.asarray(trace.customdata)
    assert x.size == y.size == 121
    assert (x.min(), x.max(), y.min(), y.max()) == (-1.5, 3.5, -1.0, 1.0)
    np.testing.assert_array_equal(custom, np.column_stack([x, y]))
    assert trace.meta["key"] == plots.PICKER_KEY and trace.meta["export"] is False
    assert trace.marker.opacity < 0.05 and trace.showlegend is False


@pytest.mark.parametrize("box", [((1.0, 1.0), (0.0, 1.0)), ((0.0, 1.0), (2.0, np.nan))])
def test_picker_points_refuse_an_empty_box(box):
    with pytest.raises(ValueError, match="picker box"):
        plots.picker_points(*box)


def test_the_picker_layer_is_no_data_of_the_figure():
    fig = go.Figure([go.Scatter(x=[0, 1], y=[1, 2], name="path"), plots.picker_points((0, 1), (0, 1), n=3)])
    assert list(plots.figure_to_csv_frames(fig)) == ["path"]


def test_a_selection_of_a_picker_point_is_its_rounded_position():
    event = {"selection": {"points": [{"curve_number": 9, "point_number": 4, "x": 0.25, "y": -0.5,
                                        "customdata": [0.25, -0.5]}]}}
    assert plots.picked_start(event) == (0.25, -0.5)
    as_dict = {"selection": {"points": [{"customdata": {"0": 1.0004, "1": 2.0}}]}}
    assert plots.picked_start(as_dict) == (1.0, 2.0)


@pytest.mark.parametrize("event", [
    None, {}, {"selection": {"points": []}},
    {"selection": {"points": [{"customdata": [3, 0.5, 0.4, 0.0]}]}},  # a path's head: step, losses, distance
    {"selection": {"points": [{"customdata": [0.12]}]}},  # the grid's best cell
    {"selection": {"points": [{"x": 5.0, "y": 1.0, "customdata": [0.0, 1.0]}]}},  # not where it says
    {"selection": {"points": [{"customdata": ["a", "b"]}]}},
])
def test_anything_else_is_no_pick(event):
    assert plots.picked_start(event) is None


def test_the_start_marker_says_whether_it_was_picked():
    assert "clicked" in plots.start_marker(1, 2, picked=True).name
    marker = plots.start_marker(1.5, -0.25)
    assert (marker.x, marker.y) == ((1.5,), (-0.25,)) and "click" in marker.name


# ---- presenter fonts --------------------------------------------------------------------------------------------


def _sizes(node, path=""):
    """Every explicit font size under a figure's JSON, by its path."""
    out = {}
    if isinstance(node, dict):
        for k, v in node.items():
            if k.endswith("font") and isinstance(v, dict) and isinstance(v.get("size"), (int, float)):
                out[f"{path}.{k}"] = v["size"]
            out.update(_sizes(v, f"{path}.{k}"))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.update(_sizes(v, f"{path}[{i}]"))
    return out


def test_presenter_fonts_raise_every_font_of_a_figure():
    fig = plots.series_figure([_FakeRun()], "train_loss", labels=["SGD"])
    fig.add_trace(go.Heatmap(z=[[1, 2]], textfont={"size": 12}, colorbar={"tickfont": {"size": 10}}))
    fig.update_layout(annotations=[{"text": "note", "font": {"size": 13}}])
    before = _sizes(fig.to_plotly_json())
    plots.presenter_fonts(fig)
    after = _sizes(fig.to_plotly_json())
    assert set(before) <= set(after)
    for path, size in before.items():
        assert after[path] == pytest.approx(size * plots.PRESENTER_SCALE, abs=0.05), path
    assert after[".layout.font"] >= 20  # the body size, set where the figure left it to the theme


def test_presenter_fonts_refuse_a_bad_scale():
    with pytest.raises(ValueError, match="scale"):
        plots.presenter_fonts(go.Figure(), 0)


class _FakeRun:
    """The few fields ``series_figure`` reads, for a figure without training."""

    def __init__(self):
        self.step = np.arange(5)
        self.train_loss = np.linspace(1, 0.2, 5)
        self.diverged = False
        self.diverged_step = -1
        self.config = Config(task="sharp_flat", model="point", optimizer="sgd")
