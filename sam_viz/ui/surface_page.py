"""Loss surface: the contour or 3-D surface with every run's path replayed, the decision boundary, a metric."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import plotly.graph_objects as go
import streamlit as st

from .. import plots, scene
from ..data import start_limits, task_info
from ..records import Run
from ..settings import PLANES, Settings, from_query, to_query
from . import state
from .common import chart, exports, metric_chart, open_page, path_traces, shared_figure, surface_scene, view_key
from .method_views import cost_note
from .sidebar import view_option
from .training import cached


def render_surface() -> None:
    opened = open_page("Loss surface", "Loss surface")
    if opened is None:
        return
    settings, runs, labels, seed_runs = opened
    analytic = task_info(settings.task).kind == "analytic"
    c = st.columns(3) + st.columns(3)  # the toggles on a row of their own: five columns cut their labels at 1024 px
    with c[0]:
        if not analytic:
            view_option("plane", st.selectbox, options=PLANES)
    with c[1]:
        if not analytic:
            view_option("span", st.slider, step=0.05)
    with c[2]:
        view_option("res", st.slider, step=10)
    with c[3]:
        view_option("log", st.toggle)
    with c[4]:
        view_option("view3d", st.toggle)
    settings = state.current()
    sc = surface_scene(settings, runs)
    if sc is None:
        return
    key = view_key(settings, "plane", "span", "res", "log", "view3d") + json.dumps(list(labels))
    fig = shared_figure(key, lambda: _surface_figure(settings, sc, runs))
    pickable = analytic and not settings.view3d
    chart(fig, "surface", shared=key, on_select=_apply_pick if pickable else None)
    if pickable:
        st.caption(":material/ads_click: Click the map to start every run there (θ₀, the white cross); the link "
                   "keeps the point. Blank the sidebar's Start boxes and press Train for the task's own start.")
    st.caption(f"{sc.note}. Grid {sc.surface.loss.shape[1]}×{sc.surface.loss.shape[0]}, evaluator `{sc.surface.evaluator}`, "
               f"{sc.surface.seconds:.2f} s. Hover a path for its true loss, the loss at its projection and its "
               "distance from the plane: a contour is a slice, so a point off the plane need not sit on its contour.")
    if note := cost_note(runs, labels):
        st.caption(note)
    figures = [fig]
    if not analytic and runs[0].config.task != "digits":
        figures.append(_boundary(settings, runs, labels))
    figures.append(metric_chart(settings, runs, labels, seed_runs))
    exports("Loss surface", settings, runs, figures, [sc.note])


def _surface_figure(settings: Settings, sc: scene.SurfaceScene, runs: Sequence[Run]) -> go.Figure:
    traces = path_traces(sc, runs)
    if settings.view3d:
        return plots.surface_figure(sc.surface, trajectories=traces, kind="surface3d", log_scale=settings.log,
                                    title="Loss surface (3-D)")
    longest = max(len(t.steps) for t in traces)
    fig = plots.playback_figure(sc.surface, traces, log_scale=settings.log, frame_stride=max(1, math.ceil(longest / 60)),
                                title="Loss surface: press ▶ to replay training")  # ≤ 60 frames keep the page light
    if sc.analytic:
        _add_start_picker(fig, settings, sc.surface)
    return fig


def _add_start_picker(fig: go.Figure, settings: Settings, surface) -> None:
    """The click-to-start layer over the drawn map (within the task's domain) and the θ₀ marker, appended after
    every other trace: the playback frames address traces by index, so theirs stay as they are."""
    (x_low, x_high), (y_low, y_high) = start_limits(settings.task)
    xlim = (max(float(surface.alpha[0]), x_low), min(float(surface.alpha[-1]), x_high))
    ylim = (max(float(surface.beta[0]), y_low), min(float(surface.beta[-1]), y_high))
    default = task_info(settings.task).start
    picked = not (math.isnan(settings.start_x) and math.isnan(settings.start_y))
    x0 = default[0] if math.isnan(settings.start_x) else settings.start_x
    y0 = default[1] if math.isnan(settings.start_y) else settings.start_y
    fig.add_traces([plots.picker_points(xlim, ylim), plots.start_marker(x0, y0, picked=picked)])
    fig.update_layout(clickmode="event+select")


def _apply_pick() -> None:
    """A click on the map (``on_select``, called once per new selection): every run starts at the clicked point.
    The settings change (and with them the URL and the runs' cache key), so the page trains from there."""
    picked = plots.picked_start(st.session_state.get("surface"))
    current = state.current()
    if picked is None or picked == (current.start_x, current.start_y):
        return  # the selection was cleared (the new figure), or the same point again
    settings, notes = from_query({**to_query(current), "start_x": f"{picked[0]:g}", "start_y": f"{picked[1]:g}"})
    state.update(settings, notes)
    st.session_state["widgets_for"] = None  # the sidebar's Start boxes show the new point


def _boundary(settings: Settings, runs: Sequence[Run], labels: Sequence[str]) -> go.Figure:
    st.subheader("Decision boundary")
    c1, c2 = st.columns([1, 3])
    which = c1.selectbox("Run", range(len(runs)), format_func=lambda i: labels[i], key="boundary_run")
    n_snaps = len(runs[which].snapshot_step)
    with c2:
        view_option("snap", st.slider, label="Snapshot (-1 = last)", min_value=-1, max_value=n_snaps - 1)
    snap = state.current().snap
    key = view_key(settings, "snap") + json.dumps([which, labels[which]])
    b = cached("boundary", key, lambda: scene.decision_boundary(runs[which], snap))
    fig = shared_figure(key, lambda: plots.decision_boundary_figure(
        b.xx, b.yy, b.probs, b.x_train, b.y_train, class_names=b.class_names or None,
        feature_names=b.feature_names or None, title=f"{labels[which]} at step {b.step}"))
    chart(fig, "boundary", shared=key)
    return fig
