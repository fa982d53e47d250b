"""The teaching features in Debian's Chromium against a server started as the README starts it: a click on the loss
surface retrains every run from the clicked point, and presenter mode at 1024×768 cuts nothing off. Screenshots go
to ``$SAM_VIZ_SHOTS`` (default /tmp/sam-viz-teach)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from browser import browser_page, require_chromium, streamlit_server, wait_charts, wait_idle

from sam_viz.data import task_info
from sam_viz.ui.guard import FAILED

pytestmark = pytest.mark.e2e

require_chromium()

SHOTS = Path(os.environ.get("SAM_VIZ_SHOTS", "/tmp/sam-viz-teach"))
EXCEPTION = "[data-testid=stException]"
# the screen position of a point (w1, w2) of the first chart, from plotly's own axes (their offsets, not the
# margins: equal axis scales shrink the plot inside them)
TO_SCREEN = """(p) => { const gd = document.querySelector('.js-plotly-plot'), fl = gd._fullLayout;
  const r = gd.getBoundingClientRect();
  return [r.left + fl.xaxis._offset + fl.xaxis.l2p(p[0]), r.top + fl.yaxis._offset + fl.yaxis.l2p(p[1])]; }"""
# the first point of every run's whole path as the first chart draws it (plotly's calcdata: decoded numbers)
PATH_STARTS = """() => { const gd = document.querySelector('.js-plotly-plot');
  return gd.data.map((t, i) => [t.name, gd.calcdata[i]]).filter(([n, c]) => n.endsWith('(whole run)'))
    .map(([n, c]) => [c[0].x, c[0].y]); }"""
START_MARKER = """() => { const gd = document.querySelector('.js-plotly-plot');
  const i = gd.data.findIndex(t => t.meta && t.meta.key === 'start');
  return i < 0 ? null : [gd.calcdata[i][0].x, gd.calcdata[i][0].y, gd.data[i].name]; }"""
TITLE_SIZES = """() => [parseFloat(getComputedStyle(document.querySelector('h1')).fontSize),
  document.querySelector('.js-plotly-plot')._fullLayout.title.font.size]"""
# every element that scrolls sideways (its content is wider than its box and it is not clipped on purpose)
SIDEWAYS = """() => Array.from(document.querySelectorAll('*')).filter(e => e.checkVisibility() && e.scrollWidth > e.clientWidth + 1
  && ['auto', 'scroll'].includes(getComputedStyle(e).overflowX))
  .map(e => (e.closest('[data-testid]') || e).dataset.testid || e.tagName)
  .concat(document.documentElement.scrollWidth > window.innerWidth + 1 ? ['document'] : [])"""
# charts, headings and the switch that reach past the window's right edge
CUT_OFF = """() => Array.from(document.querySelectorAll(
  '.js-plotly-plot, h1, [data-testid=stToggle], [data-testid=stCaptionContainer]'))
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1).map(e => e.dataset.testid || e.tagName)"""


# text Streamlit cut with an ellipsis ("Previ…", "Exact (dense) sp…") because its column is too narrow
TRUNCATED = """() => Array.from(document.querySelectorAll('*'))
  .filter(e => e.checkVisibility() && e.clientWidth > 0 && getComputedStyle(e).textOverflow === 'ellipsis'
    && e.scrollWidth > e.clientWidth + 1)
  .map(e => e.textContent)"""


@pytest.fixture(scope="module")
def server():
    with streamlit_server(as_readme=True) as (base, _):
        yield base


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def _no_exception(page) -> None:
    assert page.locator(EXCEPTION).count() == 0, page.locator(EXCEPTION).all_inner_texts()
    assert page.get_by_text(FAILED).count() == 0


def _wait_for(page, script: str, check, timeout_s: float = 120.0):
    """``script``'s value once ``check`` accepts it (a rerun's chart can lag its URL by seconds on a busy machine)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(script)
        if check(value) or time.monotonic() > deadline:
            return value
        page.wait_for_timeout(250)


def _query(page) -> dict[str, str]:
    from urllib.parse import parse_qsl, urlsplit
    return dict(parse_qsl(urlsplit(page.url).query))


def test_a_click_on_the_surface_retrains_every_run_from_the_clicked_point(server):
    with browser_page(1400, 1500) as page:
        page.goto(f"{server}/Loss_surface?task=sharp_flat&steps=30")
        wait_charts(page)
        wait_idle(page)
        _no_exception(page)
        default = task_info("sharp_flat").start
        starts = page.evaluate(PATH_STARTS)
        assert len(starts) == 2 and np.allclose(starts, [default, default])
        target = (2.3, 0.9)  # on the flat minimum's side, far from the default start
        x, y = page.evaluate(TO_SCREEN, list(target))
        page.mouse.move(x, y)
        page.wait_for_timeout(300)  # plotly picks the point under the cursor on hover, then the click selects it
        page.mouse.click(x, y)
        page.wait_for_function("() => location.search.includes('start_x')", timeout=60_000)
        wait_idle(page)
        query = _query(page)
        picked = (float(query["start_x"]), float(query["start_y"]))
        # the grid point nearest the click: 41 points over the map, about 0.14 × 0.08 apart
        assert abs(picked[0] - target[0]) < 0.1 and abs(picked[1] - target[1]) < 0.06, picked
        starts = _wait_for(page, PATH_STARTS, lambda s: len(s) == 2 and np.allclose(s, [picked, picked]))
        np.testing.assert_allclose(starts, [picked, picked], rtol=0, atol=1e-9)  # both runs trained from there
        marker = page.evaluate(START_MARKER)
        assert marker[:2] == list(picked) and "clicked" in marker[2]
        _no_exception(page)
        _shot(page, "click-to-start")
        # the link reproduces it for a second visitor
        page.goto(page.url)
        wait_charts(page)
        wait_idle(page)
        np.testing.assert_allclose(page.evaluate(PATH_STARTS), [picked, picked], rtol=0, atol=1e-9)
        assert not [e for e in page.errors if e != "pageerror: undefined"], page.errors


