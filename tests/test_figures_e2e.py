"""Figures in a real browser: the playback keeps its contour, a saved report opens with the map drawn.

Each test writes a self-contained HTML file (plotly.js embedded) and opens it in Debian's Chromium through
Playwright: no Streamlit server, a few seconds each. Skipped where Chromium is absent outside CI (as test_e2e).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from browser import browser_page, require_chromium

from sam_viz import plots as P
from sam_viz.landscape import Surface, axes_plane

pytestmark = pytest.mark.e2e

require_chromium()

CONTOUR_PATHS = "() => document.querySelectorAll('.contourlayer path').length"
ACTIVE = "() => document.querySelector('.js-plotly-plot')._fullLayout.sliders[0].active"
# Counted just before each paint, so a contour missing for a whole frame shows up; a count taken from Python
# can land between plotly's transition and its redraw inside one task, which nobody sees.
SAMPLE = ("() => { window.samples = []; const f = () => { window.samples.push("
          "document.querySelectorAll('.contourlayer path').length); requestAnimationFrame(f); };"
          " requestAnimationFrame(f); }")


def _surface():
    alpha, beta = np.linspace(-1, 1, 21), np.linspace(-1, 1, 21)
    a, b = np.meshgrid(alpha, beta)
    return Surface(alpha, beta, (a - 0.2) ** 2 + 3 * b**2 + 0.1, None, axes_plane(2), "analytic", 0.0, 0)


def _paths(n=30):
    alpha, beta = np.linspace(0.9, 0.2, n), np.linspace(0.8, 0.0, n)
    sgd = P.TrajectoryTrace("SGD", alpha, beta, np.arange(n))
    sam = P.TrajectoryTrace("SAM", alpha, beta, np.arange(n), probe_alpha=alpha + 0.05, probe_beta=beta + 0.05)
    return [sgd, sam]


def _real_errors(page):
    """Page errors, less plotly.js's rejection of an animation that a newer one interrupted (Replay, a speed
    button or Pause pressed while playing): it logs "API call to Plotly.animate rejected" and the promise
    rejects with ``undefined``; the pictures are not affected."""
    return [e for e in page.errors if e != "pageerror: undefined"]


def _open(page, path):
    page.goto(path.as_uri())
    page.wait_for_selector(".main-svg")
    page.wait_for_function(f"() => ({CONTOUR_PATHS})() > 0", timeout=10_000)


def test_playback_keeps_the_contour_on_play_slider_and_replay(tmp_path):
    fig = P.playback_figure(_surface(), _paths(), duration_ms=40)
    html = tmp_path / "playback.html"
    fig.write_html(html, include_plotlyjs=True, auto_play=False)
    with browser_page(1024, 768) as page:
        _open(page, html)
        drawn = page.evaluate(CONTOUR_PATHS)
        assert page.evaluate(ACTIVE) == len(fig.frames) - 1  # opens on the whole runs
        page.evaluate(SAMPLE)
        page.get_by_text("▶ Play", exact=True).click()
        page.wait_for_function(f"() => ({ACTIVE})() > 3 && ({ACTIVE})() < {len(fig.frames) - 1}", timeout=10_000)
        page.wait_for_function(f"() => ({ACTIVE})() === {len(fig.frames) - 1}", timeout=20_000)
        samples = page.evaluate("() => window.samples")
        # at most a frame or two without the map while playing (the old figure had none at all)
        assert len(samples) > 20 and sum(v == 0 for v in samples) <= 2, samples
        page.wait_for_timeout(300)
        assert page.evaluate(CONTOUR_PATHS) == drawn

        # drag the step slider to the left
        grip = page.locator(".slider-grip-rect").bounding_box()
        x, y = grip["x"] + grip["width"] / 2, grip["y"] + grip["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x - 250, y, steps=8)
        page.mouse.up()
        page.wait_for_timeout(300)
        assert 0 < page.evaluate(ACTIVE) < len(fig.frames) - 1
        assert page.evaluate(CONTOUR_PATHS) == drawn

        # Replay at 4× from the start, and a speed button
        page.get_by_text("⟲ Replay", exact=True).click()
        page.wait_for_timeout(150)
        page.get_by_text("▶ 4×", exact=True).click()
        page.wait_for_function(f"() => ({ACTIVE})() === {len(fig.frames) - 1}", timeout=20_000)
        page.wait_for_timeout(300)
        assert page.evaluate(CONTOUR_PATHS) == drawn
        page.screenshot(path=str(tmp_path / "playback.png"))
        if os.environ.get("SAM_VIZ_SHOTS"):
            page.screenshot(path=os.path.join(os.environ["SAM_VIZ_SHOTS"], "playback.png"))
        assert _real_errors(page) == []


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_streamlit_playback_keeps_contour_and_text_is_legible(theme, monkeypatch):
    """The Loss-surface page: Play and the slider keep the map, and tick labels are drawn in the theme's body-text
    colour (Streamlit's own faded grey washed out on a projector), light on the dark theme."""
    from browser import streamlit_server, wait_charts, wait_idle

    monkeypatch.setenv("STREAMLIT_THEME_BASE", theme)
    with streamlit_server() as (base, _), browser_page(1024, 768) as page:
        page.goto(f"{base}/Loss_surface?steps=30&res=21")
        wait_charts(page, 1)
        wait_idle(page)
        plot = page.locator(".js-plotly-plot").first
        plot.scroll_into_view_if_needed()
        page.wait_for_function(f"() => ({CONTOUR_PATHS})() > 0", timeout=30_000)
        drawn = page.evaluate(CONTOUR_PATHS)
        last = page.evaluate(ACTIVE)
        assert last > 10  # opens on the whole runs
        page.evaluate(SAMPLE)
        plot.get_by_text("▶ 2×", exact=True).click()
        page.wait_for_function(f"() => ({ACTIVE})() > 0 && ({ACTIVE})() < {last}", timeout=20_000)
        page.wait_for_function(f"() => ({ACTIVE})() === {last}", timeout=60_000)
        samples = page.evaluate("() => window.samples")
        assert samples and sum(v == 0 for v in samples) <= 2, samples
        page.wait_for_timeout(300)
        assert page.evaluate(CONTOUR_PATHS) == drawn
        colours = page.evaluate("() => { const p = document.querySelector('.js-plotly-plot');"
                                " const f = s => getComputedStyle(p.querySelector(s)).fill;"
                                " return [f('.xtick text'), f('.ytick text'), f('.legendtext'), f('.g-xtitle text'),"
                                " getComputedStyle(p.querySelector('.xtick text')).fontSize]; }")
        tick, ytick, legend, xtitle, size = colours
        assert tick == ytick == legend == xtitle, colours  # one body-text colour for every label
        rgb = [int(v) for v in tick[tick.index("(") + 1:tick.index(")")].split(",")[:3]]
        assert (sum(rgb) > 600) if theme == "dark" else (sum(rgb) < 200), colours
        assert float(size.rstrip("px")) >= 14
        if os.environ.get("SAM_VIZ_SHOTS"):
            page.screenshot(path=os.path.join(os.environ["SAM_VIZ_SHOTS"], f"streamlit-{theme}.png"))
        assert page.locator("[data-testid=stException]").count() == 0
        assert _real_errors(page) == []
