"""Figures in a real browser: the playback keeps its loss map, a saved report opens with the map drawn.

Each test writes a self-contained HTML file (plotly.js embedded) and opens it in Debian's Chromium through
Playwright: no Streamlit server, a few seconds each. Skipped where Chromium is absent outside CI (as test_e2e).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from browser import MAP_IMAGES, PLAYBACK, SAMPLE_MAP, browser_page, map_share, require_chromium

from sam_viz import plots as P
from sam_viz.landscape import Surface, axes_plane

pytestmark = pytest.mark.e2e

require_chromium()

CONTOUR_PATHS = "() => document.querySelectorAll('.contourlayer path').length"
ACTIVE = f"() => document.querySelector('{PLAYBACK}')._fullLayout.sliders[0].active"


def _surface(n=21):
    alpha, beta = np.linspace(-1, 1, n), np.linspace(-1, 1, n)
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


def test_playback_keeps_the_map_on_play_slider_and_replay(tmp_path):
    # 61² and 200 frames: the size at which the old per-frame redraw left the map unpainted in Streamlit
    fig = P.playback_figure(_surface(61), _paths(200), duration_ms=40)
    html = tmp_path / "playback.html"
    fig.write_html(html, include_plotlyjs=True, auto_play=False)
    with browser_page(1024, 768) as page:
        _open(page, html)
        assert page.evaluate(MAP_IMAGES) == 1
        assert map_share(page) > 0.8
        assert page.evaluate(ACTIVE) == len(fig.frames) - 1  # opens on the whole runs
        page.evaluate(SAMPLE_MAP)
        page.get_by_text("▶ Play", exact=True).click()
        page.wait_for_function(f"() => ({ACTIVE})() > 3 && ({ACTIVE})() < {len(fig.frames) - 1}", timeout=10_000)
        assert map_share(page) > 0.8, "the map is on screen while the paths replay"
        page.wait_for_function(f"() => ({ACTIVE})() === {len(fig.frames) - 1}", timeout=30_000)
        samples = page.evaluate("() => window.samples")
        assert len(samples) > 20 and set(samples) == {1}, "the map is in the page at every paint"
        assert map_share(page) > 0.8

        # the clear contour trace still answers hover with the loss there
        page.mouse.move(*_centre(page))
        page.wait_for_selector(".hovertext", timeout=5_000)
        assert "loss" in page.evaluate("() => Array.from(document.querySelectorAll('.hovertext'), e => e.textContent).join()")

        # drag the step slider to the left
        grip = page.locator(".slider-grip-rect").bounding_box()
        x, y = grip["x"] + grip["width"] / 2, grip["y"] + grip["height"] / 2
        page.mouse.move(x, y)
        page.mouse.down()
        page.mouse.move(x - 250, y, steps=8)
        page.mouse.up()
        page.wait_for_timeout(300)
        assert 0 < page.evaluate(ACTIVE) < len(fig.frames) - 1
        assert map_share(page) > 0.8

        # Replay at 4× from the start, and a speed button
        page.get_by_text("⟲ Replay", exact=True).click()
        page.wait_for_timeout(150)
        page.get_by_text("▶ 4×", exact=True).click()
        page.wait_for_function(f"() => ({ACTIVE})() === {len(fig.frames) - 1}", timeout=30_000)
        page.wait_for_timeout(300)
        assert page.evaluate(MAP_IMAGES) == 1 and map_share(page) > 0.8
        page.screenshot(path=str(tmp_path / "playback.png"))
        if os.environ.get("SAM_VIZ_SHOTS"):
            page.screenshot(path=os.path.join(os.environ["SAM_VIZ_SHOTS"], "playback.png"))
        assert _real_errors(page) == []


def _centre(page) -> tuple[float, float]:
    box = page.locator(".nsewdrag").first.bounding_box()
    return box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_streamlit_playback_keeps_the_map_and_text_is_legible(theme, monkeypatch):
    """The Loss-surface page: Play and the slider keep the map, and tick labels are drawn in the theme's body-text
    colour (Streamlit's own faded grey washed out on a projector), light on the dark theme."""
    from browser import streamlit_server, wait_charts, wait_idle

    monkeypatch.setenv("STREAMLIT_THEME_BASE", theme)
    with streamlit_server() as (base, _), browser_page(1024, 768) as page:
        page.goto(f"{base}/Loss_surface?steps=200&res=61")
        wait_charts(page, 1)
        wait_idle(page)
        plot = page.locator(".js-plotly-plot").first
        plot.scroll_into_view_if_needed()
        page.wait_for_function(f"() => ({MAP_IMAGES})() == 1", timeout=30_000)
        assert map_share(page, PLAYBACK) > 0.8
        last = page.evaluate(ACTIVE)
        assert last > 10  # opens on the whole runs
        page.evaluate(SAMPLE_MAP)
        plot.get_by_text("▶ 2×", exact=True).click()
        page.wait_for_function(f"() => ({ACTIVE})() > 0 && ({ACTIVE})() < {last}", timeout=20_000)
        assert map_share(page, PLAYBACK) > 0.8, "the map is on screen while the paths replay"
        page.wait_for_function(f"() => ({ACTIVE})() === {last}", timeout=60_000)
        samples = page.evaluate("() => window.samples")
        assert samples and set(samples) == {1}, "the map is in the page at every paint"
        page.wait_for_timeout(300)
        assert map_share(page, PLAYBACK) > 0.8
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
