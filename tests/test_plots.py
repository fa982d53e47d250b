"""Figure builders: assert on the figures' data (trace types, shapes, values), axis titles, frames and errors."""

from __future__ import annotations

import base64
import dataclasses
import inspect
import math
import subprocess
import sys

import numpy as np
import plotly.graph_objects as go
import pytest

from sam_viz import plots as P
from sam_viz.config import Config
from sam_viz.hessian import Density, EigenResult, TraceResult
from sam_viz.landscape import Plane, Projection, Surface, axes_plane
from sam_viz.plots._common import HEATMAP_TEXT_SIZE
from sam_viz.train import run


def arr(value):
    """A trace array as numpy, decoding Plotly ≥ 6's base64 typed arrays ({"dtype", "bdata", "shape"})."""
    if isinstance(value, dict) and "bdata" in value:
        out = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        return out.reshape([int(s) for s in str(shape).split(",")]) if shape else out
    return np.asarray(value)


def scale(name):
    """Plotly's expansion of a named colour scale, to compare with what a figure holds."""
    return go.Figure(layout=dict(coloraxis=dict(colorscale=name))).layout.coloraxis.colorscale


def title(ax):
    return ax.title.text


# ------------------------------------------------------------------------------------------------ fixtures


def bowl_surface(plane=None, a_n=21, b_n=17):
    """A shifted quadratic bowl on the coordinate plane: minimum 0.1 at (0.2, 0)."""
    alpha, beta = np.linspace(-1, 1, a_n), np.linspace(-1, 1, b_n)
    A, B = np.meshgrid(alpha, beta)
    loss = (A - 0.2) ** 2 + 3 * B**2 + 0.1
    return Surface(alpha, beta, loss, None, plane or axes_plane(2), "analytic", 0.0, 0)


def trace(label="SAM", n=6, probe=True, shift=0.0):
    alpha = np.linspace(0.9, 0.2, n) + shift
    beta = np.linspace(0.8, 0.0, n)
    kw = {}
    if probe:
        kw = dict(probe_alpha=alpha + 0.05, probe_beta=beta + 0.05)
    return P.TrajectoryTrace(label, alpha, beta, np.arange(n) * 10, loss=np.linspace(2, 0.1, n),
                             plane_loss=np.linspace(1.9, 0.1, n), off_plane=np.linspace(0.3, 0.0, n),
                             eps_norm=np.full(n, 0.05), **kw)


@pytest.fixture(scope="module")
def runs():
    """A tiny SAM run and a tiny SGD run (one-pass: no cos(e, ∇L)), a few seconds on the CPU."""
    base = Config(steps=10, n_samples=64, width=8, device="cpu", snapshot_every=1)
    return run(base), run(base.with_optimizer("sgd"))


@pytest.fixture(scope="module")
def diverged(runs):
    """The SGD run rewritten as if it had diverged at step 7 (loss NaN from there)."""
    r = runs[1]
    loss = r.test_acc.copy()
    loss[7:] = np.nan
    return dataclasses.replace(r, test_acc=loss, diverged=True, diverged_step=7)


# ---------------------------------------------------------------------------------------------- hygiene


