"""The Radius-sensitivity page in a real browser: a click on a heatmap cell opens that run on the Loss surface.

Streamlit delivers no selections for heatmaps; this checks the click layer end to end (plotly.js click →
Streamlit selection → switch_page with the cell's ρ and η). Skips where Chromium is absent outside CI, as
``test_e2e.py`` does. Screenshots go to ``tmp_path`` (and to ``$SAM_VIZ_SHOTS`` when set).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from browser import browser_page, require_chromium, streamlit_server, wait_charts, wait_idle

pytestmark = pytest.mark.e2e

require_chromium()


def _keep(path: Path) -> None:
    if os.environ.get("SAM_VIZ_SHOTS"):
        target = Path(os.environ["SAM_VIZ_SHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / path.name)


def test_clicking_a_heatmap_cell_opens_that_run(tmp_path):
    with streamlit_server() as (base, _), browser_page(height=1400) as page:
        page.goto(f"{base}/Radius_sensitivity?steps=20&sxv=0.01,0.1&syv=0.01,0.1")
        wait_charts(page, 1)
        wait_idle(page)
        assert page.locator("[data-testid=stException]").count() == 0
        # the click layer of the first (only) panel: point k is row k // 2, column k % 2; take row 0, column 1
        # (ρ = 0.1, η = 0.01): neither is SAM's default, so both appear in the link (defaults drop out of it)
        layer = page.evaluate("() => document.querySelector('.js-plotly-plot').data"
                              ".findIndex(t => t.type === 'scatter')")
        assert layer >= 0
        points = page.locator(".js-plotly-plot").first.locator(".scatterlayer .trace .points path")  # the heatmaps, not the cost chart
        assert points.count() == 4
        box = points.nth(1).bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        shot = tmp_path / "sensitivity_before_click.png"
        page.mouse.move(x, y)
        page.wait_for_timeout(300)
        page.screenshot(path=str(shot))
        _keep(shot)
        page.mouse.click(x, y)
        page.wait_for_url("**/Loss_surface?**", timeout=60_000)
        wait_charts(page, 1)
        wait_idle(page)
        query = parse_qs(urlparse(page.url).query)
        runs = unquote(query["runs"][0])
        name, _, hparams = runs.partition(":")
        assert name == "sam" and set(hparams.split(",")) == {"lr=0.01", "rho=0.1"}, runs
        assert query["steps"] == ["20"]
        assert page.get_by_role("heading", name="Loss surface").count() >= 1
        assert page.locator("[data-testid=stException]").count() == 0
        shot = tmp_path / "sensitivity_after_click.png"
        page.screenshot(path=str(shot))
        _keep(shot)
        assert page.errors == []
