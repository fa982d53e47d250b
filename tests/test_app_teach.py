"""The teaching features in AppTest: a click on an analytic loss surface retrains every run from the clicked point
(once per click), presenter mode from a link and from its switch on every page, and the anatomy step in the URL."""

from __future__ import annotations

import json

import numpy as np
import pytest
from streamlit.proto.WidgetStates_pb2 import WidgetStates
from test_app import PAGES, _assert_ok, _decode, _page, _q

from sam_viz import plots
from sam_viz.data import start_limits, task_info
from sam_viz.settings import from_query

SMALL = {"task": "sharp_flat", "steps": "20"}


def _figure(at, index: int = 0) -> dict:
    return json.loads(at.get("plotly_chart")[index].proto.spec)


def _trace(fig: dict, key: str) -> dict:
    return next(t for t in fig["data"] if isinstance(t.get("meta"), dict) and t["meta"].get("key") == key)


def _path_starts(fig: dict) -> list[np.ndarray]:
    """The first point of every run's whole path, as the figure draws it."""
    return [np.array([_decode(t["x"])[0], _decode(t["y"])[0]], float)
            for t in fig["data"] if str(t.get("name", "")).endswith("(whole run)")]


def _select(at, point: dict) -> None:
    """Rerun as the browser does after a click on the surface chart: its widget state holds the selection
    (AppTest has no accessor for a chart's selection; the protocol as in tests/test_sensitivity_page.py)."""
    chart = at.get("plotly_chart")[0]
    states = WidgetStates()
    for widget in at._tree.get_widget_states().widgets:
        if widget.id != chart.proto.id:
            states.widgets.append(widget)
    selection = states.widgets.add()
    selection.id = chart.proto.id
    selection.string_value = json.dumps({"selection": {"points": [point], "point_indices": [point["point_number"]],
                                                       "box": [], "lasso": []}})
    at._run(states)


def _picker_point(fig: dict, target: tuple[float, float]) -> dict:
    """The selection entry of the picker point nearest ``target``."""
    layer = next(k for k, t in enumerate(fig["data"]) if (t.get("meta") or {}).get("key") == plots.PICKER_KEY)
    custom = _decode(fig["data"][layer]["customdata"]).astype(float)
    k = int(np.argmin(np.hypot(custom[:, 0] - target[0], custom[:, 1] - target[1])))
    x, y = custom[k]
    return {"curve_number": layer, "point_number": k, "point_index": k, "x": x, "y": y, "customdata": [x, y]}


# ---- click to set θ₀ --------------------------------------------------------------------------------------------


def test_the_analytic_surface_has_a_picker_over_the_map_and_marks_the_default_start():
    at = _page(PAGES["Loss_surface"], **SMALL).run()
    _assert_ok(at)
    fig = _figure(at)
    picker = _trace(fig, plots.PICKER_KEY)
    x, y = _decode(picker["x"]), _decode(picker["y"])
    contour = next(t for t in fig["data"] if t["type"] == "contour")
    alpha, beta = _decode(contour["x"]), _decode(contour["y"])
    (x0, x1), (y0, y1) = start_limits("sharp_flat")
    assert x.min() >= max(alpha.min(), x0) - 1e-3 and x.max() <= min(alpha.max(), x1) + 1e-3
    assert y.min() >= max(beta.min(), y0) - 1e-3 and y.max() <= min(beta.max(), y1) + 1e-3
    assert x.max() - x.min() > 0.9 * (alpha.max() - alpha.min())  # the whole drawn map is clickable
    start = _trace(fig, "start")
    default = task_info("sharp_flat").start
    assert (start["x"][0], start["y"][0]) == default
    for path_start in _path_starts(fig):
        np.testing.assert_allclose(path_start, default)
    assert fig["layout"]["clickmode"] == "event+select"
    assert any("Click the map" in c.value for c in at.caption)


def test_a_click_on_the_map_retrains_every_run_from_there_and_applies_once():
    at = _page(PAGES["Loss_surface"], **SMALL).run()
    _assert_ok(at)
    point = _picker_point(_figure(at), (2.2, 0.8))
    _select(at, point)
    _assert_ok(at)
    assert (float(_q(at, "start_x")), float(_q(at, "start_y"))) == (point["x"], point["y"])
    fig = _figure(at)
    starts = _path_starts(fig)
    assert len(starts) == 2
    for path_start in starts:  # both runs (SGD, SAM) trained again from the clicked point
        np.testing.assert_allclose(path_start, [point["x"], point["y"]], atol=1e-12)
    marker = _trace(fig, "start")
    assert (marker["x"][0], marker["y"][0]) == (point["x"], point["y"]) and "clicked" in marker["name"]
    # the sidebar's Start boxes show the point, so Train keeps it
    assert at.number_input(key="w_start_x").value == point["x"]
    # the link reproduces the view: the same settings, the same runs
    settings, notes = from_query({k: _q(at, k) for k in at.query_params})
    assert not notes and (settings.start_x, settings.start_y) == (point["x"], point["y"])
    # once per click: the click is not applied again on later reruns, so a start typed in the sidebar wins
    at.number_input(key="w_start_x").set_value(-0.5)
    at.button(key="train").click().run()
    at.run()
    _assert_ok(at)
    assert float(_q(at, "start_x")) == -0.5
    for path_start in _path_starts(_figure(at)):
        np.testing.assert_allclose(path_start, [-0.5, point["y"]], atol=1e-12)
    # and a click on the point the runs already start from changes nothing (no retraining)
    same = {**point, "x": -0.5, "customdata": [-0.5, point["y"]]}
    _select(at, same)
    assert float(_q(at, "start_x")) == -0.5


