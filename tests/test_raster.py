"""The contour map painted as one image (plots/_raster.py): colours, levels, blanks and orientation."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image
from plotly.colors import get_colorscale, sample_colorscale, unlabel_rgb

from sam_viz.plots._raster import LINE_RGBA, contour_image, nice_levels


def _decode(entry) -> np.ndarray:
    head, data = entry["source"].split(",", 1)
    assert head == "data:image/png;base64"
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGBA")).astype(int)


def _colour(scale: str, at: float) -> np.ndarray:
    return np.array(unlabel_rgb(sample_colorscale(get_colorscale(scale), [at])[0]))


@pytest.mark.parametrize("lo, hi", [(0.0, 1.0), (0.1, 4.9), (-3.2, 0.7), (1e-4, 3e-4), (12.0, 950.0)])
def test_nice_levels_are_round_inside_the_range_and_at_most_24(lo, hi):
    start, end, size = nice_levels(lo, hi)
    count = round((end - start) / size) + 1
    assert lo <= start <= end <= hi and 1 <= count <= 25
    mantissa = size / 10 ** np.floor(np.log10(size))
    assert any(np.isclose(mantissa, m) for m in (1, 2, 2.5, 5))
    assert (hi - lo) / size > 24 / 2.5 - 1  # as fine as a round step allows


def test_image_colours_follow_the_colour_scale_top_row_is_the_largest_beta():
    alpha, beta = np.linspace(0, 1, 11), np.linspace(-1, 1, 21)
    z = np.repeat(beta[:, None], alpha.size, axis=1)  # loss grows with β only
    rgba = _decode(contour_image(alpha, beta, z, colorscale="Viridis", zmin=-1, zmax=1, levels=(-1, 1, 10.0),
                                 pixels=64))
    assert rgba.shape == (64, 64, 4) and (rgba[..., 3] == 255).all()
    np.testing.assert_allclose(rgba[0, 32, :3], _colour("Viridis", 1.0), atol=12)  # top: β = 1, the maximum
    np.testing.assert_allclose(rgba[-1, 32, :3], _colour("Viridis", 0.0), atol=12)
    np.testing.assert_allclose(rgba[32, 32, :3], _colour("Viridis", 0.5), atol=12)
    assert (np.ptp(rgba[:, :, :3], axis=1) == 0).all()  # constant along α


def test_level_lines_are_drawn_where_the_value_crosses_a_level():
    alpha, beta = np.linspace(0, 1, 5), np.linspace(0, 1, 5)
    z = np.repeat(alpha[None, :], beta.size, axis=0)  # loss = α: the level 0.5 is the vertical line α = 0.5
    rgba = _decode(contour_image(alpha, beta, z, colorscale="Greys", zmin=0, zmax=1, levels=(0.5, 0.5, 1.0),
                                 pixels=100))
    plain = _decode(contour_image(alpha, beta, z, colorscale="Greys", zmin=0, zmax=1, levels=(2.0, 2.0, 1.0),
                                  pixels=100))
    changed = np.flatnonzero((rgba != plain).any(axis=(0, 2)))
    np.testing.assert_array_equal(changed, [50])  # one pixel column, at α = 0.5
    *white, a = LINE_RGBA
    np.testing.assert_allclose(rgba[:, 50, :3], (1 - a) * plain[:, 50, :3] + a * np.array(white), atol=2)


def test_blank_cells_are_transparent():
    alpha, beta = np.linspace(0, 1, 3), np.linspace(0, 1, 3)
    z = np.ones((3, 3))
    z[0, 0] = np.nan  # bottom-left cell
    rgba = _decode(contour_image(alpha, beta, z, colorscale="Viridis", zmin=0, zmax=2, levels=(0.5, 1.5, 0.5),
                                 pixels=40))
    assert (rgba[-20:, :20, 3] == 0).all() and (rgba[:20, 20:, 3] == 255).all()


def test_uneven_grids_are_sampled_in_coordinates_not_in_index():
    alpha = np.array([0.0, 0.1, 1.0])  # the middle grid point sits at 10% of the width
    beta = np.array([0.0, 1.0])
    z = np.array([[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    rgba = _decode(contour_image(alpha, beta, z, colorscale="Viridis", zmin=0, zmax=1, levels=(5.0, 5.0, 1.0),
                                 pixels=100))
    top = _colour("Viridis", 1.0)
    assert np.abs(rgba[50, 20:, :3] - top).max() <= 12  # past α = 0.1 the value is 1
    assert np.abs(rgba[50, 2, :3] - top).max() > 30
