"""Your own data in a real browser: upload a CSV in the sidebar, train on it, open every view on its link."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from browser import browser_page, require_chromium, streamlit_server, wait_charts, wait_idle

from sam_viz.ui.guard import FAILED

pytestmark = pytest.mark.e2e

require_chromium()

EXCEPTION = "[data-testid=stException]"


def _two_moons_csv(path: Path, rows: int = 160) -> Path:
    rng = np.random.default_rng(0)
    t = rng.uniform(0, np.pi, rows)
    k = np.arange(rows) % 2
    x = np.c_[np.cos(t) + k, np.sin(t) * (1 - 2 * k) + 0.5 * k] + rng.normal(0, 0.1, (rows, 2))
    path.write_text("height,weight,side\n" + "".join(f"{a:.4f},{b:.4f},{'top' if c == 0 else 'bottom'}\n"
                                                      for (a, b), c in zip(x, k)))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    old = os.environ.get("SAM_VIZ_DATA_DIR")
    os.environ["SAM_VIZ_DATA_DIR"] = str(store)  # the server's own store, empty
    try:
        with streamlit_server(as_readme=True) as (base, _):
            yield base, store
    finally:
        if old is None:
            os.environ.pop("SAM_VIZ_DATA_DIR", None)
        else:
            os.environ["SAM_VIZ_DATA_DIR"] = old


def _no_exception(page) -> None:
    assert page.locator(EXCEPTION).count() == 0, page.locator(EXCEPTION).all_inner_texts()
    assert page.get_by_text(FAILED).count() == 0


def _shot(page, name: str) -> None:
    page.screenshot(path=f"/tmp/{name}.png")
    folder = os.environ.get("SAM_VIZ_SHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))


def test_upload_a_csv_train_and_open_every_view(server, tmp_path):
    base, store = server
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"PK\x03\x04" + bytes(300))
    good = _two_moons_csv(tmp_path / "moons.csv")
    with browser_page(1400, 1100) as page:
        page.goto(f"{base}/Loss_surface?steps=60&res=21")
        wait_idle(page)
        wait_charts(page, 1)
        page.get_by_text("Your own data (CSV)").click()
        uploader = page.locator("[data-testid=stFileUploader] input[type=file]")
        uploader.set_input_files(str(bad))  # an Excel file renamed .csv: the engine's message, nothing changes
        page.get_by_text("Excel workbook").first.wait_for(timeout=60_000)
        assert "task=csv" not in page.url and list(store.glob("*.npz")) == []
        uploader.set_input_files(str(good))
        page.get_by_text("Label column").wait_for(timeout=60_000)
        page.get_by_role("button", name="Train on this table").click()
        page.wait_for_url(re.compile(r"task=csv.*data=[0-9a-f]{16}|data=[0-9a-f]{16}.*task=csv"), timeout=120_000)
        wait_idle(page)
        wait_charts(page, 2)
        _no_exception(page)
        assert len(list(store.glob("*.npz"))) == 1
        query = page.url.split("?", 1)[1]
        page.wait_for_timeout(1500)
        _shot(page, "own_data")
        for name in ("Perturbations", "Hessian"):
            page.goto(f"{base}/{name}?{query}")
            wait_idle(page)
            wait_charts(page, 1)
            _no_exception(page)
            assert page.get_by_text("this server does not hold").count() == 0
            _shot(page, f"own_data_{name.lower()}")
        assert not [e for e in page.errors if e != "pageerror: undefined"], page.errors