def test_a_link_with_a_start_outside_the_domain_opens_clamped_with_a_note():
    (_, x1), _ = start_limits("sharp_flat")
    at = _page(PAGES["Loss_surface"], **SMALL, start_x=str(x1 + 10)).run()
    _assert_ok(at)
    assert any("sharp_flat's domain" in w.value for w in at.warning)
    assert float(_q(at, "start_x")) == x1
    for path_start in _path_starts(_figure(at)):
        assert path_start[0] == pytest.approx(x1)


def test_a_data_task_has_no_picker():
    at = _page(PAGES["Loss_surface"], task="moons", steps="10", n="64").run()
    _assert_ok(at)
    fig = _figure(at)
    assert not any((t.get("meta") or {}).get("key") == plots.PICKER_KEY for t in fig["data"])


# ---- presenter mode ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["app.py", *PAGES.values()])
def test_every_page_has_the_presenter_switch(page):
    at = _page(page, task="sharp_flat", steps="8").run() if page != "app.py" else _page(page).run()
    _assert_ok(at)
    assert at.toggle(key="v_present").value is False
    assert not at.get("html")  # no presenter style


def test_present_in_a_link_turns_it_on_and_the_figures_get_projector_fonts():
    plain = _page(PAGES["Loss_surface"], **SMALL).run()
    at = _page(PAGES["Loss_surface"], **SMALL, present="1").run()
    _assert_ok(at)
    assert at.toggle(key="v_present").value is True
    assert "present" in at.query_params
    (style,) = at.get("html")
    assert "stSidebar" in style.proto.body and "font-size" in style.proto.body
    for i in range(len(plain.get("plotly_chart"))):  # the surface (a shared, cached figure) and the metric
        small, large = _figure(plain, i)["layout"], _figure(at, i)["layout"]
        assert large["title"]["font"]["size"] == pytest.approx(small["title"]["font"]["size"] * plots.PRESENTER_SCALE)
        assert large["xaxis"]["tickfont"]["size"] > small["xaxis"]["tickfont"]["size"]
    # the plain visitor's cached figure is untouched by the presenter's
    again = _page(PAGES["Loss_surface"], **SMALL).run()
    assert _figure(again)["layout"]["title"]["font"] == _figure(plain)["layout"]["title"]["font"]


def test_the_switch_turns_presenter_mode_off_and_the_link_follows():
    at = _page(PAGES["Step_anatomy"], task="sharp_flat", steps="6", present="1").run()
    _assert_ok(at)
    big = _figure(at)["layout"]["title"]["font"]["size"]
    at.toggle(key="v_present").set_value(False).run()
    _assert_ok(at)
    assert "present" not in at.query_params and not at.get("html")
    assert _figure(at)["layout"]["title"]["font"]["size"] < big
    at.toggle(key="v_present").set_value(True).run()
    assert _q(at, "present") == "true" and at.get("html")


# ---- the anatomy step in the URL --------------------------------------------------------------------------------


def _step_text(at) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("**Step "))


def test_the_anatomy_step_round_trips_through_the_url():
    at = _page(PAGES["Step_anatomy"], task="sharp_flat", steps="12", astep="4").run()
    _assert_ok(at)
    assert _step_text(at) == "**Step 4 of 11**"
    at.button(key="anatomy_next").click().run()
    assert _step_text(at) == "**Step 5 of 11**" and _q(at, "astep") == "5"
    shared = _page(PAGES["Step_anatomy"], **{k: _q(at, k) for k in at.query_params}).run()
    _assert_ok(shared)
    assert _step_text(shared) == "**Step 5 of 11**"
    assert _figure(shared)["data"] == _figure(at)["data"]  # the same view, arrow for arrow


def test_an_anatomy_step_beyond_the_run_shows_the_last():
    at = _page(PAGES["Step_anatomy"], task="sharp_flat", steps="6", astep="40").run()
    _assert_ok(at)
    assert _step_text(at) == "**Step 5 of 5**" and _q(at, "astep") == "5"


def test_a_data_tasks_start_does_not_reach_the_anatomys_fallback_task():
    """The fuzz's find: task=moons&start_x=-100 (no domain to clamp to on moons) on the anatomy page, which shows
    sharp_flat, where -100 is outside the domain."""
    at = _page(PAGES["Step_anatomy"], task="moons", start_x="-100", steps="6").run()
    _assert_ok(at)
    assert any("analytic" in i.value for i in at.info)
    assert _step_text(at) == "**Step 0 of 5**"