def test_plots_imports_neither_torch_nor_streamlit():
    code = ("import sam_viz.plots, sys; "
            "assert 'torch' not in sys.modules and 'streamlit' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60)


def test_every_builder_has_a_filled_google_docstring():
    builders = [P.surface_figure, P.playback_figure, P.perturbation_figure, P.series_figure,
                P.fsam_decomposition_figure, P.curvature_figure, P.spectrum_figure, P.sweep_heatmaps,
                P.decision_boundary_figure]
    for fn in builders:
        doc = inspect.getdoc(fn)
        assert "Args:" in doc and "Returns:" in doc and "Raises:" in doc, fn.__name__
        assert "{" not in doc.split(">>>")[0], f"unfilled shared text in {fn.__name__}"
        for name in inspect.signature(fn).parameters:
            assert f"{name}:" in doc or f"{name}," in doc or f", {name}" in doc, (fn.__name__, name)
    assert inspect.getdoc(P.figure_to_csv_frames) and inspect.getdoc(P.describe)


def test_palette_and_styles_are_distinct_and_scales_checked():
    assert len(set(P.PALETTE)) == len(P.PALETTE)
    looks = {(s.color, s.dash, s.symbol) for s in map(P.style, range(24))}
    assert len(looks) == 24  # colour is never the only cue
    with pytest.raises(ValueError, match="colorscale"):
        P.surface_figure(bowl_surface(), colorscale="Jet")
    with pytest.raises(ValueError, match="colorscale"):
        P.sweep_heatmaps([("a", np.ones((1, 2)), None)], x_name="rho", y_name="lr", x_values=[1, 2],
                         y_values=[1], metric="m", colorscale="RdYlGn")
    P.surface_figure(bowl_surface(), colorscale="cividis_r")


# ------------------------------------------------------------------------------------------------ surface


def test_surface_contour_data_axes_and_hover():
    surface = bowl_surface()
    sam, sgd = trace("SAM"), trace("SGD", probe=False, shift=-1.0)
    fig = P.surface_figure(surface, trajectories=[sam, sgd])
    types = [t.type for t in fig.data]
    assert types == ["contour", "scatter", "scatter", "scatter", "scatter"]  # map, best cell, SAM path+probe, SGD
    contour = fig.data[0]
    np.testing.assert_array_equal(contour.z, surface.loss)
    np.testing.assert_array_equal(contour.x, surface.alpha)
    np.testing.assert_array_equal(contour.y, surface.beta)
    assert contour.colorscale == scale("Viridis")
    best = fig.data[1]
    assert (best.x[0], best.y[0]) == (pytest.approx(0.2), pytest.approx(0.0))
    path = fig.data[2]
    np.testing.assert_array_equal(path.x, sam.alpha)
    np.testing.assert_array_equal(path.y, sam.beta)
    custom = np.asarray(path.customdata)
    np.testing.assert_array_equal(custom[:, 0], sam.steps)
    np.testing.assert_array_equal(custom[:, 1:], np.column_stack([sam.loss, sam.plane_loss, sam.off_plane]))
    for word in ("step", "true loss", "plane loss", "off-plane distance"):
        assert word in path.hovertemplate
    np.testing.assert_array_equal(fig.data[3].x, sam.probe_alpha)
    assert fig.data[2].line.color != fig.data[4].line.color and fig.data[2].line.dash != fig.data[4].line.dash
    assert "θ₁" in title(fig.layout.xaxis) and "θ₂" in title(fig.layout.yaxis)
    assert fig.layout.xaxis.scaleanchor == "y" and fig.layout.xaxis.scaleratio == 1  # "axes" plane: equal aspect
    assert fig.layout.uirevision
    # axes span the grid and the SGD path that leaves it (nothing cut off)
    assert fig.layout.xaxis.range[0] == pytest.approx(min(surface.alpha[0], sgd.alpha.min()))
    # Plotly ≥ 6 serialises arrays as base64 typed arrays: the decoded payload is still the input
    payload = fig.to_plotly_json()["data"][0]
    np.testing.assert_array_equal(arr(payload["z"]), surface.loss)


def test_surface_log_scale_and_pca_titles():
    plane = Plane(np.zeros(3), np.array([1.0, 0, 0]), np.array([0, 2.0, 0]), "pca", explained_variance=(0.7, 0.2))
    surface = bowl_surface(plane)
    fig = P.surface_figure(surface, log_scale=True)
    lo, hi = surface.loss.min(), surface.loss.max()
    delta = (hi - lo) * 1e-4
    np.testing.assert_allclose(fig.data[0].z, np.log10(surface.loss - lo + delta))
    assert fig.data[0].z.min() == pytest.approx(math.log10(delta))
    np.testing.assert_array_equal(np.asarray(fig.data[0].customdata)[:, :, 0], surface.loss)  # raw loss on hover
    assert "log" in fig.data[0].colorbar.title.text
    assert "70.0% of variance" in title(fig.layout.xaxis) and "20.0% of variance" in title(fig.layout.yaxis)
    assert "‖d₂‖ = 2" in title(fig.layout.yaxis)  # d2 is not a unit vector: say how long it is
    assert fig.layout.xaxis.scaleanchor is None


def test_surface3d_paths_ride_the_plane_loss():
    surface = bowl_surface()
    sam = trace("SAM")
    no_plane_loss = P.TrajectoryTrace("SGD", [0.2, 0.5], [0.0, 0.5], [0, 10])
    fig = P.surface_figure(surface, trajectories=[sam, no_plane_loss], kind="surface3d")
    assert [t.type for t in fig.data] == ["surface", "scatter3d", "scatter3d", "scatter3d"]
    np.testing.assert_array_equal(fig.data[0].z, surface.loss)
    lift = 0.01 * (surface.loss.max() - surface.loss.min())
    np.testing.assert_allclose(fig.data[1].z, sam.plane_loss + lift)
    # unknown plane loss: interpolated from the grid ((0.2, 0) is the minimum 0.1; (0.5, 0.5) is 0.09 + 0.75 + 0.1)
    np.testing.assert_allclose(fig.data[3].z, np.array([0.1, 0.94]) + lift, atol=0.02)
    scene = fig.layout.scene
    assert "θ₁" in title(scene.xaxis) and title(scene.zaxis) == "loss L(θ)"
    assert fig.layout.uirevision  # keeps the camera across reruns


def test_surface_rejects_bad_input():
    surface = bowl_surface()
    with pytest.raises(ValueError, match="shape"):
        P.surface_figure(Surface(surface.alpha, surface.beta[:-1], surface.loss, None, surface.plane, "x", 0, 0))
    with pytest.raises(ValueError, match="kind"):
        P.surface_figure(surface, kind="wireframe")
    with pytest.raises(ValueError, match="finite"):
        P.surface_figure(Surface(surface.alpha, surface.beta, np.full_like(surface.loss, np.nan), None,
                                 surface.plane, "x", 0, 0))
    with pytest.raises(ValueError, match="accuracy"):
        P.surface_figure(surface, quantity="accuracy")
    with pytest.raises(ValueError, match="TrajectoryTrace"):
        P.surface_figure(surface, trajectories=[np.zeros((3, 2))])


def test_trajectory_trace_validates_and_converts():
    with pytest.raises(ValueError, match="lengths differ"):
        P.TrajectoryTrace("x", [0, 1, 2], [0, 1], [0, 1, 2])
    with pytest.raises(ValueError, match="lengths differ"):
        P.TrajectoryTrace("x", [0, 1], [0, 1], [0, 1], plane_loss=[1, 2, 3])
    with pytest.raises(ValueError, match="both"):
        P.TrajectoryTrace("x", [0, 1], [0, 1], [0, 1], probe_alpha=[0, 1])
    with pytest.raises(ValueError, match="non-decreasing"):
        P.TrajectoryTrace("x", [0, 1], [0, 1], [5, 1])
    with pytest.raises(ValueError, match="empty"):
        P.TrajectoryTrace("x", [], [], [])
    t = P.TrajectoryTrace("x", [0, 1], [0, 1], [0.0, 10.0])
    assert t.steps.dtype == np.int64 and np.isnan(t.loss).all() and not t.has_probe
    proj = Projection(np.array([0.0, 1]), np.array([1.0, 2]), np.array([0.1, 0.2]), np.array([3.0, 4]),
                      np.array([5.0, 6]))
    t = P.TrajectoryTrace.from_projection("p", proj, [0, 10], probe=proj)
    np.testing.assert_array_equal(t.off_plane, proj.off_plane)
    np.testing.assert_array_equal(t.loss, proj.true_loss)
    assert t.has_probe


def test_end_to_end_with_the_engine(runs):
    """Real runs → PCA plane → surface and projections → trajectories → figures (the app's path)."""
    from sam_viz import landscape as L
    from sam_viz.train import setup

    s = setup(runs[0].config)
    plane = L.pca_plane([r.weights for r in runs])
    surface = L.surface(s.model, s.loss, (s.x_train, s.y_train), plane, span=1.5, resolution=9, evaluator="loop")
    traces = []
    for r in runs:
        proj = L.project(plane, r.weights, s.model, s.loss, (s.x_train, s.y_train))
        probe = L.project(plane, r.weights[:-1] + r.perturbations[:-1])
        traces.append(P.TrajectoryTrace.from_run(r, proj, probe=probe))
    sam = traces[0]
    assert sam.label.startswith("SAM") and sam.n == runs[0].snapshot_step.size
    assert np.isnan(sam.probe_alpha[-1]) and np.isfinite(sam.probe_alpha[:-1]).all()
    np.testing.assert_array_equal(sam.eps_norm[:-1], runs[0].eps_norm[runs[0].snapshot_step[:-1]])
    fig = P.surface_figure(surface, trajectories=traces)
    np.testing.assert_array_equal(fig.data[0].z, surface.loss)
    assert "of variance" in title(fig.layout.xaxis)
    custom = np.asarray(fig.data[2].customdata)
    assert np.isfinite(custom[:, 1:]).all()  # true loss, plane loss and the gap are all known here
    play = P.playback_figure(surface, traces)
    assert len(play.frames) == runs[0].snapshot_step.size
    assert len(P.perturbation_figure(surface, traces).layout.annotations) > 0


# ----------------------------------------------------------------------------------------------- playback


def test_playback_frames_grow_one_point_per_step():
    surface = bowl_surface()
    sam, sgd = trace("SAM", n=6), trace("SGD", n=6, probe=False, shift=-1.0)
    fig = P.playback_figure(surface, [sam, sgd], duration_ms=50)
    assert len(fig.frames) == 6
    assert [f.name for f in fig.frames] == [str(s) for s in sam.steps]
    # moving traces: SAM path, head, probe segment; SGD path, head
    moving = list(fig.frames[0].traces)
    assert len(moving) == 5 and len(fig.frames[0].data) == 5
    for k, frame in enumerate(fig.frames):
        assert list(frame.traces) == moving
        sam_path, sam_head, sam_probe, sgd_path, sgd_head = frame.data
        assert len(sam_path.x) == k + 1 and len(sgd_path.x) == k + 1
        np.testing.assert_array_equal(sam_path.x, sam.alpha[: k + 1])
        np.testing.assert_array_equal(sgd_path.y, sgd.beta[: k + 1])
        assert sam_head.x[0] == sam.alpha[k]
        assert list(sam_probe.x) == [sam.alpha[k], sam.probe_alpha[k]]
    # the surface is static: frames never resend it
    assert 0 not in moving and fig.data[0].type == "contour"
    # faint whole paths stay underneath (static view, hover, CSV)
    assert any(t.opacity == 0.35 and len(t.x) == 6 for t in fig.data)
    play, pause, replay = fig.layout.updatemenus[0].buttons
    assert play.method == "animate" and play.args[1]["frame"]["duration"] == 50
    assert play.args[1]["frame"]["redraw"] is False  # the map is an image that frames leave alone
    assert list(pause.args[0]) == [None]
    assert play.args[1]["fromcurrent"] is True and replay.args[1]["fromcurrent"] is False
    steps = fig.layout.sliders[0].steps
    assert [s.args[0][0] for s in steps] == [f.name for f in fig.frames]
    assert fig.layout.uirevision


def test_playback_stride_and_max_frames():
    surface = bowl_surface()
    long = P.TrajectoryTrace("L", np.linspace(-0.5, 0.5, 11), np.zeros(11), np.arange(11))
    fig = P.playback_figure(surface, [long], frame_stride=3)
    assert [f.name for f in fig.frames] == ["0", "3", "6", "9", "10"]  # always ends at the last step
    assert [len(f.data[0].x) for f in fig.frames] == [1, 4, 7, 10, 11]
    fig = P.playback_figure(surface, [long], max_frames=4)
    assert len(fig.frames) <= 5 and fig.frames[-1].name == "10"
    with pytest.raises(ValueError, match="frame_stride"):
        P.playback_figure(surface, [long], frame_stride=0)
    with pytest.raises(ValueError, match="at least one"):
        P.playback_figure(surface, [])


def test_playback_paths_of_different_lengths():
    surface = bowl_surface()
    short = P.TrajectoryTrace("short", [0.0, 0.1, 0.2], [0, 0, 0], [0, 1, 2])  # e.g. a run that diverged
    full = P.TrajectoryTrace("full", np.linspace(0, 0.5, 6), np.zeros(6), np.arange(6))
    fig = P.playback_figure(surface, [short, full])
    assert len(fig.frames) == 6
    assert [len(f.data[0].x) for f in fig.frames] == [1, 2, 3, 3, 3, 3]  # short path stops growing
    assert [len(f.data[2].x) for f in fig.frames] == [1, 2, 3, 4, 5, 6]


def _animate_options(fig):
    """Every Plotly.animate option set of a figure: its buttons' and its slider steps'."""
    opts = [b.args[1] for m in fig.layout.updatemenus for b in m.buttons if b.method == "animate"]
    return opts + [s.args[1] for sl in fig.layout.sliders for s in sl.steps]


def test_playback_paints_the_map_as_an_image_frames_leave_alone():
    """Bug B2: plotly.js drops a contour's layer on every animation frame; a per-frame redraw brought it back too
    late on a loaded machine. The map is a layout image under the traces; the contour stays, clear, for hover."""
    surface = bowl_surface()
    fig = P.playback_figure(surface, [trace("SAM", n=6)])
    opts = _animate_options(fig)
    assert len(opts) == 3 + 4 + 6  # Play, Pause, Replay, four speeds, six slider steps
    assert all(o["frame"]["redraw"] is False and o["transition"]["duration"] == 0 for o in opts)
    (image,) = fig.layout.images
    assert image.layer == "below" and image.xref == "x" and image.yref == "y" and image.sizing == "stretch"
    assert (image.x, image.y) == (surface.alpha[0], surface.beta[-1])  # top-left corner of the grid
    assert (image.sizex, image.sizey) == (np.ptp(surface.alpha), np.ptp(surface.beta))
    contour = fig.data[0]
    assert contour.type == "contour" and contour.opacity == 0 and "loss" in contour.hovertemplate
    assert (contour.zmin, contour.zmax) == (surface.loss.min(), surface.loss.max())  # the image's colour range
    assert all(0 not in f.traces for f in fig.frames)
    assert not fig.layout.xaxis.showgrid and not fig.layout.yaxis.showgrid  # the contour used to hide the grid


def test_playback_shows_whole_runs_until_play():
    surface = bowl_surface()
    sam, sgd = trace("SAM", n=6), trace("SGD", n=6, probe=False, shift=-1.0)
    fig = P.playback_figure(surface, [sam, sgd])
    moving = list(fig.frames[0].traces)
    sam_path, sam_head, _, sgd_path, _ = (fig.data[k] for k in moving)
    np.testing.assert_array_equal(sam_path.x, sam.alpha)  # the final state, not step 0
    np.testing.assert_array_equal(sgd_path.y, sgd.beta)
    assert sam_head.x[0] == sam.alpha[-1]
    assert fig.layout.sliders[0].active == len(fig.frames) - 1
    assert len(fig.frames[0].data[0].x) == 1  # Play still starts at step 0
    play, _, replay = fig.layout.updatemenus[0].buttons
    assert play.args[0] is None and play.args[1]["fromcurrent"] is True  # no current frame yet: from step 0
    assert replay.args[1]["fromcurrent"] is False


def test_playback_speed_buttons():
    fig = P.playback_figure(bowl_surface(), [trace("SAM", n=6)], duration_ms=80)
    speed = fig.layout.updatemenus[1]
    assert [b.label for b in speed.buttons] == ["▶ 0.5×", "▶ 1×", "▶ 2×", "▶ 4×"]
    assert [b.args[1]["frame"]["duration"] for b in speed.buttons] == [160, 80, 40, 20]
    assert all(b.method == "animate" and b.args[0] is None and b.args[1]["fromcurrent"] for b in speed.buttons)
    assert len(P.playback_figure(bowl_surface(), [trace("SAM")], speeds=()).layout.updatemenus) == 1
    with pytest.raises(ValueError, match="speeds"):
        P.playback_figure(bowl_surface(), [trace("SAM")], speeds=[0])


def test_overlapping_paths_stay_distinguishable():
    """SGD under SAM on the same points: different dash, the first wider, markers never on the same point."""
    a = trace("SGD", n=30, probe=False)
    b = P.TrajectoryTrace("SAM", a.alpha, a.beta, a.steps)
    for fig in (P.surface_figure(bowl_surface(), trajectories=[a, b]), P.playback_figure(bowl_surface(), [a, b])):
        paths = [t for t in fig.data if t.name in ("SGD", "SAM")]
        assert len(paths) == 2
        first, second = paths
        assert first.line.dash != second.line.dash and first.line.width > second.line.width + 2
        assert first.marker.symbol != second.marker.symbol
        s1, s2 = np.asarray(first.marker.size), np.asarray(second.marker.size)
        shown1, shown2 = set(np.flatnonzero(s1[:-1])), set(np.flatnonzero(s2[:-1]))
        assert len(shown1) >= 3 and len(shown2) >= 3 and not shown1 & shown2
        assert s1[-1] > s2[-1]  # the shared end point shows both markers


def _all_figures(runs):
    surface = bowl_surface()
    sam = trace("SAM")
    grid = np.linspace(-1, 6, 50)
    return [
        P.surface_figure(surface, trajectories=[sam]),
        P.surface_figure(surface, trajectories=[sam], kind="surface3d"),
        P.playback_figure(surface, [sam]),
        P.perturbation_figure(surface, [sam]),
        P.series_figure(runs, "train_loss"),
        P.fsam_decomposition_figure(runs),
        P.curvature_figure([np.arange(3)], [np.ones(3)], labels=["a"]),
        P.spectrum_figure(np.array([2.0, 1.0]), (grid, np.exp(-grid**2))),
        P.decision_boundary_figure([0, 1], [0, 1], np.ones((2, 2)) / 2, np.zeros((1, 2)), [0]),
    ]


def test_fonts_are_projector_sized_and_left_to_the_theme(runs):
    for fig in _all_figures(runs):
        lay = fig.layout
        assert lay.font.size >= 14 and lay.legend.font.size >= 14, lay.title.text
        assert lay.font.color is None and lay.legend.font.color is None  # the theme picks a legible colour
        for name in lay:
            if name[1:5] == "axis" and lay[name] is not None and fig.layout.to_plotly_json().get(name):
                assert lay[name].tickfont.size >= 14, (lay.title.text, name)
                assert lay[name].tickfont.color is None
        # the legend row sits between the title and the plot: room above it for the title
        assert lay.legend.orientation == "h" and lay.legend.y >= 1.0 and lay.legend.yanchor == "bottom"
        assert lay.margin.t >= 110


def _prune(x):
    """A figure's JSON without empty objects (an emptied ``tickfont: {}`` means the default)."""
    if isinstance(x, dict):
        out = {k: _prune(v) for k, v in x.items()}
        return {k: v for k, v in out.items() if v != {}}
    return [_prune(v) for v in x] if isinstance(x, list) else x


def test_text_color_paints_every_label_and_restores(runs):
    import json

    for fig in _all_figures(runs):
        before = json.loads(fig.to_json())
        with P.text_color(fig, "#FAFAFA"):
            inside = json.loads(fig.to_json())
        lay = inside["layout"]
        assert lay["legend"]["font"]["color"] == lay["font"]["color"] == "#FAFAFA"
        for name, ax in lay.items():
            if name[1:5] == "axis":
                assert ax["tickfont"]["color"] == ax["title"]["font"]["color"] == "#FAFAFA", name
        for scene in [v for k, v in lay.items() if k.startswith("scene")]:
            assert all(scene[a]["tickfont"]["color"] == "#FAFAFA" for a in ("xaxis", "yaxis", "zaxis"))
        for t in inside["data"]:
            if t["type"] in ("contour", "surface") and t.get("showscale") is not False:
                assert t["colorbar"]["tickfont"]["color"] == "#FAFAFA"
        assert _prune(json.loads(fig.to_json())) == _prune(before)  # the figure is as it was


def test_readable_fonts_reaches_subplot_axes():
    fig = P.sweep_heatmaps([("SAM", np.ones((2, 3)), None), ("ASAM", np.ones((2, 3)), None)], x_name="rho",
                           y_name="lr", x_values=[1, 2, 3], y_values=[4, 5], metric="acc")
    P.readable_fonts(fig)
    assert fig.layout.xaxis2.tickfont.size >= 14 and fig.layout.yaxis2.tickfont.size >= 14
    three_d = P.readable_fonts(P.surface_figure(bowl_surface(), kind="surface3d"))
    assert "xaxis" not in three_d.layout.to_plotly_json()  # no empty 2-D axes added to a 3-D figure


def test_surface3d_axis_titles_fit():
    plane = Plane(np.zeros(3), np.array([1.0, 0, 0]), np.array([0, 2.0, 0]), "pca", explained_variance=(0.7, 0.2))
    fig = P.surface_figure(bowl_surface(plane), kind="surface3d")
    scene = fig.layout.scene
    assert title(scene.xaxis) == "α: PC 1 (70.0%)" and title(scene.yaxis) == "β: PC 2 (20.0%)"
    assert max(len(title(a)) for a in (scene.xaxis, scene.yaxis, scene.zaxis)) <= 24
    assert scene.xaxis.tickfont.size >= 13 and fig.layout.margin.l <= 16


# ------------------------------------------------------------------------------------------- perturbation


def test_perturbation_arrows_from_theta_to_probe():
    surface = bowl_surface()
    sam = trace("SAM", n=6)
    fig = P.perturbation_figure(surface, [sam, trace("SGD", probe=False)], max_arrows=4)
    segments = [t for t in fig.data if t.name == "SAM: e"][0]
    xs = np.asarray(segments.x, dtype=float).reshape(-1, 3)
    np.testing.assert_array_equal(xs[:, 0], sam.alpha)
    np.testing.assert_array_equal(xs[:, 1], sam.probe_alpha)
    assert np.isnan(xs[:, 2]).all()  # a gap between pairs
    arrows = fig.layout.annotations
    assert len(arrows) == 4
    for a in arrows:
        k = int(np.argmin(np.abs(sam.alpha - a.ax)))
        assert (a.x, a.y, a.ay) == (pytest.approx(sam.probe_alpha[k]), pytest.approx(sam.probe_beta[k]),
                                    pytest.approx(sam.beta[k]))
        assert a.axref == "x" and a.ayref == "y"
    assert len(P.perturbation_figure(surface, [sam]).layout.annotations) == 6
    with pytest.raises(ValueError, match="probe"):
        P.perturbation_figure(surface, [trace("SGD", probe=False)])


# ------------------------------------------------------------------------------------------------- series


def test_metrics_registry_is_complete():
    from sam_viz.records import STEP_FIELDS

    for name in STEP_FIELDS[1:]:
        info = P.METRICS[name]
        assert info.title and info.description.endswith(".") and isinstance(info.log, bool)


def test_series_one_line_per_run(runs):
    fig = P.series_figure(runs, "test_acc")
    assert [t.type for t in fig.data] == ["scatter", "scatter"]
    for t, r in zip(fig.data, runs):
        np.testing.assert_array_equal(t.x, r.step)
        np.testing.assert_array_equal(t.y, r.test_acc)
        assert t.connectgaps is True
    assert fig.data[0].name.startswith("SAM") and fig.data[1].name.startswith("SGD")
    assert title(fig.layout.yaxis) == P.METRICS["test_acc"].title
    assert title(fig.layout.xaxis) == "training step t"
    assert fig.layout.yaxis.type == "linear"
    assert P.series_figure(runs, "grad_norm").layout.yaxis.type == "log"  # METRICS default
    assert P.series_figure(runs, "grad_norm", log_y=False).layout.yaxis.type == "linear"
    assert title(P.series_figure(runs, "eps_norm", x="elapsed").layout.xaxis) == "wall-clock time (s)"
    # SGD records no cos(e, ∇L): listed, hidden
    cos = P.series_figure(runs, "cos_eps_fullgrad")
    sgd = next(t for t in cos.data if t.name.startswith("SGD"))
    assert sgd.visible == "legendonly" and "not recorded" in sgd.name
    gap = P.series_figure(runs, "sharpness_gap")
    np.testing.assert_allclose(gap.data[0].y, runs[0].perturbed_loss - runs[0].batch_loss)


def test_series_marks_diverged_runs(runs, diverged):
    fig = P.series_figure([runs[0], diverged], "test_acc", labels=["SAM", "SGD"])
    names = [t.name for t in fig.data]
    assert names[1] == "SGD — diverged at step 7"
    cross = fig.data[2]
    assert cross.marker.symbol == "x" and cross.x[0] == 7
    assert cross.y[0] == diverged.test_acc[6]  # the last finite value before the NaN
    assert cross.legendgroup == fig.data[1].legendgroup and cross.showlegend is False
    assert "diverged" in P.describe(fig)


def test_series_rejects_bad_input(runs):
    with pytest.raises(ValueError, match="Unknown metric"):
        P.series_figure(runs, "nonsense")
    with pytest.raises(ValueError, match="labels"):
        P.series_figure(runs, "test_acc", labels=["only one"])
    with pytest.raises(ValueError, match="lengths differ"):
        P.series_figure([dataclasses.replace(runs[0], test_acc=runs[0].test_acc[:-1])], "test_acc")
    with pytest.raises(ValueError, match="at least one"):
        P.series_figure([], "test_acc")


def test_series_running_mean_for_cosines(runs):
    """The presets quote average cosines: the chart shows each run's running mean, in the legend and the CSV."""
    rng = np.random.default_rng(4)
    cos = rng.uniform(0.2, 0.9, runs[0].step.size)
    cos[[1, 4]] = np.nan  # measured every few steps
    sam = dataclasses.replace(runs[0], cos_eps_fullgrad=cos)
    fig = P.series_figure([sam, runs[1]], "cos_eps_fullgrad", labels=["SAM", "SGD"])
    expected = np.array([np.nanmean(cos[: k + 1]) for k in range(cos.size)])
    line = fig.data[0]
    np.testing.assert_allclose(np.asarray(line.customdata)[:, 0], expected)
    dotted = next(t for t in fig.data if t.name == "SAM: running mean")
    np.testing.assert_allclose(dotted.y, expected)
    assert dotted.line.dash == "dot" and dotted.line.width > line.line.width and dotted.line.color == line.line.color
    assert f"mean {P._common.fmt(expected[-1])}" in line.name and "running mean" in line.hovertemplate
    table = P.figure_to_csv_frames(fig)["SAM"]
    assert list(table.columns) == ["step", "cos_eps_fullgrad", "running_mean_cos_eps_fullgrad"]
    np.testing.assert_allclose(table["running_mean_cos_eps_fullgrad"], expected)
    assert not any("mean" in t.name for t in fig.data if t.name.startswith("SGD"))  # nothing recorded
    plain = P.series_figure(runs, "test_acc")  # off by default for other metrics
    assert not any("running mean" in t.name for t in plain.data)
    on = P.series_figure(runs, "test_acc", running_mean=True)
    assert sum(t.name.endswith(": running mean") for t in on.data) == 2
    assert not any("running mean" in t.name for t in P.series_figure([sam], "cos_eps_fullgrad",
                                                                        running_mean=False).data)


def test_series_seed_means_with_std_bands(runs):
    rng = np.random.default_rng(5)
    n = runs[0].step.size
    sam = [dataclasses.replace(runs[0], test_acc=rng.random(n)) for _ in range(3)]
    sgd = [dataclasses.replace(runs[1], test_acc=rng.random(n)) for _ in range(2)]
    # a third SGD seed that stopped after 5 steps (diverged): later steps average the other two
    sgd.append(dataclasses.replace(runs[1], step=runs[1].step[:5], test_acc=rng.random(5), diverged=True,
                                   diverged_step=5))
    fig = P.series_figure([sam[0], sgd[0]], "test_acc", labels=["SAM", "SGD"], seed_runs=[sam, sgd])
    stack = np.stack([r.test_acc for r in sam])
    mean, std = stack.mean(axis=0), stack.std(axis=0)
    band, line = fig.data[0], fig.data[1]
    np.testing.assert_allclose(line.y, mean)
    custom = np.asarray(line.customdata)
    np.testing.assert_allclose(custom[:, 0], std)
    np.testing.assert_array_equal(custom[:, 1], 3)
    assert band.fill == "toself" and band.legendgroup == line.legendgroup and band.showlegend is False
    np.testing.assert_allclose(band.y, np.concatenate([mean + std, (mean - std)[::-1]]))
    np.testing.assert_array_equal(band.x, np.concatenate([runs[0].step, runs[0].step[::-1]]))
    assert "(3 seeds, ±1 std)" in line.name and "seeds" in line.hovertemplate
    sgd_line = next(t for t in fig.data if t.name.startswith("SGD") and t.fill is None)
    early = np.stack([r.test_acc[:5] for r in sgd])
    late = np.stack([r.test_acc[5:] for r in sgd[:2]])
    np.testing.assert_allclose(sgd_line.y, np.concatenate([early.mean(axis=0), late.mean(axis=0)]))
    np.testing.assert_allclose(np.asarray(sgd_line.customdata)[:, 0],
                               np.concatenate([early.std(axis=0), late.std(axis=0)]))
    assert list(np.asarray(sgd_line.customdata)[:, 1]) == [3] * 5 + [2] * (n - 5)
    assert "1 of 3 seeds diverged" in sgd_line.name
    table = P.figure_to_csv_frames(fig)["SAM"]
    assert list(table.columns) == ["step", "mean_test_acc", "std_test_acc", "seeds"]
    np.testing.assert_allclose(table["std_test_acc"], std)
    assert "±1 std" in P.describe(fig)
    with pytest.raises(ValueError, match="seed_runs"):
        P.series_figure(runs, "test_acc", seed_runs=[sam])
    with pytest.raises(ValueError, match="seed_runs"):
        P.series_figure(runs, "test_acc", seed_runs=[sam, []])


def test_fsam_decomposition_parts(runs):
    fig = P.fsam_decomposition_figure(runs)
    full, noise = fig.data  # SGD has no cos(e, ∇L)
    sam = runs[0]
    ok = np.isfinite(sam.cos_eps_fullgrad)
    np.testing.assert_allclose(np.asarray(full.y) ** 2 + np.asarray(noise.y) ** 2, sam.eps_norm[ok] ** 2)
    cos = np.clip(sam.cos_eps_fullgrad[ok], -1, 1)  # float32 rounding can put |cos| a hair above 1
    np.testing.assert_allclose(full.y, sam.eps_norm[ok] * cos)
    assert full.yaxis in (None, "y") and noise.yaxis == "y2" and fig.layout.yaxis2.matches == "y"
    assert title(fig.layout.xaxis2) == "training step t"
    note = next(a for a in fig.layout.annotations if "SGD" in a.text)
    # under the x-axis title, not on its tick labels, inside the bottom margin
    assert note.y == 0 and note.yshift <= -70 and note.yanchor == "top" and fig.layout.margin.b >= 100


def test_fsam_decomposition_seed_bands(runs):
    rng = np.random.default_rng(6)
    n = runs[0].step.size
    group = [dataclasses.replace(runs[0], cos_eps_fullgrad=rng.uniform(0, 1, n), eps_norm=rng.uniform(0.04, 0.06, n))
             for _ in range(3)]
    fig = P.fsam_decomposition_figure([group[0], runs[1]], labels=["SAM", "SGD"], seed_runs=[group, [runs[1]]])
    parts = [P.fsam_parts(r) for r in group]
    full = np.stack([p[1] for p in parts])
    noise = np.stack([p[2] for p in parts])
    band_full, line_full, band_noise, line_noise = fig.data
    np.testing.assert_allclose(line_full.y, full.mean(axis=0))
    np.testing.assert_allclose(np.asarray(line_full.customdata)[:, 0], full.std(axis=0))
    np.testing.assert_allclose(line_noise.y, noise.mean(axis=0))
    np.testing.assert_allclose(band_noise.y, np.concatenate([noise.mean(0) + noise.std(0),
                                                             (noise.mean(0) - noise.std(0))[::-1]]))
    assert band_noise.yaxis == "y2" and band_full.fill == "toself"
    assert "3 seeds" in line_full.name and any("SGD" in a.text for a in fig.layout.annotations)
    table = P.figure_to_csv_frames(fig)["SAM full-gradient part"]
    assert list(table.columns) == ["step", "mean_eps_along_fullgrad", "std_eps_along_fullgrad", "seeds"]


# ---------------------------------------------------------------------------------------------- curvature


def test_curvature_error_bars_and_stability_line():
    steps = [np.arange(0, 50, 10), np.arange(0, 30, 10)]
    values = [np.array([1.0, 2, 3, 4, 4.1]), np.array([1.0, 1.5, 1.6])]
    errors = [np.full(5, 0.1), None]
    fig = P.curvature_figure(steps, values, labels=["GD", "SAM"], errors=errors, learning_rates=[0.5, None])
    gd, sam, limit = fig.data
    np.testing.assert_array_equal(gd.error_y.array, errors[0])
    assert gd.error_y.visible and sam.error_y.array is None
    np.testing.assert_array_equal(sam.y, values[1])
    assert list(limit.y) == [4.0, 4.0] and limit.line.dash == "dot"
    assert title(fig.layout.yaxis).startswith("λ_max")
    tr = P.curvature_figure(steps, values, labels=["a", "b"], metric="trace", learning_rates=[0.5, 0.5])
    assert len(tr.data) == 2 and title(tr.layout.yaxis).startswith("tr H")  # no 2/η line for the trace
    with pytest.raises(ValueError, match="lengths differ"):
        P.curvature_figure([np.arange(3)], [np.arange(4)], labels=["a"])
    with pytest.raises(ValueError, match="labels"):
        P.curvature_figure(steps, values, labels=["a"])


def test_hessian_series_reads_results():
    eig = EigenResult(np.array([5.0, 2.0]), np.array([1e-3, 1e-2]), np.array([True, True]), np.zeros((3, 2)),
                      np.empty(0), np.empty(0), np.empty(0, bool), np.zeros((3, 0)), 10, "lanczos", 10, 1e-3, True)
    values, errors = P.hessian_series([eig, eig])
    np.testing.assert_array_equal(values, [5.0, 5.0])
    np.testing.assert_array_equal(errors, [1e-3, 1e-3])
    values, errors = P.hessian_series([TraceResult(7.0, 0.5, 99)])
    assert (values[0], errors[0]) == (7.0, 0.5)
    with pytest.raises(ValueError):
        P.hessian_series([object()])


def test_spectrum_eigenvalues_and_density():
    eig = EigenResult(np.array([5.0, 2.0, 1.0]), np.array([1e-4, 1e-3, 0.5]), np.array([True, True, False]),
                      np.zeros((4, 3)), np.array([-0.2]), np.array([1e-3]), np.array([True]), np.zeros((4, 1)),
                      20, "lanczos", 20, 1e-3, True)
    grid = np.linspace(-1, 6, 100)
    dens = np.exp(-grid**2)
    density = Density(np.zeros((1, 5)), np.ones((1, 5)) / 5, grid, dens, 0.1, 20)
    fig = P.spectrum_figure(eig, density)
    points, line = fig.data
    assert list(points.x) == ["λ₁", "λ₂", "λ₃", "λmin"]
    np.testing.assert_array_equal(points.y, [5.0, 2.0, 1.0, -0.2])
    np.testing.assert_array_equal(points.error_y.array, [1e-4, 1e-3, 0.5, 1e-3])
    assert list(points.marker.symbol) == ["circle", "circle", "circle-open", "circle"]  # λ₃ not converged
    assert fig.layout.yaxis2.type == "log" and line.xaxis == "x2"
    assert np.all(np.asarray(line.y) > 0)  # zeros floored: a log axis would drop them
    np.testing.assert_array_equal(line.x, grid)
    two = P.spectrum_figure([np.array([3.0, 1.0]), np.array([2.0])], labels=["SGD", "SAM"])
    assert len(two.data) == 2 and "xaxis2" not in two.layout.to_plotly_json()  # no density panel
    with pytest.raises(ValueError, match="labels"):
        P.spectrum_figure([np.array([3.0]), np.array([2.0])], labels=["one"])


def test_spectrum_draws_every_runs_density():
    grid = np.linspace(-1, 6, 80)
    d1 = Density(np.zeros((1, 5)), np.ones((1, 5)) / 5, grid, np.exp(-grid**2), 0.1, 20)
    d2 = Density(np.zeros((1, 5)), np.ones((1, 5)) / 5, grid, np.exp(-(grid - 1) ** 2), 0.1, 20)
    spectra = [np.array([3.0, 1.0]), np.array([2.0, 0.5]), np.array([1.0])]
    for density in ([d1, d2, (grid, np.exp(-grid**2))], (d1, d2, d1)):
        fig = P.spectrum_figure(spectra, density, labels=["SGD", "SAM", "ASAM"])
        lines = [t for t in fig.data if t.name.endswith("density")]
        assert [t.name for t in lines] == ["SGD density", "SAM density", "ASAM density"]
        assert len({t.line.color for t in lines}) == 3 and len({t.line.dash for t in lines}) == 3
        assert lines[0].line.width > lines[1].line.width > lines[2].line.width
        assert all(t.showlegend and t.xaxis == "x2" for t in lines)
        np.testing.assert_allclose(lines[1].y, np.maximum(d2.density, d2.density.max() * 1e-8))
    # a two-tuple of densities is two densities, a (grid, density) tuple is one
    two = P.spectrum_figure(spectra[:2], (d1, d2), labels=["SGD", "SAM"])
    assert sum(t.name.endswith("density") for t in two.data) == 2
    one = P.spectrum_figure(spectra[0], (grid, np.exp(-grid**2)))
    assert sum(t.name.endswith("density") for t in one.data) == 1
    partial = P.spectrum_figure(spectra[:2], [None, d2], labels=["SGD", "SAM"])
    assert [t.name for t in partial.data if t.name.endswith("density")] == ["SAM density"]


# ------------------------------------------------------------------------------------------------ sweeps


def test_sweep_heatmaps_share_one_scale_and_mark_divergence():
    rho, lr = np.array([0.01, 0.03, 0.1, 0.3]), np.array([1e-3, 1e-2, 1e-1])
    rng = np.random.default_rng(0)
    sam, asam = rng.random((3, 4)), 2 + rng.random((3, 4))
    mask = np.zeros((3, 4), bool)
    mask[2, 3] = True
    sam[2, 3] = 1e6  # a diverged cell's value must not stretch the shared scale
    fig = P.sweep_heatmaps([("SAM", sam, mask), ("ASAM", asam, None)], x_name="rho", y_name="lr",
                           x_values=rho, y_values=lr, metric="final_test_acc")
    heat = [t for t in fig.data if t.type == "heatmap" and not t.name.endswith("diverged")]
    assert len(heat) == 2
    zmin, zmax = sam[~mask].min(), asam.max()
    for t in heat:
        assert (t.zmin, t.zmax) == (zmin, zmax) and t.coloraxis == "coloraxis"
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (zmin, zmax)
    assert fig.layout.coloraxis.colorscale == scale("Cividis")
    assert np.isnan(heat[0].z[2, 3]) and heat[0].text[2, 3] == ""
    assert heat[0].text[0, 0] == P._common.fmt(sam[0, 0])
    # the diverged layer: only that cell, an "×", "diverged" on hover
    div = [t for t in fig.data if t.name == "SAM: diverged"][0]
    assert np.isfinite(div.z).sum() == 1 and div.z[2, 3] == 1 and div.text[2, 3] == "×"
    assert "diverged" in div.hovertemplate and div.showscale is False
    # customdata: (i, j, panel, x value, y value, std) per cell; no spread given: NaN
    custom = np.asarray(heat[1].customdata)
    assert custom.shape == (3, 4, 6)
    assert tuple(custom[2, 1, :5]) == (2, 1, 1, 0.03, 0.1) and np.isnan(custom[2, 1, 5])
    # categorical axes labelled with the real values; titles with meaning
    assert list(heat[0].x) == ["0.01", "0.03", "0.1", "0.3"] and list(heat[0].y) == ["0.001", "0.01", "0.1"]
    assert fig.layout.xaxis.type == "category" and fig.layout.xaxis2.type == "category"
    assert title(fig.layout.xaxis).startswith("ρ") and title(fig.layout.yaxis).startswith("η")
    assert [a.text for a in fig.layout.annotations] == ["SAM", "ASAM"]
    fixed = P.sweep_heatmaps([("SAM", sam, mask)], x_name="rho", y_name="lr", x_values=rho, y_values=lr,
                             metric="m", zmin=0, zmax=1)
    assert (fixed.data[0].zmin, fixed.data[0].zmax) == (0, 1)


def test_sweep_heatmaps_have_a_click_layer_per_panel():
    """Streamlit delivers no selections for heatmaps: each panel gets a scatter of invisible markers at the cell
    centres whose customdata names the panel and cell (B9)."""
    rho, lr = np.array([0.01, 0.1, 1.0]), np.array([0.001, 0.01])
    sam, light = np.arange(6.0).reshape(2, 3), 10 + np.arange(6.0).reshape(2, 3)
    mask = np.zeros((2, 3), bool)
    mask[1, 2] = True
    fig = P.sweep_heatmaps([("SAM", sam, mask), ("LightSAM", light, None)], x_name="rho", y_name="lr",
                           x_values=rho, y_values=lr, metric="final_test_acc")
    clicks = [t for t in fig.data if t.type == "scatter"]
    assert [t.name for t in clicks] == ["SAM: click a cell", "LightSAM: click a cell"]
    assert fig.layout.clickmode == "event+select"
    for k, t in enumerate(clicks):
        custom = np.asarray(t.customdata)
        assert custom.shape == (6, len(P.CLICK_COLUMNS)) and set(custom[:, 2]) == {k}
        assert t.marker.opacity < 0.05 and t.selected.marker.opacity == t.unselected.marker.opacity
        assert t.mode == "markers" and t.showlegend is False
        # each marker sits on its cell: x label of column j, y label of row i
        for (x, y), row in zip(zip(t.x, t.y), custom):
            i, j = int(row[0]), int(row[1])
            assert (x, y) == (P._common.tick_labels(rho)[j], P._common.tick_labels(lr)[i])
            assert row[3] == rho[j] and row[4] == lr[i]
    assert (clicks[1].xaxis, clicks[1].yaxis) == ("x2", "y2")
    values = np.asarray(clicks[1].customdata)[:, 6].reshape(2, 3)
    np.testing.assert_array_equal(values, light)
    assert np.isnan(np.asarray(clicks[0].customdata)[5, 6])  # the diverged cell has no value
    assert not any("click" in k for k in P.figure_to_csv_frames(fig))  # not exported as data


def test_sweep_selection_maps_a_point_to_its_panel_and_cell():
    fig = P.sweep_heatmaps([("SAM", np.ones((2, 3)), None), ("ASAM", np.ones((2, 3)), None)], x_name="rho",
                           y_name="lr", x_values=[1, 2, 3], y_values=[4, 5], metric="m")
    click = [k for k, t in enumerate(fig.data) if t.type == "scatter"][1]  # curve 3: not panel 1's index
    row = list(np.asarray(fig.data[click].customdata)[4])  # point 4 of ASAM's layer: row 1, column 1
    event = {"selection": {"points": [{"curve_number": click, "point_number": 4, "customdata": row}]}}
    assert P.sweep_selection(event) == (1, 1, 1)
    as_dict = {"selection": {"points": [{"curve_number": click, "customdata": {"0": 1, "1": 2, "2": 0}}]}}
    assert P.sweep_selection(as_dict) == (0, 1, 2)
    for empty in (None, {}, {"selection": {"points": []}}, {"selection": {"points": [{"curve_number": 0}]}},
                  {"selection": {"points": [{"customdata": ["a", "b", "c"]}]}}, {"selection": None}):
        assert P.sweep_selection(empty) is None


def test_sweep_heatmaps_show_the_spread_over_seeds():
    std = np.full((2, 3), 0.25)
    fig = P.sweep_heatmaps([("SAM", np.ones((2, 3)), None)], x_name="rho", y_name="lr", x_values=[1, 2, 3],
                           y_values=[4, 5], metric="m", spreads=[std], seeds=3)
    heat = fig.data[0]
    np.testing.assert_array_equal(np.asarray(heat.customdata)[..., 5], std)
    assert "± %{customdata[5]" in heat.hovertemplate and "3 seeds" in heat.hovertemplate
    with pytest.raises(ValueError, match="spreads"):
        P.sweep_heatmaps([("SAM", np.ones((2, 3)), None)], x_name="rho", y_name="lr", x_values=[1, 2, 3],
                         y_values=[4, 5], metric="m", spreads=[std, std])


def test_sweep_heatmaps_reject_bad_shapes():
    kw = dict(x_name="rho", y_name="lr", x_values=[1, 2, 3], y_values=[1, 2], metric="m")
    with pytest.raises(ValueError, match="shape"):
        P.sweep_heatmaps([("a", np.ones((3, 2)), None)], **kw)
    with pytest.raises(ValueError, match="diverged"):
        P.sweep_heatmaps([("a", np.ones((2, 3)), np.zeros((3, 2), bool))], **kw)
    with pytest.raises(ValueError, match="zmin"):
        P.sweep_heatmaps([("a", np.ones((2, 3)), None)], zmin=1, zmax=1, **kw)
    with pytest.raises(ValueError, match="at least one"):
        P.sweep_heatmaps([], **kw)


def test_tick_labels_stay_distinct():
    assert P._common.tick_labels([1e-5, 3e-4, 1e-3]) == ["1e-5", "0.0003", "0.001"]
    assert len(set(P._common.tick_labels([0.10001, 0.10002]))) == 2


# ---------------------------------------------------------------------------------------- decision boundary


def test_decision_boundary_binary_and_multiclass():
    x, y = np.linspace(-1, 1, 30), np.linspace(-2, 2, 20)
    probs = np.random.default_rng(1).random((20, 30))
    pts = np.random.default_rng(2).normal(size=(12, 2))
    labels = np.arange(12) % 2
    fig = P.decision_boundary_figure(*np.meshgrid(x, y), probs, pts, labels)
    field, boundary = fig.data[:2]
    np.testing.assert_array_equal(field.z, probs)
    np.testing.assert_array_equal(field.x, x)
    assert field.colorscale == scale("Cividis") and (field.zmin, field.zmax) == (0, 1)
    assert boundary.contours.start == 0.5 and boundary.contours.coloring == "none"
    class0 = fig.data[2]
    np.testing.assert_array_equal(class0.x, pts[labels == 0, 0])
    assert fig.data[2].marker.symbol != fig.data[3].marker.symbol
    assert title(fig.layout.xaxis).startswith("x₁") and fig.layout.xaxis.scaleanchor == "y"
    p3 = np.random.default_rng(3).dirichlet([1, 1, 1], size=(20, 30))
    fig3 = P.decision_boundary_figure(x, y, p3, pts, np.arange(12) % 3, x_test=pts[:3], y_test=[0, 1, 2])
    np.testing.assert_allclose(fig3.data[0].z, p3.max(axis=-1))
    np.testing.assert_array_equal(np.asarray(fig3.data[0].customdata)[:, :, 0], p3.argmax(axis=-1))
    assert sum("(test)" in t.name for t in fig3.data) == 3
    named = P.decision_boundary_figure(x, y, probs, pts, labels, class_names=["cat", "dog"],
                                       feature_names=["height", "weight"])
    assert [t.name for t in named.data[2:]] == ["cat (train)", "dog (train)"]
    assert title(named.layout.xaxis) == "x₁ (height)" and title(named.layout.yaxis) == "x₂ (weight)"
    assert named.data[0].name == "P(dog)"
    with pytest.raises(ValueError, match="feature_names"):
        P.decision_boundary_figure(x, y, probs, pts, labels, feature_names=["height"])
    with pytest.raises(ValueError, match="probs"):
        P.decision_boundary_figure(x, y, probs.T, pts, labels)
    with pytest.raises(ValueError, match="labels"):
        P.decision_boundary_figure(x, y, probs, pts, labels[:-1])


# ------------------------------------------------------------------------------------- export and alt text


def test_static_figure_is_the_final_state_without_controls(runs):
    surface = bowl_surface()
    sam, sgd = trace("SAM", n=6), trace("SGD", n=6, probe=False, shift=-1.0)
    play = P.playback_figure(surface, [sam, sgd])
    # as if the user had replayed to step 20 before exporting: the static copy still shows the final state
    play.data[play.frames[0].traces[0]].update(x=sam.alpha[:3], y=sam.beta[:3])
    out = P.static_figure(play)
    assert out is not play and len(play.frames) == 6 and play.layout.updatemenus  # the input is unchanged
    assert not out.frames and not out.layout.updatemenus and not out.layout.sliders
    assert [t.type for t in out.data] == [t.type for t in play.data]
    assert [t.name for t in out.data] == [t.name for t in play.data]
    k = play.frames[0].traces[0]
    np.testing.assert_array_equal(out.data[k].x, sam.alpha)  # whole path
    assert out.data[k].line.color == play.data[k].line.color and out.data[k].line.dash == play.data[k].line.dash
    np.testing.assert_array_equal(out.data[0].z, surface.loss)
    assert out.layout.xaxis.title.text == play.layout.xaxis.title.text
    assert out.layout.paper_bgcolor == "white" and out.layout.plot_bgcolor == "white"
    assert out.layout.template.layout.paper_bgcolor == "white"  # plotly_white, whatever template was set
    assert out.layout.legend.font.size >= 14 and out.layout.xaxis.tickfont.size >= 14
    assert out.layout.xaxis.tickfont.color == out.layout.legend.font.color == "#222222"
    assert out.layout.margin.b < play.layout.margin.b and out.layout.uirevision is None
    assert P.describe(out) == P.describe(play)
    # heatmap cell numbers at least 13 px (the sweep figure's own default is smaller)
    sweep = P.sweep_heatmaps([("SAM", np.ones((2, 3)), None)], x_name="rho", y_name="lr", x_values=[1, 2, 3],
                             y_values=[4, 5], metric="acc")
    assert all(t.textfont.size >= 13 for t in P.static_figure(sweep).data if t.texttemplate)
    for fig in _all_figures(runs):
        assert P.static_figure(fig).to_json()
    with pytest.raises(TypeError, match="fig"):
        P.static_figure({"data": []})


def test_figure_image_checks_and_reports_a_missing_browser(monkeypatch):
    fig = P.surface_figure(bowl_surface())
    with pytest.raises(ValueError, match="format"):
        P.figure_image(fig, "jpg")
    with pytest.raises(ValueError, match="scale"):
        P.figure_image(fig, scale=0)
    monkeypatch.setattr(P._static, "_browser_path", lambda: None)
    with pytest.raises(RuntimeError, match="chromium"):
        P.figure_image(fig)


@pytest.mark.e2e
@pytest.mark.skipif(not __import__("shutil").which("chromium") and not __import__("os").path.exists(
    "/usr/bin/chromium"), reason="Debian chromium is not installed (apt-get install chromium)")
def test_figure_image_renders_png_svg_pdf():
    fig = P.playback_figure(bowl_surface(), [trace("SAM")])
    png = P.figure_image(fig, "png", width=600, height=450, scale=1)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (600, 450)
    assert P.figure_image(fig, "svg", width=600, height=450).lstrip().startswith(b"<svg")
    assert P.figure_image(fig, "pdf", width=600, height=450).startswith(b"%PDF")


def test_csv_frames_hold_the_data_behind_each_figure(runs):
    surface = bowl_surface()
    sam = trace("SAM")
    frames = P.figure_to_csv_frames(P.surface_figure(surface, trajectories=[sam]))
    grid = frames["surface"]
    assert list(grid.columns) == ["alpha", "beta", "loss"] and len(grid) == surface.loss.size
    assert grid["loss"].iloc[0] == surface.loss[0, 0] and grid["alpha"].iloc[1] == surface.alpha[1]
    path = frames["SAM path"]
    assert list(path.columns) == ["alpha", "beta", "step", "true_loss", "plane_loss", "off_plane"]
    np.testing.assert_array_equal(path["off_plane"], sam.off_plane)
    assert "SAM probe" in frames and path.to_csv(index=False).startswith("alpha,beta,step")
    # playback: each whole path once, not every frame's copy
    play = P.figure_to_csv_frames(P.playback_figure(surface, [sam]))
    assert len(play["SAM path"]) == sam.n and not any("now" in k for k in play)
    series = P.figure_to_csv_frames(P.series_figure(runs, "eps_norm"))
    assert list(next(iter(series.values())).columns) == ["step", "eps_norm"]
    sweep = P.figure_to_csv_frames(P.sweep_heatmaps([("SAM", np.ones((2, 3)), None)], x_name="rho", y_name="lr",
                                                    x_values=[1, 2, 3], y_values=[4, 5], metric="acc"))
    assert set(sweep["SAM"].columns) >= {"rho", "lr", "acc", "i", "j", "x_value", "y_value"}


def test_every_figure_serialises_and_has_alt_text(runs):
    surface = bowl_surface()
    sam = trace("SAM")
    figs = [
        P.surface_figure(surface, trajectories=[sam]),
        P.surface_figure(surface, trajectories=[sam], kind="surface3d", log_scale=True),
        P.playback_figure(surface, [sam]),
        P.perturbation_figure(surface, [sam]),
        P.series_figure(runs, "train_loss"),
        P.fsam_decomposition_figure(runs),
        P.curvature_figure([np.arange(3)], [np.ones(3)], labels=["a"]),
        P.spectrum_figure(np.array([2.0, 1.0])),
        P.sweep_heatmaps([("a", np.ones((1, 2)), None)], x_name="rho", y_name="lr", x_values=[1, 2],
                         y_values=[1], metric="m"),
        P.decision_boundary_figure([0, 1], [0, 1], np.ones((2, 2)) / 2, np.zeros((1, 2)), [0]),
    ]
    for fig in figs:
        assert isinstance(fig, go.Figure)
        assert fig.layout.uirevision
        assert fig.to_json()  # valid for the browser
        alt = P.describe(fig)
        assert alt.endswith(".") and len(alt) > 40
    assert "SAM" in P.describe(figs[0]) and "lowest loss 0.1" in P.describe(figs[0])
    assert P.describe(go.Figure(go.Bar(x=[1], y=[2], name="b"))).startswith("Figure: a chart with 1 series (bar)")


def test_heatmap_cell_numbers_are_projector_sized_in_the_app():
    small = P.sweep_heatmaps([("SAM", np.ones((3, 3)), None), ("SGD", np.ones((3, 3)), None)], x_name="rho",
                             y_name="lr", x_values=[1, 2, 3], y_values=[4, 5, 6], metric="acc")
    assert {t.textfont.size for t in small.data if t.texttemplate and t.meta["z"] == "acc"} == {HEATMAP_TEXT_SIZE}
    wide = P.sweep_heatmaps([("SAM", np.ones((3, 15)), None), ("SGD", np.ones((3, 15)), None)], x_name="rho",
                            y_name="lr", x_values=list(range(1, 16)), y_values=[4, 5, 6], metric="acc")
    assert all(11 <= t.textfont.size < HEATMAP_TEXT_SIZE for t in wide.data if t.texttemplate and t.meta["z"] == "acc")


def test_best_per_column_rings_the_best_cell_of_each_column():
    acc = np.array([[0.5, 0.9, np.nan], [0.7, 0.8, np.nan], [0.6, 0.95, np.nan]])
    fig = P.sweep_heatmaps([("SAM", acc, np.isnan(acc)), ("SGD", acc[::-1].copy(), None)], x_name="width",
                           y_name="rho", x_values=[16, 32, 64], y_values=[0.01, 0.1, 1.0], metric="final_test_acc",
                           best_per_column=True)
    rings = [t for t in fig.data if t.meta and str(t.meta.get("key", "")).endswith("best per column")]
    assert len(rings) == 2
    assert rings[0].meta["rows"] == [1, 2, -1] and list(rings[0].x) == ["16", "32"] and list(rings[0].y) == ["0.1", "1"]
    assert rings[1].meta["rows"] == [1, 0, -1]
    loss = P.sweep_heatmaps([("SAM", acc, None)], x_name="width", y_name="rho", x_values=[16, 32, 64],
                            y_values=[0.01, 0.1, 1.0], metric="final_test_loss", best_per_column=True)
    ring = [t for t in loss.data if t.meta and str(t.meta.get("key", "")).endswith("best per column")][0]
    assert ring.meta["rows"] == [0, 1, -1]  # a loss is best low
    plain = P.sweep_heatmaps([("SAM", acc, None)], x_name="width", y_name="rho", x_values=[16, 32, 64],
                             y_values=[0.01, 0.1, 1.0], metric="final_test_acc")
    assert not [t for t in plain.data if t.meta and "best per column" in str(t.meta.get("key", ""))]
