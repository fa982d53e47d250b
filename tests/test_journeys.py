"""The journeys a teacher, a student and a researcher take, in Debian's Chromium against a server started the way
the README starts it (``streamlit run app.py``; only the port differs, through Streamlit's environment variable).

Each step asserts what a person sees: the preset's explanation, the loss map while playing, a note instead of a
traceback, a Stop that keeps the steps, an exported report that opens with its map and an absolute link.
Screenshots of the key views go to ``$SAM_VIZ_SHOTS`` (``scripts/screenshots.py`` points it at ``assets/``).
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from browser import (
    MAP_IMAGES,
    PLAYBACK,
    SAMPLE_MAP,
    browser_page,
    map_share,
    require_chromium,
    streamlit_server,
    wait_charts,
    wait_idle,
)

from sam_viz.presets import PRESETS
from sam_viz.ui.guard import FAILED

pytestmark = pytest.mark.e2e

require_chromium()

EXCEPTION = "[data-testid=stException]"


@pytest.fixture(scope="module")
def server():
    with streamlit_server(as_readme=True) as (base, _):
        yield base


def _shot(page, name: str) -> None:
    folder = os.environ.get("SAM_VIZ_SHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))


def _no_exception(page) -> None:
    assert page.locator(EXCEPTION).count() == 0, page.locator(EXCEPTION).all_inner_texts()
    failed = page.get_by_text(FAILED)  # a page body that raised: its one-line message (ui.guard)
    assert failed.count() == 0, failed.all_inner_texts()


def _real_errors(page) -> list[str]:
    # plotly.js rejects an animation interrupted by another (Pause, Replay) with ``undefined``: harmless
    return [e for e in page.errors if e != "pageerror: undefined" and "Plotly.animate rejected" not in e]


@pytest.mark.parametrize("name", [n for n, p in PRESETS.items() if p.page == "Loss_surface"])
def test_teacher_opens_a_preset_from_home_plays_it_and_shares_the_link(server, name):
    preset = PRESETS[name]
    with browser_page(1024, 768) as page:
        page.goto(f"{server}/")
        page.get_by_role("heading", name="Presets").wait_for()
        wait_idle(page)
        page.get_by_text(preset.title).first.wait_for()
        link = page.locator(f"a[href*='preset={name}']")  # the preset card's own link (two columns of cards)
        assert link.inner_text().strip().endswith("Open in Loss surface")
        link.click()
        wait_charts(page, 1)
        wait_idle(page)
        _no_exception(page)
        assert f"preset={name}" in page.url and "task=" in page.url  # the preset's settings, not the defaults
        page.get_by_text(f"Preset: {preset.title}").wait_for()
        assert map_share(page, PLAYBACK) > 0.8
        page.evaluate(SAMPLE_MAP)
        page.locator(".js-plotly-plot .updatemenu-button").filter(has_text="Play").first.click()
        shares = []
        for _ in range(3):
            page.wait_for_timeout(300)
            shares.append(map_share(page, PLAYBACK))
        assert min(shares) > 0.8, f"the map must stay on screen while the paths replay: {shares}"
        samples = page.evaluate("() => window.samples")
        assert samples and set(samples) == {1}, "the map is in the page at every paint"
        page.locator(".js-plotly-plot .updatemenu-button").filter(has_text="Pause").first.click()
        page.wait_for_timeout(500)
        assert page.evaluate(MAP_IMAGES) == 1 and map_share(page, PLAYBACK) > 0.8, "the map stays once paused"
        _shot(page, f"teacher_{name}_playing")
        shared = page.url
        assert _real_errors(page) == []
    with browser_page(1024, 768) as fresh:  # a student opens the shared link
        fresh.goto(shared)
        wait_charts(fresh, 1)
        wait_idle(fresh)
        _no_exception(fresh)
        fresh.get_by_text(f"Preset: {preset.title}").wait_for()
        assert map_share(fresh, PLAYBACK) > 0.8


def test_student_changes_an_optimizer_trains_and_visits_every_page(server):
    with browser_page() as page:
        page.goto(f"{server}/Loss_surface?steps=30")
        wait_charts(page, 1)
        wait_idle(page)
        page.get_by_role("combobox", name="Run 2").click()
        page.keyboard.type("fsam")
        page.keyboard.press("Enter")
        wait_idle(page)
        page.get_by_text("F-SAM hyperparameters").wait_for()
        assert page.get_by_text("SAM hyperparameters", exact=True).count() == 0
        page.get_by_role("button", name="Train").click()
        page.wait_for_function("() => location.search.includes('fsam')", timeout=60_000)
        wait_charts(page, 1)
        wait_idle(page)
        _no_exception(page)
        for label in ("Perturbations", "Hessian", "Radius sensitivity", "Learn", "Home"):
            page.locator("[data-testid=stSidebar]").get_by_role("link", name=label).click()
            page.wait_for_timeout(500)
            if label in ("Perturbations", "Hessian", "Radius sensitivity"):
                wait_charts(page, 1)
            wait_idle(page)
            _no_exception(page)
            if label != "Home":
                assert "fsam" in page.url, label  # the experiment follows the student from page to page
        assert _real_errors(page) == []


@pytest.mark.parametrize("query", [
    "Loss_surface?res=5", "Hessian?steps=50&snap=100", "Hessian?snap=9999", "Loss_surface?task=rosenbrock",
    "Perturbations?task=himmelblau", "Loss_surface?runs=&task=sharp_flat", "Loss_surface?steps=abc&span=99",
    "Radius_sensitivity?sxv=abc&syv=nan,inf&steps=20", "Loss_surface?runs=sam:rho%3Dnan;nope&seeds=99",
])
def test_student_garbage_in_the_url_gives_a_note_never_an_exception(server, query):
    with browser_page() as page:
        page.goto(f"{server}/{query}")
        wait_charts(page, 1)
        wait_idle(page)
        _no_exception(page)
        notes = page.locator("[data-testid=stAlertContentWarning]").all_inner_texts() + \
            page.locator("[data-testid=stCaptionContainer]").all_inner_texts()
        assert notes, "every replaced value gets a note"
        assert _real_errors(page) == []


def test_researcher_stops_a_long_run_and_opens_every_export(server, tmp_path):
    with browser_page() as page:
        page.goto(f"{server}/Loss_surface?steps=3000&n=4000&width=128&res=21")
        stop = page.get_by_role("button", name="Stop")
        stop.wait_for(timeout=60_000)
        page.get_by_text("so far").first.wait_for(timeout=60_000)  # progress with the time taken
        _shot(page, "researcher_training")
        page.wait_for_timeout(2000)
        stop.click()
        page.get_by_text("was stopped after").first.wait_for(timeout=60_000)
        wait_charts(page, 1)
        wait_idle(page)
        _no_exception(page)
        legend = page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot')[0].data].map(t => t.name)")
        assert any("SGD" in (n or "") for n in legend) and any("SAM" in (n or "") for n in legend)  # both runs kept
        page.get_by_text("Export").last.click()
        with page.expect_download() as info:
            page.get_by_role("button", name="Runs (.npz + .json, zip)").click()
        zpath = tmp_path / "runs.zip"
        info.value.save_as(zpath)
        with zipfile.ZipFile(zpath) as zf:
            npz = [n for n in zf.namelist() if n.endswith(".npz")]
            assert len(npz) == 2
            with zf.open(npz[0]) as f, np.load(f) as data:
                assert data["batch_loss"].size > 0
        with page.expect_download() as info:
            page.get_by_role("button", name="HTML report of this view").click()
        report = tmp_path / "report.html"
        info.value.save_as(report)
        text = report.read_text()
        assert f'href="{server}/Loss_surface?' in text, "the report's link is absolute"
        page.goto(report.as_uri())
        page.wait_for_timeout(2500)
        assert map_share(page) > 0.8, "the report opens with its loss map drawn"
        _shot(page, "researcher_report")


def test_researcher_compares_three_optimizers_on_the_digits_cnn_stops_the_hessian_and_opens_the_figures(server, tmp_path):
    with browser_page() as page:
        page.goto(f"{server}/Hessian?task=digits&n=1797&model=cnn&batch=64&steps=100&runs=sgd;sam;fsam&trace=1")
        # training first (its own bar), then λ_max over training: a job with progress and a Stop
        page.get_by_text("λ_max over training").first.wait_for(timeout=240_000)
        stop = page.get_by_role("button", name="Stop")
        stop.wait_for(timeout=60_000)
        # a few snapshots of every run first (they are evaluated a snapshot of each run in turn)
        page.get_by_text(re.compile(r"\b([4-9]|\d\d+) / \d+ snapshots")).first.wait_for(timeout=120_000)
        _shot(page, "researcher_hessian_progress")
        stop.click()
        page.get_by_text("was stopped after").first.wait_for(timeout=120_000)
        _no_exception(page)
        wait_idle(page)
        # the snapshots computed before Stop are drawn, for every optimizer
        wait_charts(page, 1)
        legend = page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot')[0].data].map(t => t.name)")
        for label in ("SGD", "SAM", "F-SAM"):
            assert any(label == (n or "").split(" (")[0] for n in legend), (label, legend)
        # Train again finishes the curves; the figures export holds a PNG and a PDF of each figure
        page.get_by_role("button", name="Train", exact=True).first.click()
        # the trace (Hutch++, ~99 products a snapshot) may be estimated slow: then the page says so first, and the
        # researcher agrees to it
        done, go = page.get_by_text("Spectral density").first, page.get_by_role("button", name="Run it anyway")
        done.or_(go.first).wait_for(timeout=400_000)
        if not done.is_visible():
            _no_exception(page)
            page.get_by_text(re.compile(r"Computing tr H \(Hutch\+\+\) at .* Hessian-vector products")).first.wait_for()
            go.first.click()
            done.wait_for(timeout=400_000)
        wait_charts(page, 3)
        wait_idle(page)
        _no_exception(page)
        _shot(page, "researcher_hessian_cnn")
        page.get_by_text("Export").last.click()
        with page.expect_download(timeout=120_000) as info:
            page.get_by_role("button", name="Figures for a paper (PNG + PDF, zip)").click()
        zpath = tmp_path / "figures.zip"
        info.value.save_as(zpath)
        with zipfile.ZipFile(zpath) as zf:
            names = zf.namelist()
            pngs, pdfs = [n for n in names if n.endswith(".png")], [n for n in names if n.endswith(".pdf")]
            assert len(pngs) == len(pdfs) == 3, names  # λ_max, trace, spectrum
            for name in pngs:
                assert zf.read(name)[:8] == b"\x89PNG\r\n\x1a\n" and len(zf.read(name)) > 10_000
            for name in pdfs:
                assert zf.read(name)[:5] == b"%PDF-"
            shown = tmp_path / pngs[0]
            shown.write_bytes(zf.read(pngs[0]))
        page.goto(shown.as_uri())
        assert page.evaluate("() => document.images[0].naturalWidth") > 400


@pytest.mark.parametrize("name", ["mup2_layers", "lets_learned_radius"])
def test_researcher_opens_a_family_preset_and_sees_its_chart_and_its_measured_table(server, name):
    from sam_viz.evidence import EVIDENCE
    from sam_viz.optim import OPTIMIZERS

    preset = PRESETS[name]
    optimizer = preset.settings().runs[-1][0]
    series_titles = list(OPTIMIZERS[optimizer].series.values())
    with browser_page(1280, 900) as page:
        page.goto(f"{server}/")
        page.get_by_role("heading", name="Presets").wait_for()
        wait_idle(page)
        page.get_by_text(preset.title).first.wait_for()
        page.locator(f"a[href*='preset={name}']").click()  # the card's "Open in Perturbations" link
        wait_charts(page, 2)
        wait_idle(page)
        _no_exception(page)
        assert f"preset={name}" in page.url
        page.get_by_text(f"Preset: {preset.title}").wait_for()
        if name in EVIDENCE:  # the measured table the explanation quotes
            page.get_by_text(EVIDENCE[name].title).wait_for()
            table = page.locator("[data-testid=stTable]").first.inner_text()
            assert EVIDENCE[name].rows[0][1] in table
        # the method's own series, drawn (plotly puts chart titles in SVG text)
        titles = page.evaluate("() => Array.from(document.querySelectorAll('.js-plotly-plot .gtitle'))"
                               ".map(t => t.textContent)")
        assert any(series_titles[0] in t for t in titles), titles
        _shot(page, f"researcher_{name}")
        assert _real_errors(page) == []
