"""Regenerate the README's screenshots in assets/: one per page, taken in Debian's Chromium from a real server.

Run: ``python scripts/screenshots.py [NAME ...]`` (after ``bash scripts/test.sh`` has installed chromium and
playwright); names (``step_anatomy``, ``loss_surface``, ...) retake only those.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from browser import browser_page, streamlit_server, wait_charts, wait_idle  # noqa: E402

SHOTS = (
    ("home", "", 0),
    ("loss_surface", "Loss_surface?preset=sharp_vs_flat&task=sharp_flat&n=64&noise=0&steps=600&runs=sgd:lr%3D0.015,momentum%3D0;sam:lr%3D0.015,momentum%3D0,rho%3D0.15", 1),
    ("perturbations", "Perturbations?preset=fsam_removes_full_gradient&n=512&batch=32&steps=200&runs=sam:rho%3D0.1;fsam:rho%3D0.1,lmbda%3D0.9", 3),
    ("hessian", "Hessian?preset=sam_lower_lambda_max&steps=300&width=32&runs=sgd;sam:rho%3D0.1", 2),
    ("radius_sensitivity", "Radius_sensitivity?preset=lightsam_parameter_agnostic&steps=100&runs=sam;lightsam1;lightsam2&sxv=0.01,0.1,1,3&syv=0.01,0.1,1,3", 1),
    ("learn", "Learn", 0),
    ("step_anatomy", "Step_anatomy?task=sharp_flat&steps=20", 1),
)
# the SAM family's presets, by their own settings: (file name, preset, charts to wait for)
PRESET_SHOTS = (("mup2_layers", "mup2_layers", 3), ("mup2_width_transfer", "mup2_width_transfer", 1))


def _preset_path(name: str) -> str:
    from urllib.parse import urlencode

    from sam_viz.presets import PRESETS

    preset = PRESETS[name]
    return f"{preset.page}?{urlencode({**preset.query, 'preset': name})}"


def main() -> None:
    out = ROOT / "assets"
    out.mkdir(exist_ok=True)
    with streamlit_server() as (base, _), browser_page(width=1400, height=1700) as page:
        shots = [*SHOTS, *((file, _preset_path(preset), charts) for file, preset, charts in PRESET_SHOTS)]
        wanted = set(sys.argv[1:])
        unknown = wanted - {name for name, _, _ in shots}
        if unknown:
            raise SystemExit(f"unknown screenshots: {sorted(unknown)}")
        shots = [shot for shot in shots if not wanted or shot[0] in wanted]
        for name, path, charts in shots:
            page.goto(f"{base}/{path}")
            if charts:
                wait_charts(page, charts)
            wait_idle(page)
            page.wait_for_timeout(1500)  # let Plotly finish its transitions
            page.screenshot(path=str(out / f"{name}.png"))
            print(f"assets/{name}.png")


if __name__ == "__main__":
    main()
