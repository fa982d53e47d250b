"""App responsiveness in a real browser (Debian chromium + Playwright against ``streamlit run``).

Run: ``python benchmarks/bench_app.py`` (needs what ``bash scripts/test.sh`` installs). Measures, over a few
fresh servers: server start → healthy; healthy → Home drawn (the first page load, which imports the engine);
then the default Loss-surface view fully drawn (the first visit trains the default experiment), and, on another
fresh server, a link straight to that view (imports, training and drawing in one go); a view-only change (log colour scale) → redrawn, with the server's script time
timed in the browser and, for the server's script time alone, in AppTest; Train with more steps → updated figures.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from browser import browser_page, streamlit_server, wait_charts, wait_idle  # noqa: E402

REPEATS = 3


def _measure() -> dict[str, float]:
    with streamlit_server() as (base, healthy_s), browser_page() as page:
        # the app's landing page (Home: text, device, preset gallery), first visit on a fresh server
        start = time.perf_counter()
        page.goto(base)
        page.get_by_role("heading", name="Presets").wait_for(timeout=120_000)
        wait_idle(page)
        home_s = time.perf_counter() - start

        start = time.perf_counter()
        page.goto(f"{base}/Loss_surface")
        wait_charts(page, 2)
        wait_idle(page)
        drawn_s = time.perf_counter() - start

        # view-only change: the log-scale toggle (no training; the surface comes from the cache)
        toggle = page.get_by_text("Log colour scale")
        start = time.perf_counter()
        toggle.click()
        page.wait_for_function("() => location.search.includes('log=true')", timeout=60_000)
        wait_idle(page)
        view_s = time.perf_counter() - start

        # Train with 10 more steps (keyboard), until the figures show them
        slider = page.locator("[data-testid=stSlider]").filter(has_text="Steps").get_by_role("slider")
        slider.focus()
        for _ in range(10):
            slider.press("ArrowRight")
        start = time.perf_counter()
        page.get_by_role("button", name="Train").click()
        # done when the playback map's last frame is step 160 (the new runs)
        page.wait_for_function("() => { const p = document.querySelector('.js-plotly-plot');"
                               " return p && p._fullLayout && p._fullLayout.sliders &&"
                               " p._fullLayout.sliders[0].steps.length > 0 &&"
                               " p._fullLayout.sliders[0].steps.at(-1).label === '160'; }", timeout=120_000)
        train_s = time.perf_counter() - start
    return {"healthy_s": healthy_s, "home_first_visit_s": home_s, "default_view_s": drawn_s, "view_change_s": view_s, "train_to_figures_s": train_s}


def _deep_link_cold() -> float:
    """A shared link straight to the Loss-surface view on a fresh server (nothing imported or trained yet)."""
    with streamlit_server() as (base, _), browser_page() as page:
        start = time.perf_counter()
        page.goto(f"{base}/Loss_surface")
        wait_charts(page, 2)
        wait_idle(page)
        return time.perf_counter() - start


def _server_ms(repeats: int = 5) -> float:
    """Script time of a view-only change on the server (AppTest runs the page script in-process, cache warm)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
    at.switch_page("pages/1_Loss_surface.py").run()
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        at.toggle(key="v_log").set_value(i % 2 == 0).run()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


_COLD = """
import time
from streamlit.testing.v1 import AppTest
start = time.perf_counter()
at = AppTest.from_file("app.py", default_timeout=300).run()
home = time.perf_counter()
at.switch_page("pages/1_Loss_surface.py").run()
print(home - start, time.perf_counter() - home)
"""


def _server_cold_s() -> tuple[float, float]:
    """Server-side share of the first visit, in a fresh process: Home (imports torch and the app) and then the
    Loss-surface page (first training, surface, figures), as AppTest runs them without a browser."""
    out = subprocess.run([sys.executable, "-c", _COLD], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    home, page = (float(v) for v in out.split()[-2:])
    return home, page


def main() -> None:
    rows = [{**_measure(), "deep_link_cold_s": _deep_link_cold()} for _ in range(REPEATS)]
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    med["view_change_server_ms"] = _server_ms()
    med["cold_server_home_s"], med["cold_server_surface_page_s"] = _server_cold_s()
    print(f"# bench_app: {REPEATS} fresh servers, medians (chromium, 1400x1100)")
    for k, v in med.items():
        print(f"{k:<26}{v:>10.3f}")
    print(json.dumps({"median": med, "runs": rows}))


if __name__ == "__main__":
    main()
