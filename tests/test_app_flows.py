"""The journeys of issue 10 in AppTest: each test reproduces one reported bug's steps and asserts what the page
shows (the browser journeys in ``test_journeys.py`` check the same flows on screen)."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest
from test_app import PAGES, ROOT, TIMEOUT, _assert_ok, _figures, _fresh_process_caches, _page, _q  # noqa: F401

from sam_viz import scene
from sam_viz.jobs import REGISTRY
from sam_viz.presets import PRESETS
from sam_viz.settings import from_query


def _warnings(at: AppTest) -> str:
    return " ".join(w.value for w in at.warning)


def test_a_preset_link_opened_within_a_session_shows_the_preset():
    """B1: Home was open with the defaults; following a preset's link must open the preset, not the session's old
    settings (they were read from the URL only on a session's first run)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.session_state["_sync_wait_s"] = 600.0
    at.run()
    _assert_ok(at)
    preset = PRESETS["sharp_vs_flat"]
    for key, value in {**preset.query, "preset": preset.name}.items():
        at.query_params[key] = value
    at.switch_page(PAGES[preset.page]).run()
    _assert_ok(at)
    assert at.selectbox(key="w_task").value == "sharp_flat"
    assert _q(at, "preset") == "sharp_vs_flat" and _q(at, "steps") == "600"
    assert any(preset.title in e.label for e in at.expander)


@pytest.mark.parametrize("task", ["rosenbrock", "himmelblau"])
@pytest.mark.parametrize("page", ["Loss_surface", "Perturbations"])
def test_a_diverging_default_run_is_a_note_not_a_traceback(task, page):
    """B3: the default SGD + SAM diverge on these losses; the page says so and what would be stable."""
    at = _page(PAGES[page], task=task).run()
    _assert_ok(at)
    notes = _warnings(at)
    assert "diverged at step" in notes and "is stable on" in notes
    assert _figures(at), "the surface is still drawn"


def test_choosing_an_analytic_task_sets_a_stable_step_size():
    at = _page(PAGES["Loss_surface"]).run()
    at.selectbox(key="w_task").set_value("rosenbrock").run()
    _assert_ok(at)
    assert at.select_slider(key="w_run0_lr").value == pytest.approx(0.001)
    at.button(key="train").click().run()
    _assert_ok(at)
    assert "diverged" not in _warnings(at)


@pytest.mark.parametrize("page", ["Hessian", "Loss_surface"])
@pytest.mark.parametrize("snap", ["100", "9999"])
def test_a_snapshot_beyond_the_run_is_fitted(page, snap):
    """B4: ``?steps=50&snap=100`` raised StreamlitValueAboveMaxError."""
    at = _page(PAGES[page], steps="50", snap=snap).run()
    _assert_ok(at)
    slider = at.slider(key="v_snap")
    assert slider.value == slider.max and _q(at, "snap") == str(int(slider.max))
    assert any("is not available here; showing 50" in c.value for c in at.caption)


def test_a_resolution_below_the_slider_is_clamped():
    """B5: ``?res=5`` raised StreamlitValueBelowMinError."""
    at = _page(PAGES["Loss_surface"], res="5").run()
    _assert_ok(at)
    assert at.slider(key="v_res").value == 11
    assert "clamped to 11" in _warnings(at)


def test_a_new_optimizer_shows_its_own_hyperparameters_and_trains_with_them():
    """B6: Run 2 changed from SAM to F-SAM still showed "SAM hyperparameters" and dropped the ρ typed there."""
    at = _page(PAGES["Loss_surface"], steps="20").run()
    at.selectbox(key="w_run1").set_value("fsam").run()
    _assert_ok(at)
    assert any(e.label == "F-SAM hyperparameters" for e in at.expander)
    assert not any(e.label == "SAM hyperparameters" for e in at.expander)
    at.select_slider(key="w_run1_rho").set_value(10.0)
    at.button(key="train").click().run()
    _assert_ok(at)
    assert _q(at, "runs") == "sgd;fsam:rho=10.0"


def test_a_changed_optimizer_keeps_the_shared_hyperparameters():
    at = _page(PAGES["Loss_surface"], steps="20", runs="sgd;sam:lr=0.02").run()
    at.selectbox(key="w_run1").set_value("fsam").run()
    assert at.select_slider(key="w_run1_lr").value == pytest.approx(0.02)


def test_a_stopped_job_is_not_served_to_the_next_visitor():
    """B7: a stopped, partial result was cached and shown to everyone who opened the same link."""
    query = {"steps": "3000", "n": "4000", "width": "128"}
    at = _page(PAGES["Perturbations"], {"_sync_wait_s": 0.0}, **query)
    at.run()
    key = "runs:" + scene.runs_key(from_query(query)[0].configs())
    job = REGISTRY.get(key)
    next(b for b in at.button if b.label == "Stop").click().run()
    assert job.stopped and not job.running
    sgd, sam = job.result
    assert sgd.n_steps == sam.n_steps > 0  # both runs kept, with the same steps
    assert any("was stopped after" in i.value for i in at.info)
    other = _page(PAGES["Perturbations"], {"_sync_wait_s": 0.0}, **query)  # another visitor, same link
    other.run()
    fresh = REGISTRY.get(key)
    assert fresh is not job and not fresh.stopped
    fresh.stop()
    fresh.wait(60)


def test_the_cnn_shows_no_layer_settings_and_the_analytic_metric_box_no_test_metrics():
    at = _page(PAGES["Loss_surface"], task="digits", model="cnn", steps="5", n="200").run()
    _assert_ok(at)
    keys = {w.key for w in at.number_input}
    assert "w_depth" not in keys and "w_width" not in keys
    at = _page(PAGES["Loss_surface"], task="sharp_flat", steps="20").run()
    _assert_ok(at)
    box = at.selectbox(key="v_series")
    assert box.value == "train_loss" and not any(o.startswith("test_") for o in box.options)
    assert any("Grid 31×31" in c.value for c in at.caption)  # the resolution shown is the one drawn


def test_the_digits_run_summary_says_ten_classes():
    at = _page(PAGES["Loss_surface"], task="digits", steps="5", n="200").run()
    _assert_ok(at)
    from sam_viz.ui import training

    runs = training.REGISTRY.get("runs:" + scene.runs_key(from_query({"task": "digits", "steps": "5", "n": "200"})[0]
                                                          .configs())).result
    summary = json.loads(json.dumps(runs[0].summary()))
    assert summary["n_classes"] == 10 and "n_classes" not in summary["config"]


def test_following_a_presets_advice_keeps_its_explanation():
    """"Raise the batch size to 128 in the sidebar", then Train, made the batch-noise preset's text disappear."""
    preset = PRESETS["batch_size_noise"]
    at = _page(PAGES[preset.page], preset=preset.name, **preset.query).run()
    at.number_input(key="w_batch").set_value(128)
    at.button(key="train").click().run()
    _assert_ok(at)
    assert _q(at, "batch") == "128" and _q(at, "preset") == preset.name
    assert any(preset.title in e.label for e in at.expander)
    assert any("batch 4 → 128" in c.value for c in at.caption)


def test_the_rho_too_large_preset_shows_the_test_accuracy_it_points_to():
    preset = PRESETS["rho_too_large"]
    assert "test accuracy" in preset.explanation
    at = _page(PAGES[preset.page], preset=preset.name, **preset.query).run()
    _assert_ok(at)
    assert at.selectbox(key="v_series").value == "test_acc"
    titles = [json.dumps(f["layout"].get("yaxis", {}).get("title", "")) for f in _figures(at)]
    assert any("test accuracy" in t for t in titles)


def test_seeds_draw_mean_and_std_bands():
    """Researchers asked for error bands: seeds=3 trains each optimizer on three seeds; curves show mean ± std."""
    at = _page(PAGES["Perturbations"], steps="20", seeds="3").run()
    _assert_ok(at)
    names = [t.get("name", "") for f in _figures(at) for t in f["data"]]
    assert any("3 seeds" in n for n in names)
