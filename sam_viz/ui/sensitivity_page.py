"""Radius sensitivity: final metrics over a ρ × η grid per optimizer, and their robustness."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import streamlit as st

from .. import plots, scene
from ..settings import SWEEP_METRICS, Settings, cell_settings, from_query, to_query
from . import state
from .common import chart, preset_banner
from .sidebar import PAGE_FILES, page_frame, view_option
from .training import await_job


def render_sensitivity() -> None:
    settings = page_frame("Radius sensitivity")
    st.title("Radius sensitivity")
    preset_banner(settings)
    c = st.columns(3)
    with c[0]:
        view_option("smetric", st.selectbox, options=SWEEP_METRICS)
    with c[1]:
        st.text_input("ρ values (x)", value=",".join(f"{v:g}" for v in settings.sxv), key="sxv_text",
                      on_change=_grid_values, args=("sxv",), help="Comma-separated, up to 9.")
    with c[2]:
        st.text_input("learning rates (y)", value=",".join(f"{v:g}" for v in settings.syv), key="syv_text",
                      on_change=_grid_values, args=("syv",), help="Comma-separated, up to 9.")
    settings = state.current()
    entries = scene.sweep_configs(settings)
    skipped = [label for label in settings.labels if label not in {e[0] for e in entries}]
    if skipped:
        st.caption(f"Not swept (no {settings.sx} or {settings.sy} hyperparameter): {', '.join(skipped)}.")
    if not entries:
        st.info("Choose at least one SAM-type optimizer in the sidebar.")
        return
    grids = []
    for label, config in entries:
        from ..sweep import run_grid

        key = "grid:" + json.dumps([config.to_flat(), settings.sx, settings.sxv, settings.sy, settings.syv], default=str)

        def work(progress, should_stop, config=config):
            # one fixed strategy: a timing-based choice would make a shared link's map depend on machine load
            return run_grid(config, x=(settings.sx, list(settings.sxv)), y=(settings.sy, list(settings.syv)),
                            progress=lambda d, t, *_: progress(d, t), should_stop=should_stop, strategy="batched")

        grid = await_job(key, work, f"Sweeping {label}", unit="steps")
        if grid is None:
            return
        grids.append((label, grid))
    metric = settings.smetric
    panels = [(label, _metric(g, metric), g.diverged[0]) for label, g in grids]
    fig = plots.sweep_heatmaps(panels, x_name=settings.sx, y_name=settings.sy, x_values=list(settings.sxv),
                               y_values=list(settings.syv), metric=metric,
                               title=f"Final {metric.replace('_', ' ')} over the {settings.sx} × {settings.sy} grid")
    event = chart(fig, "heatmaps", selectable=True)
    st.caption("One colour scale for all panels; × cells diverged. Click a cell to open that run in the other views: it "
               "is retrained alone, which matches the cell up to float32 rounding (in unstable cells the rounding can "
               "grow into a visibly different path).")
    _open_selected(event, grids, settings)
    from ..sweep import robustness

    rows = []
    for label, g in grids:
        rob = robustness(g, "test_acc" if metric != "train_loss" else "train_loss")
        rows.append({"optimizer": label, "mean": rob.mean, "± std": rob.std, "best": rob.best,
                     "cells within 1% of best": f"{100 * rob.share_near_best:.0f}%", "diverged": rob.n_diverged,
                     "strategy": g.strategy, "seconds": round(g.wall_time, 2)})
    st.subheader("Robustness over the grid")
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    st.caption("Mean ± std of the final test accuracy over all cells (diverged cells count as 0): a small spread is "
               "what \"parameter-agnostic\" means in practice.")


def _metric(grid, metric: str) -> np.ndarray:
    name = {"test_acc": "final_test_acc", "test_loss": "final_test_loss", "train_loss": "final_train_loss",
            "lambda_max": "lambda_max"}[metric]
    return np.asarray(getattr(grid, name))[0]


def _grid_values(name: str) -> None:
    text = st.session_state[f"{name}_text"]
    settings, notes = from_query({**to_query(state.current()), name: text})
    state.update(settings, notes)


def _open_selected(event, grids, settings: Settings) -> None:
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    if not points:
        return
    point = points[0]
    custom = point.get("customdata")
    curve = point.get("curve_number", 0)
    if not custom or curve >= len(grids):
        return
    i, j = int(custom[0]), int(custom[1])
    _, grid = grids[curve]
    new = cell_settings(settings, grid.cell_config(0, i, j))
    state.update(new)
    st.session_state["widgets_for"] = None
    st.switch_page(PAGE_FILES["Loss_surface"], query_params=to_query(new))
