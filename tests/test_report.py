"""The HTML report: no auto-play (it erased the contour, bug B8), an absolute or explained reproduce link, and
in Chromium the saved file opens with the loss map drawn."""

from __future__ import annotations

import re

import numpy as np
import pytest
from browser import browser_page, chromium_available

from sam_viz import plots as P
from sam_viz.landscape import Surface, axes_plane
from sam_viz.report import html_report, reproduce_link


def _playback():
    alpha, beta = np.linspace(-1, 1, 21), np.linspace(-1, 1, 21)
    a, b = np.meshgrid(alpha, beta)
    surface = Surface(alpha, beta, (a - 0.2) ** 2 + 3 * b**2 + 0.1, None, axes_plane(2), "analytic", 0.0, 0)
    path = P.TrajectoryTrace("SAM", np.linspace(0.9, 0.2, 20), np.linspace(0.8, 0.0, 20), np.arange(20))
    return P.playback_figure(surface, [path])


QUERY = {"steps": "30", "res": "21"}
LINK = "?steps=30&res=21"


def test_report_does_not_auto_play():
    text = html_report("Loss surface", [_playback()], QUERY, LINK)
    assert "Plotly.addFrames(" in text  # the frames are there for the Play button
    assert re.search(r"Plotly\.animate\(", text) is None  # but nothing plays them on load
    assert text.count("<script type=\"text/javascript\">window.PlotlyConfig") <= 1  # plotly.js embedded once


def test_report_link_is_absolute_with_a_base_url():
    text = html_report("Loss surface", [], QUERY, LINK, base_url="https://sam-viz.example.org/Loss_surface")
    assert '<a href="https://sam-viz.example.org/Loss_surface?steps=30&amp;res=21">' in text
    assert reproduce_link("steps=1", "http://h/P?old=2") == "http://h/P?steps=1"
    assert reproduce_link("https://x/y?a=1") == "https://x/y?a=1"  # already absolute
    assert reproduce_link("?", "http://h/P") == "http://h/P"


def test_report_without_base_url_explains_the_query_string():
    text = html_report("Loss surface", [], QUERY, LINK)
    assert 'href="?' not in text and "<a " not in text  # no dead relative link in a saved file
    assert "append <code>?steps=30&amp;res=21</code> to the address" in text
    assert reproduce_link(LINK) is None


@pytest.mark.e2e
@pytest.mark.skipif(not chromium_available(), reason="Debian chromium is not installed (apt-get install chromium)")
def test_saved_report_opens_with_the_contour_drawn(tmp_path):
    path = tmp_path / "report.html"
    path.write_text(html_report("Loss surface", [_playback()], QUERY, LINK), encoding="utf-8")
    with browser_page(1024, 768) as page:
        page.goto(path.as_uri())
        page.wait_for_selector(".main-svg")
        page.wait_for_timeout(2000)
        assert page.evaluate("() => document.querySelectorAll('.contourlayer path').length") > 0
        # opened on the whole path: the slider at the last step, nothing playing
        assert page.evaluate("() => document.querySelector('.js-plotly-plot')._fullLayout.sliders[0].active") == 19
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        assert page.errors == []
