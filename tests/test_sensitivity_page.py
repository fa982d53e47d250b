"""The Radius-sensitivity page in Streamlit's AppTest: clicks open a cell's run, value boxes show what is used,
skip reasons, seeds, one progress bar with a time estimate, the Export panel and the preset's evidence table."""

from __future__ import annotations

import base64
import io
import json
import re
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.proto.WidgetStates_pb2 import WidgetStates
from streamlit.testing.v1 import AppTest
from test_app import _assert_ok, _figures
from test_app import _page as app_page

from sam_viz import landscape, plots, scene
from sam_viz.evidence import EVIDENCE
from sam_viz.jobs import REGISTRY
from sam_viz.presets import PRESETS
from sam_viz.settings import from_query
from sam_viz.sweep import Grid, run_grid
from sam_viz.ui import training
from sam_viz.ui.sensitivity_page import export_files, selected_settings

ROOT = Path(__file__).resolve().parents[1]
PAGE = "pages/4_Radius_sensitivity.py"
SMALL = {"steps": "20", "sxv": "0.01,0.1", "syv": "0.01,0.1"}


@pytest.fixture(autouse=True)
def _fresh_process_caches():
    training.clear_caches()
    landscape.clear_caches()
    yield
    training.clear_caches()  # also stops any sweep still running


def _page(_session: dict | None = None, **query: str) -> AppTest:
    """The Radius-sensitivity page opened from a link with ``query`` (``test_app._page``), run once."""
    at = app_page(PAGE, _session, **query).run()
    _assert_ok(at)
    return at


def _q(at: AppTest, key: str) -> str | None:
    if key not in at.query_params:
        return None
    value = at.query_params[key]
    return value[-1] if isinstance(value, list) else value


def _decode(value):
    if isinstance(value, dict) and "bdata" in value:
        arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if isinstance(shape, str):
            shape = [int(n) for n in shape.split(",")]
        return arr.reshape(shape) if shape else arr
    return np.asarray(value, dtype=float)


def _heatmaps(at: AppTest) -> list[dict]:
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    return [t for t in fig["data"] if t["type"] == "heatmap" and not t["name"].endswith("diverged")]


def _select(at: AppTest, point: dict) -> None:
    """Rerun as the browser does after a click on the heatmaps chart: its widget state holds the selection.

    AppTest has no accessor for a chart's selection, so the state goes in through AppTest's widget-state protocol
    (private, checked against streamlit 1.67).
    """
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


def _grids(settings, seeds=None):
    """The page's grids computed again the way the page computes them."""
    seeds = settings.sseeds if seeds is None else seeds
    return [(label, run_grid(config, x=(settings.sx, list(settings.sxv)), y=(settings.sy, list(settings.syv)),
                             seeds=seeds, strategy="batched"))
            for label, config in scene.sweep_plan(settings).entries]


# ---- B9: a click on a cell opens its run ------------------------------------------------------------------------


def test_clicking_a_cell_of_the_second_panel_opens_that_run():
    at = _page(runs="sam;lightsam1", **SMALL)
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    curves = [k for k, t in enumerate(fig["data"]) if t["type"] == "scatter"]
    assert len(curves) == 2  # one click layer per panel
    layer = fig["data"][curves[1]]
    custom = _decode(layer["customdata"])
    k = next(n for n, row in enumerate(custom) if (row[0], row[1]) == (1, 0))  # row i = 1 (lr 0.1), column j = 0
    _select(at, {"curve_number": curves[1], "point_number": k, "customdata": custom[k].tolist()})
    _assert_ok(at)
    assert [t.value for t in at.title] == ["Loss surface"]
    settings, notes = from_query({key: _q(at, key) for key in at.query_params})
    assert not notes
    (config,) = settings.configs()
    assert config.optimizer == "lightsam1" and config.hp["rho"] == 0.01 and config.hp["lr"] == 0.1
    assert settings.steps == 20


