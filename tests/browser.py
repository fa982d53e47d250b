"""A real Streamlit server and Debian's Chromium driven by Playwright: shared by the e2e tests, the screenshot
script and the app benchmark."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", "--no-first-run", "--disable-dev-shm-usage"]
CHART = "[data-testid=stPlotlyChart] .main-svg"
# On a deep link (/Page) Streamlit's frontend first probes /Page/_stcore/{health,host-config}, gets 404 and falls
# back to the root: its own start-up, not an error of the app.
_PROBE = re.compile(r"/[^/]+/_stcore/(health|host-config)$")


def chromium_available() -> bool:
    return Path(CHROMIUM).exists() or shutil.which("chromium") is not None


def require_chromium() -> None:
    """At a browser-test module's top: skip it where Debian's chromium is missing, except in CI, which must run it."""
    if chromium_available():
        return
    if os.environ.get("CI"):
        raise RuntimeError("CI must run the browser tests: /usr/bin/chromium is missing (apt-get install chromium)")
    pytest.skip("Debian chromium is not installed (apt-get install chromium)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(timeout: float = 60.0, *, as_readme: bool = False) -> Iterator[tuple[str, float]]:
    """Start ``streamlit run app.py`` on a free loopback port; yield (base URL, seconds until healthy).

    ``as_readme`` runs the README's command verbatim (the ``streamlit`` script, the shipped config), the port alone
    set through Streamlit's environment variable."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "STREAMLIT_SERVER_PORT": str(port)}
    env.pop("SAM_VIZ_PROCESSES", None)  # the app's default (worker processes), whatever the tests' process uses
    started = time.perf_counter()
    command = ([shutil.which("streamlit") or "streamlit", "run", "app.py"] if as_readme else
               [sys.executable, "-m", "streamlit", "run", "app.py", f"--server.port={port}", "--server.address=127.0.0.1",
                "--server.headless=true", "--browser.gatherUsageStats=false", "--server.fileWatcherType=none"])
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=1) as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.perf_counter() - started > timeout:
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                raise RuntimeError(f"streamlit did not become healthy:\n{out[-3000:]}")
            time.sleep(0.1)
        # keep reading the server's log: a full pipe (64 KiB) would block the server's next log line
        threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()
        yield base, time.perf_counter() - started
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _drain(stream) -> None:
    for _ in iter(stream.readline, b""):
        pass


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 1100):
    """A fresh Chromium page that records page errors and console errors."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
        page = context.new_page()
        page.errors = []  # type: ignore[attr-defined]
        page.on("pageerror", lambda e: page.errors.append(f"pageerror: {e}"))
        page.on("requestfailed", lambda r: _request_failed(page, r))
        page.on("response", lambda r: page.errors.append(f"HTTP {r.status}: {r.url}")
                if r.status >= 400 and not _PROBE.search(r.url) else None)
        # console errors, except the browser's echo of an HTTP status (the response handler judges those)
        page.on("console", lambda m: page.errors.append(f"console: {m.text}")
                if m.type == "error" and not m.text.startswith("Failed to load resource: the server responded") else None)
        try:
            yield page
        finally:
            browser.close()


def _request_failed(page, request) -> None:
    """Any request off this machine is an error (the app must work offline); on loopback, a request the browser
    cancelled itself (a page navigated away while a download's media loaded) is not."""
    local = request.url.startswith(("http://127.0.0.1", "http://localhost"))
    if not local or "ERR_ABORTED" not in (request.failure or ""):
        page.errors.append(f"request failed ({request.failure}): {request.url}")


def wait_idle(page, timeout: float = 180_000) -> None:
    """Wait until the app's script run has finished (no running indicator)."""
    page.wait_for_timeout(200)
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidgetRunningIcon]')", timeout=timeout)


def wait_charts(page, count: int = 1, timeout: float = 180_000) -> None:
    page.wait_for_function(f"() => document.querySelectorAll('{CHART}').length >= {count}", timeout=timeout)


# The playback chart paints its loss map as a layout image under the traces (plots/_raster.py): frames cannot
# erase it, so it must be in the page at every paint while the paths replay.
PLAYBACK = ".js-plotly-plot:has(.updatemenu-button)"
MAP_IMAGES = f"() => document.querySelectorAll('{PLAYBACK} .imagelayer image').length"
# Pushed just before each paint, so a map missing for one frame shows up (a count taken from Python can land
# between two steps of a redraw that nobody sees).
SAMPLE_MAP = ("() => { window.samples = []; const f = () => { window.samples.push((" + MAP_IMAGES + ")());"
              " requestAnimationFrame(f); }; requestAnimationFrame(f); }")


def map_share(page, selector: str = ".js-plotly-plot") -> float:
    """Share of the first ``selector`` chart's plot area in strong colour, from a screenshot: what a viewer sees.

    A colour map (viridis and its kin) has a chroma (max − min channel) above 40 everywhere; a white, grey or dark
    blank plot area has none, and gridlines and paths cover only a thin share.
    """
    import io

    import numpy as np
    from PIL import Image

    area = page.locator(selector).first.locator(".nsewdrag").first  # the plot area's drag layer (scrolled to)
    pixels = np.asarray(Image.open(io.BytesIO(area.screenshot())).convert("RGB")).astype(int)
    return float(((pixels.max(axis=-1) - pixels.min(axis=-1)) > 40).mean())
