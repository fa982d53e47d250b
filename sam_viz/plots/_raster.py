"""A contour map painted as one image, for figures whose traces move.

plotly.js redraws only "animatable" traces (scatter) on each animation frame and drops every other trace's layer
from the plot while it does (``cartesian.plot`` keeps the layers of the traces it was given). A contour trace
therefore vanishes on Play; redrawing the whole figure on every frame brings it back, but a 61² map then takes
~200 ms a frame and is never on screen long enough to be painted on a loaded machine (seen in Chromium on the
Loss-surface page). A layout image is not a trace, so frames never touch it: the playback figure paints the map as
one, with the same colours, levels and lines as the contour it stands for.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np
from PIL import Image
from plotly.colors import get_colorscale, sample_colorscale, unlabel_rgb

_COLOURS = 120  # palette entries for the colour ramp; 8-bit PNG with one more for blank cells, twice for lines
LINE_RGBA = (255, 255, 255, 0.4)  # the contour's line colour, blended over the fill


def nice_levels(lo: float, hi: float, max_levels: int = 24) -> tuple[float, float, float]:
    """(start, end, size) of at most ``max_levels`` round contour levels inside [lo, hi] (1, 2, 2.5 or 5 × 10^k)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return lo, hi, 1.0
    raw = (hi - lo) / max_levels
    power = 10.0 ** math.floor(math.log10(raw))
    size = next(m * power for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * power >= raw)
    return math.ceil(lo / size) * size, math.floor(hi / size) * size, size


def _sample_axis(coords: np.ndarray, pixels: int) -> np.ndarray:
    """Fractional grid index of each pixel centre along one axis (grids need not be evenly spaced)."""
    centres = coords[0] + (np.arange(pixels) + 0.5) * (coords[-1] - coords[0]) / pixels
    return np.interp(centres, coords, np.arange(coords.size, dtype=np.float64))


def _bilinear(z: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``z`` at fractional (row, col) positions; NaN where any of the four corners is blank."""
    r0 = np.clip(np.floor(rows).astype(int), 0, z.shape[0] - 2)
    c0 = np.clip(np.floor(cols).astype(int), 0, z.shape[1] - 2)
    fr, fc = (rows - r0)[:, None], (cols - c0)[None, :]
    r0, c0 = r0[:, None], c0[None, :]
    return ((1 - fr) * (1 - fc) * z[r0, c0] + (1 - fr) * fc * z[r0, c0 + 1]
            + fr * (1 - fc) * z[r0 + 1, c0] + fr * fc * z[r0 + 1, c0 + 1])


def _palette(colorscale: str) -> list[int]:
    """Flat RGB palette: the ramp, the ramp under a contour line, then one entry for blank pixels."""
    ramp = np.array([unlabel_rgb(c) for c in sample_colorscale(get_colorscale(colorscale),
                                                               np.linspace(0.0, 1.0, _COLOURS))], dtype=np.float64)
    *white, a = LINE_RGBA
    lined = (1 - a) * ramp + a * np.asarray(white, dtype=np.float64)
    flat = np.concatenate([ramp, lined, np.zeros((1, 3))]).round().astype(int)
    return flat.ravel().tolist()


def contour_image(alpha: np.ndarray, beta: np.ndarray, z: np.ndarray, *, colorscale: str, zmin: float,
                  zmax: float, levels: tuple[float, float, float], pixels: int = 720) -> dict[str, Any]:
    """The contour map of ``z`` (rows along ``beta``, columns along ``alpha``) as a plotly layout image.

    Colours follow ``colorscale`` over [zmin, zmax] at bilinearly interpolated values (what a contour with
    ``coloring="heatmap"`` shows); a level of ``levels`` (start, end, size) is a line of ``LINE_RGBA`` wherever
    neighbouring pixels lie on either side of it; blank (NaN) cells are transparent. The image spans the grid's
    corner points, as the contour trace does, and sits below the traces.

    Returns:
        A ``layout.images`` entry (8-bit palette PNG as a data URI; about 50 kB at 720² pixels, finer than the plot
        area, so the browser smooths the lines as it scales the image down).
    """
    alpha, beta, z = (np.asarray(v, dtype=np.float64) for v in (alpha, beta, z))
    rows = _sample_axis(beta, pixels)[::-1]  # image row 0 is the top: the largest β
    values = _bilinear(z, rows, _sample_axis(alpha, pixels))
    blank = ~np.isfinite(values)
    span = zmax - zmin if zmax > zmin else 1.0
    index = np.clip(np.nan_to_num((values - zmin) / span * (_COLOURS - 1)), 0, _COLOURS - 1).round().astype(int)
    start, end, size = levels
    band = np.floor((np.nan_to_num(values, nan=start) - start) / size)
    band = np.clip(band, -1, round((end - start) / size))
    line = np.zeros_like(blank)
    line[:, 1:] |= band[:, 1:] != band[:, :-1]
    line[1:, :] |= band[1:, :] != band[:-1, :]
    index = np.where(line, index + _COLOURS, index)
    index[blank] = 2 * _COLOURS
    image = Image.fromarray(index.astype(np.uint8), mode="P")
    image.putpalette(_palette(colorscale))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True, transparency=2 * _COLOURS)
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return dict(source=uri, xref="x", yref="y", x=float(alpha[0]), y=float(beta[-1]),
                sizex=float(alpha[-1] - alpha[0]), sizey=float(beta[-1] - beta[0]), xanchor="left", yanchor="top",
                sizing="stretch", layer="below", name="loss map")