def test_a_selection_maps_to_the_cell_settings_by_customdata():
    settings = from_query({"runs": "sam;lightsam1", **SMALL})[0]
    grids = [(label, run_grid(config, x=("rho", [0.01, 0.1]), y=("lr", [0.01, 0.1]), strategy="batched",
                              lambda_max=False)) for label, config in scene.sweep_plan(settings).entries]
    event = {"selection": {"points": [{"curve_number": 5, "point_number": 1, "customdata": [0, 1, 1, 0.1, 0.01]}]}}
    (config,) = selected_settings(event, grids, settings).configs()
    assert (config.optimizer, config.hp["rho"], config.hp["lr"]) == ("lightsam1", 0.1, 0.01)
    for nothing in (None, {"selection": {"points": []}},
                    {"selection": {"points": [{"curve_number": 0, "customdata": [0, 0, 7]}]}}):  # no panel 7
        assert selected_settings(nothing, grids, settings) is None


# ---- value boxes -------------------------------------------------------------------------------------------------


def test_value_boxes_show_the_values_used_with_one_note_under_the_box():
    at = _page(runs="sam", **SMALL)
    cases = [("abc", "0.01,0.1", "'abc' is not a number"), ("nan,inf", "0.01,0.1", "not finite"),
             ("-1", "0", "1 value below 0 raised to 0"),
             (",".join(f"{k / 100:g}" for k in range(1, 101)), "0.01,0.02,0.03,0.04,0.05,0.06,0.07,0.08,0.09",
              "only the first 9 of 100 values")]
    for typed, used, reason in cases:
        at.text_input(key="sxv_text").set_value(typed).run()
        _assert_ok(at)
        assert at.text_input(key="sxv_text").value == used, typed
        notes = [w.value for w in at.warning]
        assert len(notes) == 1 and notes[0].startswith(f"Used {used.replace(',', ', ')}: ") and reason in notes[0]
        assert not any("Link setting changed" in n for n in notes)
        assert _q(at, "sxv") == used
        assert _decode(_heatmaps(at)[0]["z"]).shape == (2, len(used.split(",")))  # the map uses the same values
    at.text_input(key="sxv_text").set_value("0.2, 0.05").run()  # a clean entry: no note
    _assert_ok(at)
    assert at.text_input(key="sxv_text").value == "0.05,0.2" and not at.warning


# ---- reasons for skipping ----------------------------------------------------------------------------------------


def test_both_axes_on_rho_says_so():
    at = _page(runs="sam", **SMALL)
    at.selectbox(key="v_sy").set_value("rho").run()
    _assert_ok(at)
    messages = [i.value for i in at.info]
    assert any("x and y must be different hyperparameters" in m for m in messages), messages
    assert not any("SAM-type" in m for m in messages)


def test_an_optimizer_without_rho_is_named_with_its_reason():
    at = _page(runs="sgd", **SMALL)
    assert [i.value for i in at.info] == ["None of the chosen optimizers can be swept: SGD has no ρ hyperparameter."]
    at = _page(**SMALL)  # SGD and SAM: SAM is swept, SGD's reason is stated
    assert any(c.value == "Not swept: SGD has no ρ hyperparameter." for c in at.caption)


def test_a_task_without_test_set_maps_the_train_loss():
    at = _page(task="sharp_flat", runs="sam", **SMALL)
    heat = _heatmaps(at)[0]
    assert np.isfinite(_decode(heat["z"])).all()
    assert any("no test set" in c.value and "train loss" in c.value for c in at.caption)
    assert at.dataframe[0].value["metric"].tolist() == ["train_loss"]


# ---- seeds -------------------------------------------------------------------------------------------------------


def test_seeds_heatmap_is_the_mean_over_the_seed_axis():
    at = _page(runs="sam", sseeds="2", **SMALL)
    assert at.number_input(key="v_sseeds").value == 2
    settings = from_query({"runs": "sam", "sseeds": "2", **SMALL})[0]
    ((_, grid),) = _grids(settings)
    heat = _heatmaps(at)[0]
    np.testing.assert_allclose(_decode(heat["z"]), np.mean(grid.final_test_acc, axis=0), rtol=1e-6)
    np.testing.assert_allclose(_decode(heat["customdata"])[..., 5], np.std(grid.final_test_acc, axis=0), atol=1e-7)
    assert "± %{customdata[5]" in heat["hovertemplate"]
    table = at.dataframe[0].value
    assert table["seeds"].tolist() == [2] and np.isfinite(table["std over seeds"].iloc[0])
    at.number_input(key="v_sseeds").set_value(1).run()
    _assert_ok(at)
    assert _q(at, "sseeds") is None  # the default drops out of the URL


