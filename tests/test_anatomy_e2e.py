"""The step-anatomy page in Debian's Chromium against a server started as the README starts it: Next moves the
step counter, the drawn arrows are the engine's numbers, and Play steps on by itself. The screenshot goes to
``$SAM_VIZ_SHOTS`` (default /tmp)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from browser import browser_page, require_chromium, streamlit_server, wait_charts, wait_idle

from sam_viz.anatomy import anatomy
from sam_viz.config import Config
from sam_viz.ui.guard import FAILED

pytestmark = pytest.mark.e2e

require_chromium()

# every arrow trace of the first chart: (method, arrow, [x0, x1], [y0, y1]), read from plotly's own data
ARROWS = ("() => Array.from(document.querySelector('.js-plotly-plot').data)"
          ".filter(t => t.meta && t.meta.arrow).map(t => [t.meta.method, t.meta.arrow, Array.from(t.x), Array.from(t.y)])")


def _step_text(page) -> str:
    return page.get_by_text(re.compile(r"^Step \d+ of \d+$")).first.inner_text()


def _drawn_at(page, theta: np.ndarray, timeout_s: float = 30.0) -> dict:
    """The arrows once the chart shows the step that starts at θ: the text updates before plotly redraws, and on a
    busy machine the redraw can lag by seconds."""
    deadline = time.monotonic() + timeout_s
    while True:
        drawn = {(m, key): np.array([xs, ys], float).T for m, key, xs, ys in page.evaluate(ARROWS)}
        start = drawn.get(("sgd", "update"))
        if (start is not None and np.allclose(start[0], theta, rtol=0, atol=1e-9)) or time.monotonic() > deadline:
            return drawn
        page.wait_for_timeout(200)


def test_next_moves_the_step_and_the_browser_draws_the_engines_arrows():
    with streamlit_server(as_readme=True) as (base, _), browser_page(1500, 1750) as page:
        page.goto(f"{base}/Step_anatomy?task=sharp_flat&steps=20")
        wait_charts(page)
        wait_idle(page)
        assert _step_text(page) == "Step 0 of 19"
        page.get_by_role("button", name="Next").click()
        wait_idle(page)
        page.wait_for_function("() => document.body.innerText.includes('Step 1 of 19')", timeout=60_000)
        config = Config(task="sharp_flat", model="point", n_samples=256, noise=0.2, steps=20, dtype="float64")
        reference = anatomy(config, ["sgd", "sam", "asam", "fsam", "lightsam1"]).at(1)
        drawn = _drawn_at(page, reference["sgd"].theta)
        for m, s in reference.items():
            np.testing.assert_allclose(drawn[(m, "update")], [s.theta, s.theta_next], rtol=0, atol=1e-9)
            if s.perturbation is not None:
                np.testing.assert_allclose(drawn[(m, "perturbation")], [s.theta, s.probe], rtol=0, atol=1e-9)
        assert page.get_by_text(FAILED).count() == 0
        assert not [e for e in page.errors if e != "pageerror: undefined"], page.errors
        folder = os.environ.get("SAM_VIZ_SHOTS", "/tmp")
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / "step_anatomy.png"), full_page=True)
        # Play: the view reruns itself on a timer, a step at a time, with no clicks
        page.get_by_text("Play", exact=True).click()
        page.wait_for_function("() => document.body.innerText.includes('Step 4 of 19')", timeout=60_000)
        page.get_by_text("Play", exact=True).click()
        assert page.get_by_text(FAILED).count() == 0
        assert not [e for e in page.errors if e != "pageerror: undefined"], page.errors