def test_presenter_mode_at_1024_by_768_hides_the_sidebar_and_cuts_nothing_off(server):
    with browser_page(1024, 768) as page:
        page.goto(f"{server}/Loss_surface?task=sharp_flat&steps=30")
        wait_charts(page)
        wait_idle(page)
        h1_plain, chart_title_plain = page.evaluate(TITLE_SIZES)
        assert page.locator("[data-testid=stSidebar]").is_visible()
        _shot(page, "presenter-off-1024")

        page.goto(f"{server}/Loss_surface?task=sharp_flat&steps=30&present=1")
        wait_charts(page, 2)
        wait_idle(page)
        _no_exception(page)
        assert not page.locator("[data-testid=stSidebar]").is_visible()
        h1, chart_title = _wait_for(page, TITLE_SIZES, lambda s: s[1] > chart_title_plain)
        assert h1 > h1_plain and chart_title > chart_title_plain
        assert page.evaluate(SIDEWAYS) == []
        assert page.evaluate(CUT_OFF) == []
        # the larger axis title stays clear of the Play buttons under it (they sit at a fraction of the plot's height)
        title_bottom, buttons_top = page.evaluate("""() => { const gd = document.querySelector('.js-plotly-plot');
          return [gd.querySelector('.xtitle').getBoundingClientRect().bottom,
                  Math.min(...Array.from(gd.querySelectorAll('.updatemenu-button')).map(b => b.getBoundingClientRect().top))]; }""")
        assert title_bottom < buttons_top
        width = page.evaluate("() => document.querySelector('.js-plotly-plot').getBoundingClientRect().width")
        assert width > 0.9 * 1024  # the chart takes the page's width
        _shot(page, "presenter-1024")
        page.mouse.move(512, 500)  # the wheel scrolls what is under the mouse: Streamlit's main column
        page.mouse.wheel(0, 700)
        page.wait_for_timeout(500)
        _shot(page, "presenter-1024-scrolled")

        # the switch on the page turns it off again, and the link follows
        page.get_by_text("Presenter mode").first.click()
        page.wait_for_function("() => !location.search.includes('present')", timeout=60_000)
        wait_idle(page)
        page.locator("[data-testid=stSidebar]").wait_for(state="visible", timeout=60_000)
        assert not [e for e in page.errors if e != "pageerror: undefined"], page.errors


def test_presenter_mode_at_1024_by_768_cuts_no_control_of_the_step_anatomy(server):
    with browser_page(1024, 768) as page:
        page.goto(f"{server}/Step_anatomy?task=sharp_flat&steps=12&astep=3&present=1")
        wait_charts(page)
        wait_idle(page)
        _no_exception(page)
        assert not page.locator("[data-testid=stSidebar]").is_visible()
        page.wait_for_function("() => document.body.innerText.includes('Step 3 of 11')", timeout=60_000)
        assert page.evaluate(TRUNCATED) == []
        assert page.evaluate(SIDEWAYS) == [] and page.evaluate(CUT_OFF) == []
        _shot(page, "presenter-anatomy-1024")


@pytest.mark.parametrize("path, charts", [
    ("", 0), ("Perturbations?steps=30", 2), ("Hessian?steps=30", 1),
    ("Radius_sensitivity?steps=20&sxv=0.01,0.1&syv=0.01,0.1", 1), ("Learn", 0)])
def test_presenter_mode_at_1024_by_768_cuts_nothing_off_on_every_other_page(server, path, charts):
    sep = "&" if "?" in path else "?"
    with browser_page(1024, 768) as page:
        page.goto(f"{server}/{path}{sep}present=1")
        page.get_by_text("Presenter mode").first.wait_for(timeout=60_000)  # the page's script has run
        if charts:
            wait_charts(page, charts)
        wait_idle(page)
        page.locator("[data-testid=stSidebar]").wait_for(state="hidden", timeout=30_000)
        page.wait_for_timeout(1000)  # plotly's first layout
        _no_exception(page)
        assert page.evaluate(TRUNCATED) == []
        # a data frame scrolls its columns inside its own box by design (a canvas grid, as in a spreadsheet)
        assert [e for e in page.evaluate(SIDEWAYS) if e != "stDataFrameResizable"] == []
        assert page.evaluate(CUT_OFF) == []
        _shot(page, f"presenter-{(path.split('?')[0] or 'home').lower()}-1024")