# ---- long work: an estimate first, then one bar for every optimizer with time left and a Stop --------------------


def test_a_slow_sweep_says_how_long_first_then_runs_with_one_bar_and_stops_keeping_its_cells():
    query = {"task": "digits", "n": "1797", "width": "32", "depth": "1", "batch": "128", "steps": "3000",
             "runs": "sam;lightsam1;lightsam2", "sxv": "0.01,0.02,0.05,0.1,0.2,0.5,1,2,5",
             "syv": "0.001,0.002,0.005,0.01,0.02,0.05,0.1,0.2,0.5"}
    at = _page({"_sync_wait_s": 0.0}, **query)
    estimate = [w.value for w in at.warning]
    assert len(estimate) == 1 and "3 optimizers × 81 cells × 3,000 steps" in estimate[0], estimate
    assert re.search(r"about \d+(\.\d)? (minutes|hours) on this machine", estimate[0]), estimate
    assert not [k for k in REGISTRY._jobs if k.startswith("sweep:")]  # nothing started yet
    go = [b for b in at.button if b.label.startswith("Run it anyway")]
    assert len(go) == 1
    go[0].click().run()
    _assert_ok(at)
    stops = [b for b in at.button if b.label == "Stop"]
    assert len(stops) == 1, "one Stop for the whole page's sweep"
    (job,) = [j for k, j in REGISTRY._jobs.items() if k.startswith("sweep:")]
    assert job.total_units == 3 * 81 * 3000
    deadline = time.perf_counter() + 60
    while (job.done_units < 200 or job.elapsed < 1.0) and time.perf_counter() < deadline:
        time.sleep(0.05)
    text = training.progress_text(job, "Sweeping", "cell-steps")
    assert "so far" in text and "left" in text
    bars = [p.proto.text for p in at.get("progress")]
    assert len(bars) == 1 and "SAM, LightSAM-I, LightSAM-II" in bars[0]
    stops[0].click().run()
    _assert_ok(at)
    assert job.stopped and not job.running
    assert any("was stopped after" in i.value for i in at.info)
    assert any("Not computed (stopped before they started): LightSAM-I, LightSAM-II" in i.value for i in at.info)
    (grid,) = [g for _, g in job.result]
    assert grid.stopped and grid.n_steps.max() > 0  # the computed steps are kept and drawn
    assert [c.key for c in at.get("plotly_chart")] == ["heatmaps", "sweep_cost"]
    # Train restarts the stopped sweep (one press, one job); it can be stopped again
    at.button(key="train").click().run()
    _assert_ok(at)
    assert len([b for b in at.button if b.label == "Stop"]) == 1
    next(b for b in at.button if b.label == "Stop").click().run()
    _assert_ok(at)


# ---- export ------------------------------------------------------------------------------------------------------


def test_export_panel_downloads_parse_back_to_the_grids():
    at = _page(runs="sam;lightsam1", **SMALL)
    labels = [b.label for b in at.get("download_button")]
    assert {"Grids (.npz + .json, zip)", "Robustness table (CSV)", "Every cell (CSV)",
            "HTML report of this view"} <= set(labels)
    assert any(e.label == "Export" for e in at.expander)
    settings = from_query({"runs": "sam;lightsam1", **SMALL})[0]
    grids = _grids(settings)
    fig = plots.sweep_heatmaps([(label, scene.sweep_panel(g, "test_acc").mean, None) for label, g in grids],
                               x_name="rho", y_name="lr", x_values=[0.01, 0.1], y_values=[0.01, 0.1], metric="test_acc")
    table = pd.DataFrame(scene.robustness_rows(grids, "test_acc"))
    files = {label: (name, build()) for label, (name, _, build) in export_files(settings, grids, fig, table).items()}

    name, data = files["Grids (.npz + .json, zip)"]
    assert name.endswith(".zip")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert sorted(zf.namelist()) == ["grid0_sam.json", "grid0_sam.npz", "grid1_lightsam1.json",
                                         "grid1_lightsam1.npz"]
        for k, (label, grid) in enumerate(grids):
            back = Grid.load(io.BytesIO(zf.read(f"grid{k}_{grid.config.optimizer}.npz")))
            np.testing.assert_array_equal(back.final_test_acc, grid.final_test_acc)
            np.testing.assert_array_equal(back.x_values, [0.01, 0.1])
            summary = json.loads(zf.read(f"grid{k}_{grid.config.optimizer}.json"))
            assert summary["label"] == label and summary["x_name"] == "rho" and summary["y_values"] == [0.01, 0.1]
            np.testing.assert_allclose(summary["final_test_acc"], grid.final_test_acc)
            np.testing.assert_allclose(summary["lambda_max"], grid.lambda_max)

    robust = pd.read_csv(io.StringIO(files["Robustness table (CSV)"][1]))
    assert robust["optimizer"].tolist() == ["SAM", "LightSAM-I"]
    for (_, grid), mean in zip(grids, robust["mean"]):
        assert mean == pytest.approx(np.mean(grid.final_test_acc))
    cells = pd.read_csv(io.StringIO(files["Every cell (CSV)"][1]))
    assert len(cells) == 8
    sam = cells[cells["optimizer"] == "SAM"].sort_values(["i", "j"])
    np.testing.assert_allclose(sam["final_test_acc"], grids[0][1].final_test_acc.reshape(-1))
    html = files["HTML report of this view"][1]
    assert html.startswith("<!DOCTYPE html>") and "plotly" in html and "steps" in html


