"""The app in a real browser: a shared link, keyboard input, training, playback, a download, no errors.

Runs Debian's Chromium through Playwright against a real ``streamlit run``. It skips only where Chromium is
absent outside CI; in CI a missing Chromium is a failure (the test command installs it).
"""

from __future__ import annotations

import pytest
from browser import browser_page, require_chromium, streamlit_server, wait_charts, wait_idle

pytestmark = pytest.mark.e2e

require_chromium()


@pytest.fixture(scope="module")
def server():
    with streamlit_server() as (base, _):
        yield base


def _series_length(page, index: int) -> int:
    """Points in the first trace of the index-th chart (calcdata works for base64-encoded data too)."""
    return page.evaluate(f"() => document.querySelectorAll('.js-plotly-plot')[{index}].calcdata[0].length")


def test_shared_link_keyboard_train_playback_download(server, tmp_path):
    with browser_page() as page:
        page.goto(f"{server}/Perturbations?steps=30&runs=sgd;sam:rho%3D0.1")
        wait_charts(page, 3)
        wait_idle(page)
        assert page.locator("[data-testid=stException]").count() == 0
        assert _series_length(page, 1) == 30  # ‖e‖ over 30 steps, as the link asked

        # change the Steps slider with the keyboard, then train
        steps = page.locator("[data-testid=stSlider]").filter(has_text="Steps").get_by_role("slider")
        steps.focus()
        for _ in range(5):
            steps.press("ArrowRight")
        page.get_by_role("button", name="Train").click()
        page.wait_for_function("() => location.search.includes('steps=35')", timeout=60_000)
        wait_idle(page)
        page.wait_for_function("() => { const p = document.querySelectorAll('.js-plotly-plot')[1];"
                               " return p && p.calcdata && p.calcdata[0].length === 35; }", timeout=120_000)

        # the CSV of a figure downloads and holds its data
        with page.expect_download() as info:
            page.get_by_role("button", name="Data (CSV)").nth(1).click()
        path = tmp_path / "eps.csv"
        info.value.save_as(path)
        text = path.read_text()
        assert text.splitlines()[0] and len(text.splitlines()) > 35

        # playback on the loss surface runs in the browser
        page.goto(f"{server}/Loss_surface?steps=30&res=21")
        wait_charts(page, 1)
        wait_idle(page)
        plot = page.locator(".js-plotly-plot").first
        before = page.evaluate("() => document.querySelector('.js-plotly-plot')._fullLayout.sliders[0].active")
        plot.locator(".updatemenu-button").first.click()
        # the figure opens on the last step (whole runs); Play starts again from step 0
        page.wait_for_function(
            f"() => document.querySelector('.js-plotly-plot')._fullLayout.sliders[0].active < {before}", timeout=30_000)
        assert page.locator("[data-testid=stException]").count() == 0
        assert page.errors == []


def test_bad_link_shows_a_note_and_every_page_draws(server):
    with browser_page() as page:
        page.goto(f"{server}/Loss_surface?res=9999&task=nope&steps=25")
        wait_charts(page, 1)
        wait_idle(page)
        notes = page.locator("[data-testid=stAlertContentWarning]").all_inner_texts()
        assert any("clamped to 81" in n for n in notes) and any("nope" in n for n in notes)
        for path in ("Hessian", "Radius_sensitivity", "Learn", ""):
            page.goto(f"{server}/{path}?steps=25")
            if path in ("Hessian", "Radius_sensitivity"):
                wait_charts(page, 1)
            else:
                page.get_by_role("heading", name="Presets" if path == "" else "Learn: the update rules").wait_for()
            wait_idle(page)
            assert page.locator("[data-testid=stException]").count() == 0, path
        assert page.errors == []
