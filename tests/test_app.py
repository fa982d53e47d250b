"""The app in Streamlit's AppTest: every page and preset renders, figures carry the engine's data, URLs work."""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from sam_viz import landscape, scene
from sam_viz.jobs import REGISTRY
from sam_viz.optim import OPTIMIZERS
from sam_viz.optim.registry import NEW_METHODS
from sam_viz.presets import PRESETS
from sam_viz.settings import DEFAULTS, from_query
from sam_viz.train import run
from sam_viz.ui import training

ROOT = Path(__file__).resolve().parents[1]
PAGES = {"Loss_surface": "pages/1_Loss_surface.py", "Perturbations": "pages/2_Perturbations.py",
         "Hessian": "pages/3_Hessian.py", "Radius_sensitivity": "pages/4_Radius_sensitivity.py",
         "Learn": "pages/5_Learn.py", "Step_anatomy": "pages/6_Step_anatomy.py"}
TIMEOUT = 240


@pytest.fixture(scope="module", autouse=True)
def _fresh_process_caches():
    training.clear_caches()
    landscape.clear_caches()
    yield
    training.clear_caches()


def _page(path: str, _session: dict | None = None, **query: str) -> AppTest:
    """The app opened on Home with ``query`` in the URL (as a shared link would), switched to ``path``."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    for key, value in query.items():
        at.query_params[key] = value
    # wait for training however busy the machine is (the Stop test sets 0 to see the running state)
    for key, value in {"_sync_wait_s": 600.0, **(_session or {})}.items():
        at.session_state[key] = value
    at.run()
    _assert_ok(at)
    return at.switch_page(path)


def _decode(value):
    """Plotly ≥ 6 stores numpy arrays as base64 typed arrays in the figure spec."""
    if isinstance(value, dict) and "bdata" in value:
        arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if isinstance(shape, str):
            shape = [int(n) for n in shape.split(",")]
        return arr.reshape(shape) if shape else arr
    return np.asarray(value)


def _figures(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def _q(at: AppTest, key: str) -> str:
    value = at.query_params[key]
    return value[-1] if isinstance(value, list) else value


def _assert_ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_home_lists_every_preset_and_the_device():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    _assert_ok(at)
    text = " ".join(m.value for m in at.markdown)
    for preset in PRESETS.values():
        assert preset.title in text
    assert any("Engine device" in c.value for c in at.caption)


@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_renders_with_figures(page):
    at = _page(PAGES[page]).run()
    _assert_ok(at)
    if page != "Learn":
        assert len(at.get("plotly_chart")) >= 1
    else:
        assert len(at.get("latex")) == len(OPTIMIZERS)  # one update rule per optimizer


# the methods added after the first release, MAX_RUNS - 1 at a time beside SAM: every one on every page
_NEW_GROUPS = [[v.name for v in NEW_METHODS[i:i + 3]] for i in range(0, len(NEW_METHODS), 3)]


@pytest.mark.parametrize("page", [p for p in PAGES if p != "Learn"])
@pytest.mark.parametrize("group", _NEW_GROUPS, ids=["+".join(g) for g in _NEW_GROUPS])
def test_every_new_optimizer_trains_and_renders_on_every_page(page, group):
    runs = ";".join(["sam", *group])
    at = _page(PAGES[page], steps="20", batch="32", runs=runs, sxv="0.01,0.1", syv="0.1").run()
    _assert_ok(at)
    assert not any("unknown optimizer" in w.value for w in at.warning)
    assert len(at.get("plotly_chart")) >= 1
    if page == "Perturbations":  # every method's own series gets its chart
        revisions = {f["layout"]["uirevision"] for f in _figures(at)}
        for name in group:
            for series in OPTIMIZERS[name].series:
                assert any(series in r for r in revisions), (name, series)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_renders_on_its_page(name):
    preset = PRESETS[name]
    at = _page(PAGES[preset.page], preset=name, **preset.query).run()
    _assert_ok(at)
    assert not at.warning  # a preset's link needs no correction
    assert len(at.get("plotly_chart")) >= 1
    assert any(preset.title in e.label for e in at.expander)


def test_surface_figure_holds_the_engine_surface_and_trajectories():
    at = _page(PAGES["Loss_surface"]).run()
    _assert_ok(at)
    runs = [run(c) for c in DEFAULTS.configs()]
    expected = scene.surface_scene(DEFAULTS, runs, DEFAULTS.labels)
    fig = _figures(at)[0]
    contour = next(t for t in fig["data"] if t["type"] == "contour")
    z = _decode(contour["z"])
    assert z.shape == (DEFAULTS.res, DEFAULTS.res)
    np.testing.assert_allclose(z, expected.surface.loss, rtol=1e-6)
    centre = DEFAULTS.res // 2
    assert z[centre, centre] == pytest.approx(runs[0].final_train_loss, rel=1e-5)  # the PCA plane is centred on θ_final
    n_snapshots = len(runs[0].snapshot_step)
    paths = {t["name"]: t for t in fig["data"] if t["type"] == "scatter"}
    for label, traj in zip(DEFAULTS.labels, expected.trajectories):
        full = paths[f"{label} (whole run)"]
        assert len(_decode(full["x"])) == n_snapshots
        np.testing.assert_allclose(_decode(full["x"]), traj.alpha, rtol=1e-6, atol=1e-9)
    assert len(fig["frames"]) >= 2  # playback frames animate in the browser


def test_query_params_seed_the_widgets_and_are_kept():
    at = _page(PAGES["Loss_surface"], steps="60", seed="3", runs="sgd;fsam:rho=0.1", res="21").run()
    _assert_ok(at)
    assert at.slider(key="w_steps").value == 60
    assert at.number_input(key="w_seed").value == 3
    assert at.selectbox(key="w_run1").value == "fsam"
    assert at.slider(key="v_res").value == 21
    assert _q(at, "steps") == "60" and _q(at, "runs") == "sgd;fsam:rho=0.1"
    contour = next(t for t in _figures(at)[0]["data"] if t["type"] == "contour")
    assert _decode(contour["z"]).shape == (21, 21)


def test_bad_query_values_are_clamped_with_a_visible_note():
    at = _page(PAGES["Loss_surface"], res="100000", task="imagenet", log="perhaps", junk="1").run()
    _assert_ok(at)
    notes = " ".join(w.value for w in at.warning)
    assert "res=100000 is outside" in notes and "clamped to 81" in notes
    assert "imagenet" in notes and "perhaps" in notes and "junk" in notes
    assert at.slider(key="v_res").value == 81


def test_a_view_option_does_not_retrain(monkeypatch):
    at = _page(PAGES["Loss_surface"]).run()
    calls = []
    original = scene.train_all
    monkeypatch.setattr(scene, "train_all", lambda *a, **k: calls.append(1) or original(*a, **k))
    at.toggle(key="v_log").set_value(True).run()
    _assert_ok(at)
    at.slider(key="v_res").set_value(21).run()
    _assert_ok(at)
    assert calls == [] and _q(at, "log") == "true"


def test_moving_the_snapshot_recomputes_only_the_spectra(monkeypatch):
    at = _page(PAGES["Hessian"], trace="true").run()
    _assert_ok(at)
    assert len(_figures(at)) == 3  # λ_max and trace over training, the spectrum at the snapshot
    calls = []
    for name in ("curvature_curves", "trace_curves", "hessian_spectra"):
        original = getattr(scene, name)
        monkeypatch.setattr(scene, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
    at.slider(key="v_snap").set_value(0).run()
    _assert_ok(at)
    assert calls == ["hessian_spectra"] and _q(at, "snap") == "0"
    spectrum = _figures(at)[-1]
    assert "step 0" in spectrum["layout"]["title"]["text"]


def test_the_hessian_page_says_what_its_jobs_cost_before_they_start():
    at = _page(PAGES["Hessian"], trace="true", steps="120").run()  # settings no other test has started jobs for
    _assert_ok(at)
    captions = [c.value for c in at.caption]
    lam = [c for c in captions if c.startswith("Computing λ_max at ")]
    tr = [c for c in captions if c.startswith("Computing tr H (Hutch++) at ")]
    assert len(lam) == 1 and len(tr) == 1, captions
    assert re.search(r"~[\d,]+ Hessian-vector products of [\d.]+ ms: about \d+ s on this machine now", lam[0]), lam


def test_a_slow_exact_hessian_waits_for_a_go_ahead_and_says_how_to_make_it_faster():
    # 3,610 parameters × 4 runs: several minutes of dense Hessians here, so still over the gate on a machine 3× faster
    before = set(REGISTRY._jobs)  # jobs of earlier tests stay in the registry
    at = _page(PAGES["Hessian"], task="digits", n="1797", width="48", depth="1", steps="100",
               batch="64", runs="sgd;sam;asam;fsam", exact="true")
    at.run()
    _assert_ok(at)
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and warnings[0].startswith("Computing the exact λ_max at "), warnings
    assert "Switch off Exact" in warnings[0] and re.search(r"about \d+ (minutes|hours)", warnings[0]), warnings
    assert not [k for k in set(REGISTRY._jobs) - before if k.startswith("curvature:")]  # nothing started yet
    assert not _figures(at)
    (go,) = [b for b in at.button if b.label.startswith("Run it anyway")]
    at.session_state["_sync_wait_s"] = 0.0  # see the job running rather than wait for it
    go.click().run()
    _assert_ok(at)
    (job,) = [j for k, j in REGISTRY._jobs.items() if k.startswith("curvature:") and k not in before]
    assert job.running or job.done_units > 0
    job.stop()
    job.wait(120)
    assert not job.running


def test_a_stopped_lambda_max_holds_the_other_hessian_jobs_until_asked():
    before = set(REGISTRY._jobs)
    at = _page(PAGES["Perturbations"], steps="130", n="300").run()  # trained (settings no other test uses)
    at.session_state["_sync_wait_s"] = 0.0  # then the λ_max job starts and is left running
    at.switch_page(PAGES["Hessian"]).run()
    (job,) = [j for k, j in REGISTRY._jobs.items() if k.startswith("curvature:") and k not in before]
    while job.running and job.done_units < 3:  # stopped after a few snapshots, so λ_max has a curve
        job.wait(0.05)
    job.stop()
    job.wait(120)
    assert job.stopped, "the λ_max job finished before the Stop: give it more snapshots"
    at.session_state["_sync_wait_s"] = 600.0
    at.run()
    _assert_ok(at)
    assert any("was stopped after" in i.value for i in at.info)
    new = [k for k in set(REGISTRY._jobs) - before if not k.startswith(("curvature:", "train", "run"))]
    assert not [k for k in new if k.startswith(("spectra:", "trace:"))], new  # Stop means no more computing now
    (go_on,) = [b for b in at.button if b.label == "Compute the trace and spectra too"]
    go_on.click().run()
    _assert_ok(at)
    assert [k for k in set(REGISTRY._jobs) - before if k.startswith("spectra:")]
    assert len(_figures(at)) >= 2  # λ_max and the spectrum


def test_a_stop_leaves_the_job_running_while_another_visitor_waits_for_it():
    before = set(REGISTRY._jobs)
    at = _page(PAGES["Perturbations"], {"_sync_wait_s": 0.0}, steps="2900", n="4000", width="128", seed="77").run()
    (key,) = [k for k in set(REGISTRY._jobs) - before if k.startswith("runs:")]
    job = REGISTRY._jobs[key]
    job.watch("another visitor")  # a second browser on the same link
    (stop,) = [b for b in at.button if b.label == "Stop"]
    stop.click().run()
    _assert_ok(at)
    assert job.running and not job.stopped  # the other visitor still gets it
    assert any("still wait for it, so it goes on" in i.value for i in at.info)
    (again,) = [b for b in at.button if b.label == "Wait for it again"]
    again.click().run()
    assert [b for b in at.button if b.label == "Stop"]  # this visitor waits again, with its Stop
    job.viewers.pop("another visitor")
    (stop,) = [b for b in at.button if b.label == "Stop"]
    stop.click().run()  # now nobody else waits: the Stop stops the job
    assert job.wait(60) and job.stopped
    assert any("was stopped after" in i.value for i in at.info)


def test_train_button_applies_the_form_and_updates_the_figure():
    at = _page(PAGES["Perturbations"], steps="30").run()
    _assert_ok(at)
    before = _figures(at)[1]  # ‖e‖ over steps
    at.slider(key="w_steps").set_value(40)
    at.button(key="train").click().run()
    _assert_ok(at)
    assert _q(at, "steps") == "40"
    after = _figures(at)[1]
    assert len(_decode(after["data"][0]["x"])) == 40 != len(_decode(before["data"][0]["x"]))


def test_a_run_can_be_stopped_and_keeps_its_steps():
    query = {"steps": "3000", "n": "4000", "width": "128", "runs": "sam"}
    at = _page(PAGES["Perturbations"], {"_sync_wait_s": 0.0}, **query)  # no waiting: progress and Stop show
    at.run()
    _assert_ok(at)
    stop = [b for b in at.button if b.label == "Stop"]
    assert stop, "a Stop button is shown while training"
    key = "runs:" + scene.runs_key(from_query(query)[0].configs())
    job = REGISTRY.get(key)
    deadline = time.perf_counter() + 60
    while job.done_units < 5 and time.perf_counter() < deadline:  # let a few steps happen, however busy the machine
        time.sleep(0.05)
    stop[0].click().run()
    _assert_ok(at)
    assert job.stopped and not job.running
    (r,) = job.result
    assert r.stopped and 0 < r.n_steps < 3000
    assert any("was stopped after" in i.value for i in at.info)
    at.session_state["_sync_wait_s"] = 600.0  # the surface of the kept steps is a job of its own: wait for it
    at.run()
    _assert_ok(at)
    assert len(at.get("plotly_chart")) >= 1  # the views draw the kept steps


def test_a_failing_page_shows_one_clear_message_and_no_traceback(monkeypatch, caplog):
    from sam_viz.ui.guard import FAILED

    def broken(*args, **kwargs):
        raise ValueError("Invalid surface: no finite loss values")

    from sam_viz.ui import surface_page

    monkeypatch.setattr(surface_page, "surface_scene", broken)
    at = _page(PAGES["Loss_surface"], steps="31").run()
    assert not at.exception  # no traceback reaches the client
    (error,) = [e.value for e in at.error if e.value.startswith(FAILED)]
    assert "ValueError: Invalid surface: no finite loss values" in error and "server's log" in error
    assert any("page render_surface failed" in r.message for r in caplog.records)  # the details: in the log


def test_a_second_train_press_within_the_interval_is_ignored_with_a_note():
    at = _page(PAGES["Perturbations"], steps="32").run()
    _assert_ok(at)
    at.slider(key="w_steps").set_value(33)
    at.button(key="train").click().run()
    assert _q(at, "steps") == "33"
    at.slider(key="w_steps").set_value(34)
    at.button(key="train").click().run()  # at once: a classroom's double click
    _assert_ok(at)
    assert _q(at, "steps") == "33"  # ignored
    assert any("One Train every" in c.value for c in at.caption)