# ---- the digits preset's evidence --------------------------------------------------------------------------------


def _benchmark_table(path: Path, command: str) -> tuple[list[str], list[list[str]]]:
    """The first Markdown table printed after ``$ command`` in a benchmark results file."""
    lines = path.read_text().splitlines()
    start = lines.index(f"$ {command}")
    table = []
    for line in lines[start:]:
        if line.startswith("|"):
            table.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif table:
            break
    header, _rule, *rows = table
    return header, rows


def test_the_digits_preset_shows_the_measured_table():
    ev = EVIDENCE["lightsam_claim_digits"]
    header, rows = _benchmark_table(ROOT / ev.source, ev.command)
    assert list(ev.columns) == header and [list(r) for r in ev.rows] == rows  # the record is the measured table
    quoted = {"LightSAM-I": "72.8 ± 26.9", "LightSAM-II": "48.8 ± 42.7", "SAM": "68.2 ± 41.1", "AdaSAM": "95.2 ± 2.9"}
    for method, value in quoted.items():
        assert {r[0]: r[2] for r in rows}[method] == value
        assert f"{value}%" in PRESETS["lightsam_claim_digits"].explanation
    preset = PRESETS["lightsam_claim_digits"]
    at = _page({"_sync_wait_s": 0.0}, preset=preset.name, **preset.query)
    shown = at.table[0].value
    assert shown.index.tolist() == [r[0] for r in rows]
    assert shown.reset_index().astype(str).values.tolist() == rows
    assert any(ev.command in c.value for c in at.caption)


def test_the_cost_chart_puts_every_cell_at_its_gradient_evaluations():
    at = _page(runs="sam;lightsam1", **SMALL)
    figures = {f["layout"]["uirevision"]: f for f in _figures(at)}
    cost = figures["cost"]
    steps = int(SMALL["steps"])
    for trace in cost["data"]:
        xs = _decode(trace["x"])
        assert len(xs) > 0 and np.all(np.asarray(xs) == 2 * steps)  # both are two-pass methods


def test_the_fsam_preset_shows_its_measured_table_and_says_the_claim_is_not_reproduced():
    ev = EVIDENCE["fsam_claim_digits"]
    header, rows = _benchmark_table(ROOT / ev.source, ev.command)
    assert list(ev.columns) == header and [list(r) for r in ev.rows] == rows
    gaps = [r[4] for r in rows if r[4]]
    assert len(gaps) == 8  # two F-SAM settings × two radii × two models
    for gap in gaps:  # the explanation's "within one seed standard deviation" holds for every row
        mean, std = (float(v) for v in gap.split(" ± "))
        assert abs(mean) <= std
    preset = PRESETS["fsam_claim_digits"]
    assert "not reproduced" in preset.explanation
    at = _page({"_sync_wait_s": 0.0}, preset=preset.name, **preset.query)
    assert at.table[0].value.index.tolist() == [r[0] for r in rows]
