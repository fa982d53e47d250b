"""The step-anatomy page in AppTest: it opens, Next moves the step, and the drawn arrows are the engine's numbers."""

from __future__ import annotations

import json

import numpy as np
from test_app import PAGES, _assert_ok, _decode, _page

from sam_viz.anatomy import anatomy
from sam_viz.config import Config


def _arrows(at) -> dict[tuple[str, str], np.ndarray]:
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    return {(t["meta"]["method"], t["meta"]["arrow"]): np.stack([_decode(t["x"]), _decode(t["y"])], 1).astype(float)
            for t in spec["data"] if isinstance(t.get("meta"), dict) and "arrow" in t["meta"]}


def _step_text(at) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("**Step "))


def test_next_moves_the_step_and_the_arrows_follow_the_engine():
    at = _page(PAGES["Step_anatomy"], task="sharp_flat", steps="12").run()
    _assert_ok(at)
    assert _step_text(at) == "**Step 0 of 11**"
    before = _arrows(at)
    at.button(key="anatomy_next").click().run()
    _assert_ok(at)
    assert _step_text(at) == "**Step 1 of 11**"
    after = _arrows(at)
    assert set(after) == set(before) and any(not np.allclose(after[k], before[k]) for k in after)
    # the arrows are the engine's step 1, as an independent anatomy of the same config reports it
    config = Config(task="sharp_flat", model="point", n_samples=256, noise=0.2, steps=12, batch_size=0, seed=0,
                    dtype="float64")
    reference = anatomy(config, ["sgd", "sam", "asam", "fsam", "lightsam1"]).at(1)
    for m, s in reference.items():
        np.testing.assert_allclose(after[(m, "perturbation")] if s.perturbation is not None else after[(m, "update")],
                                   [s.theta, s.probe] if s.perturbation is not None else [s.theta, s.theta_next],
                                   rtol=0, atol=1e-12)
        np.testing.assert_allclose(after[(m, "update")], [s.theta, s.theta_next], rtol=0, atol=1e-12)
    at.button(key="anatomy_prev").click().run()
    assert _step_text(at) == "**Step 0 of 11**"


def test_stage_one_draws_only_the_ascent_gradient_and_a_data_task_falls_back():
    at = _page(PAGES["Step_anatomy"], task="moons", steps="6").run()
    _assert_ok(at)
    assert any("analytic" in i.value for i in at.info)
    at.select_slider(key="anatomy_stage").set_value(1).run()
    _assert_ok(at)
    assert {key for _, key in _arrows(at)} == {"ascent"}


def test_same_theta_toggle_starts_every_method_at_one_point():
    at = _page(PAGES["Step_anatomy"], task="sharp_flat", steps="8").run()
    at.slider(key="anatomy_step").set_value(4).run()
    at.toggle(key="anatomy_same").set_value(True).run()
    _assert_ok(at)
    tails = {m: v[0] for (m, key), v in _arrows(at).items() if key == "update"}
    first = tails["sgd"]
    for tail in tails.values():
        np.testing.assert_array_equal(tail, first)


def test_play_moves_one_step_per_run_and_stops_at_the_last():
    at = _page(PAGES["Step_anatomy"], task="sharp_flat", steps="5").run()
    at.toggle(key="anatomy_play").set_value(True).run()  # AppTest has no timer: each run is one tick
    _assert_ok(at)
    assert _step_text(at) == "**Step 1 of 4**"
    for _ in range(5):
        at.run()
    assert _step_text(at) == "**Step 4 of 4**"
    _assert_ok(at)


def test_a_diverged_method_gets_a_note_and_the_others_stay():
    at = _page(PAGES["Step_anatomy"], task="rosenbrock", steps="30").run()
    _assert_ok(at)
    at.slider(key="anatomy_step").set_value(29).run()
    _assert_ok(at)
    assert any("Diverged" in w.value and "SGD" in w.value for w in at.warning)
    assert {m for m, _ in _arrows(at)} == {"lightsam1"}  # the SAM family at its default η diverges here too
