"""Radius sensitivity: final metrics over a ρ × η grid per optimizer, and their robustness."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from .. import plots, scene
from ..report import html_report
from ..settings import AXIS_FIELDS, SWEEP_METRICS, Settings, axis_range, cell_settings, fit_axes, spec, to_query
from ..sweep import Grid
from . import state
from .common import chart, preset_banner
from .sidebar import PAGE_FILES, page_frame, view_option
from .training import await_job, cached, cost_gate, peek

AXIS_LABELS = {"rho": "ρ (rho)", "lr": "learning rate (lr)", "width": "width (hidden units)"}
METRIC_LABELS = {"test_acc": "test accuracy", "test_loss": "test loss", "train_loss": "train loss",
                 "lambda_max": "λ_max (top Hessian eigenvalue)"}


def render_sensitivity() -> None:
    settings = page_frame("Radius sensitivity")
    st.title("Radius sensitivity")
    preset_banner(settings)
    c = st.columns([1.4, 1, 1, 0.8])
    with c[0]:
        view_option("smetric", st.selectbox, options=SWEEP_METRICS, format_func=METRIC_LABELS.get)
    with c[1]:
        view_option("sx", st.selectbox, options=spec("sx").choices, format_func=AXIS_LABELS.get)
    with c[2]:
        view_option("sy", st.selectbox, options=spec("sy").choices, format_func=AXIS_LABELS.get)
    with c[3]:
        view_option("sseeds", st.number_input, min_value=int(spec("sseeds").low), max_value=int(spec("sseeds").high),
                    step=1)
    settings = state.current()
    fitted = fit_axes(settings)
    if fitted != settings:  # an axis was switched (ρ ↔ width): its box takes that axis's default values
        state.change(sxv=fitted.sxv, syv=fitted.syv)
        settings = fitted
    c = st.columns(2)
    with c[0]:
        _values_box("sxv", f"{scene.AXIS_NAMES.get(settings.sx, settings.sx)} values (x)")
    with c[1]:
        _values_box("syv", f"{scene.AXIS_NAMES.get(settings.sy, settings.sy)} values (y)")
    settings = state.current()
    plan = scene.sweep_plan(settings)
    if plan.entries and plan.skipped:
        st.caption("Not swept: " + "; ".join(f"{label} {reason}" for label, reason in plan.skipped) + ".")
    if not plan.entries:
        st.info(plan.message, icon=":material/info:")
        return
    grids = _sweep(settings, plan.entries)
    if not grids:
        return
    fig = _heatmaps(settings, grids)
    event = chart(fig, "heatmaps", selectable=True)
    _open_selected(event, grids, settings)
    table = _robustness(settings, grids)
    cost = _cost(settings, grids)
    _export(settings, grids, fig, table, cost)


# ------------------------------------------------------------------------------------------------ inputs


def _values_box(name: str, label: str) -> None:
    """A text box for an axis's values: it always shows the values in use, with one note under it when what was
    typed had to be changed."""
    ss = st.session_state
    values = getattr(state.current(), name)
    key, shown_for = f"{name}_text", f"{name}_text_for"
    if key not in ss or ss.get(shown_for) != values:  # first visit, another page, or changed elsewhere (preset, URL)
        ss[key] = _text(values)
        ss[shown_for] = values
    low, high = axis_range(getattr(state.current(), AXIS_FIELDS[name]), name)
    st.text_input(label, key=key, on_change=_grid_values, args=(name,),
                  help=f"Up to {scene.MAX_SWEEP_VALUES} numbers in [{low:g}, {high:g}], separated by commas or "
                       "spaces" + (" (widths: whole numbers)." if getattr(state.current(), AXIS_FIELDS[name]) == "width"
                                   else "."))
    note = ss.get(f"{name}_note")
    if note and note[0] == values:
        st.warning(note[1], icon=":material/edit_note:")


def _text(values: Sequence[float]) -> str:
    return ",".join(f"{v:g}" for v in values)


def _grid_values(name: str) -> None:
    """Box callback: parse, show the values used in the box, keep a note for what was changed."""
    ss = st.session_state
    current = state.current()
    axis = getattr(current, AXIS_FIELDS[name])
    low, high = axis_range(axis, name)
    values, note = scene.parse_sweep_values(ss[f"{name}_text"], low, high, getattr(current, name),
                                            whole=axis == "width")
    ss[f"{name}_text"] = _text(values)
    ss[f"{name}_text_for"] = values
    ss[f"{name}_note"] = (values, note) if note else None
    if values != getattr(current, name):
        state.change(**{name: values})


# ------------------------------------------------------------------------------------------------ the sweep


def _sweep_cost(settings: Settings, todo: Sequence[tuple[str, Any]]) -> tuple[float, str, str]:
    """``cost_gate``'s plan of a sweep: its time from a few timed steps per optimizer still to compute."""
    x, y, seeds = (settings.sx, settings.sxv), (settings.sy, settings.syv), settings.sseeds
    with st.spinner("Timing a few steps to estimate how long the sweep takes…"):
        try:
            seconds = sum(cached("sweep estimate", scene.grid_key(config, x, y, seeds),
                                 lambda config=config: scene.sweep_estimate(config, x, y, seeds))
                          for _, config in todo)
        except ValueError:  # the sweep itself will fail with the same error, and say so
            seconds = 0.0
    n_cells = seeds * len(settings.sxv) * len(settings.syv)
    size = (f"{len(todo)} optimizer{'s' if len(todo) > 1 else ''} × {n_cells} cells × {settings.steps:,} steps "
            f"= {len(todo) * n_cells * settings.steps:,} cell-steps")
    return (seconds, f"This sweep trains {size}",
            f"(From {scene.PROBE_STEPS} timed steps; λ_max adds a little.) Fewer values, seeds or steps make it faster.")


def _sweep(settings: Settings, entries: Sequence[tuple[str, Any]]) -> list[tuple[str, Grid]] | None:
    """Every optimizer's grid as one job (one bar with time left, one Stop); grids computed before are reused."""
    x, y, seeds = (settings.sx, settings.sxv), (settings.sy, settings.syv), settings.sseeds
    keys = [scene.grid_key(config, x, y, seeds) for _, config in entries]
    known = [peek("grid", k) for k in keys]
    key = "sweep:" + json.dumps(keys)
    todo = [e for e, g in zip(entries, known) if g is None]
    if todo and not cost_gate(key, functools.partial(_sweep_cost, settings, todo)):
        return None
    labels = [label for label, _ in entries]
    work = functools.partial(scene.sweep_all, entries, x, y, seeds, known)
    result = await_job(key, work, "Sweeping " + ", ".join(labels), unit="cell-steps")
    if result is None:
        return None
    for (_, grid), k in zip(result, keys):
        if not grid.stopped:
            cached("grid", k, lambda grid=grid: grid)
    for label, grid in result:
        if grid.stopped:
            reached = grid.n_steps[grid.n_steps > 0]
            span = (f"after {reached.min():,}" + (f"–{reached.max():,}" if reached.max() > reached.min() else "")
                    if reached.size else "after 0")
            st.info(f"{label}'s map shows its cells where the stop left them: {span} of {settings.steps:,} steps "
                    "(blank cells never started).", icon=":material/pause_circle:")
    missing = labels[len(result):]
    if missing:
        st.info(f"Not computed (stopped before they started): {', '.join(missing)}. Press Train to compute them; the "
                "finished grids are kept.", icon=":material/pause_circle:")
    return result


# ------------------------------------------------------------------------------------------------ results


def _heatmaps(settings: Settings, grids: Sequence[tuple[str, Grid]]) -> go.Figure:
    metric, seeds = scene.heatmap_metric(grids, settings.smetric), settings.sseeds
    if metric != settings.smetric:
        st.caption(f"This task has no test set: the maps show the final {METRIC_LABELS[metric]} instead of the "
                   f"{METRIC_LABELS[settings.smetric]}.")
    panels = [(label, scene.sweep_panel(g, metric)) for label, g in grids]
    over = f"mean of {seeds} seeds, " if seeds > 1 else ""
    fig = plots.sweep_heatmaps([(label, p.mean, p.diverged) for label, p in panels], x_name=settings.sx,
                               y_name=settings.sy, x_values=list(settings.sxv), y_values=list(settings.syv),
                               metric=metric, spreads=[p.std for _, p in panels] if seeds > 1 else None, seeds=seeds,
                               best_per_column=settings.sx == "width",
                               title=f"Final {METRIC_LABELS[metric]} over the {scene.AXIS_NAMES[settings.sx]} × "
                                     f"{scene.AXIS_NAMES[settings.sy]} grid"
                                     + (f" ({over.rstrip(', ')})" if over else ""))
    return fig


def _open_note(settings: Settings, grids: Sequence[tuple[str, Grid]]) -> None:
    metric = scene.heatmap_metric(grids, settings.smetric)
    partly = sum(int(((p.n_diverged > 0) & ~p.diverged).sum()) for p in (scene.sweep_panel(g, metric) for _, g in grids))
    seeds = (f" Each cell is the mean over seeds {settings.seed}–{settings.seed + settings.sseeds - 1} (hover: ± std); "
             f"a click opens seed {settings.seed}." if settings.sseeds > 1 else "")
    diverged = (f" In {partly} cell(s) some seeds diverged: those show the mean of the others." if partly else "")
    if settings.sx == "width":
        diverged += (f" Red rings: the best {scene.AXIS_NAMES[settings.sy]} at each width; a flat line means it "
                     "transfers across widths.")
    st.caption("One colour scale for all panels; × cells diverged (every seed). Click a cell to open that run in the "
               "other views: it is retrained alone, which matches the cell up to float32 rounding (in unstable cells "
               "the rounding can grow into a visibly different path)." + seeds + diverged)


def selected_settings(event: Any, grids: Sequence[tuple[str, Grid]], settings: Settings) -> Settings | None:
    """The settings of the run behind the clicked cell (its first seed), or None when the event names no cell."""
    cell = plots.sweep_selection(event)
    if cell is None:
        return None
    panel, i, j = cell
    if panel >= len(grids):
        return None
    grid = grids[panel][1]
    if i >= len(grid.y_values) or j >= len(grid.x_values):
        return None
    return cell_settings(settings, grid.cell_config(0, i, j))


def _open_selected(event: Any, grids: Sequence[tuple[str, Grid]], settings: Settings) -> None:
    _open_note(settings, grids)
    new = selected_settings(event, grids, settings)
    if new is None:
        return
    state.update(new)
    st.session_state["widgets_for"] = None
    st.switch_page(PAGE_FILES["Loss_surface"], query_params=to_query(new))


def _robustness(settings: Settings, grids: Sequence[tuple[str, Grid]]) -> pd.DataFrame:
    metric = scene.robustness_metric(grids, settings.smetric)
    table = pd.DataFrame(scene.robustness_rows(grids, metric))
    st.subheader("Robustness over the grid")
    number = st.column_config.NumberColumn
    shown = table.drop(columns=["std over seeds"]) if (table["seeds"] == 1).all() else table  # the CSV keeps it
    st.dataframe(shown, hide_index=True, column_config={
        "mean": number(format="%.4f"), "std over cells": number(format="%.4f"),
        "std over seeds": number(format="%.4f", help="Std over seeds of the grid mean (needs 2 or more seeds)."),
        "std over all values": number(format="%.4f"), "best cell": number(format="%.4f"),
        "cells within 1% of best": number(format="percent")})
    failed = "0" if metric.endswith("acc") else "∞"
    st.caption(f"Final {METRIC_LABELS[metric]} over the grid (diverged cells count as {failed}). \"mean\" is over every "
               "cell and seed; \"std over cells\" is the spread of the seed-averaged cells (what ρ and η change: a small "
               "one is what \"parameter-agnostic\" means in practice); \"std over seeds\" is the spread of the grid "
               "mean from one seed to the next.")
    return table


def _cost(settings: Settings, grids: Sequence[tuple[str, Grid]]) -> go.Figure:
    """Every cell's final metric against the gradient evaluations its training took: methods that probe less
    (ESAM, LookSAM) or more (mSAM, SSAM's Fisher passes) than SAM compared at their cost."""
    metric = scene.heatmap_metric(grids, settings.smetric)
    final = metric if metric == "lambda_max" else f"final_{metric}"
    points = [(label, g.total_grad_evals, getattr(g, final)) for label, g in grids]
    fig = plots.cost_figure(points, metric_title=f"final {METRIC_LABELS[metric]}",
                            higher_is_better=metric.endswith("acc"),
                            title=f"Final {METRIC_LABELS[metric]} against the gradient evaluations of training")
    with st.expander("Cost: the same cells against their gradient evaluations", icon=":material/speed:"):
        chart(fig, "sweep_cost")
        st.caption("One point per cell and seed; x is the number of gradient evaluations the training took, in units "
                   "of its batch (SGD: one per step, SAM: two, ESAM: fewer samples per step).")
    return fig


def export_files(settings: Settings, grids: Sequence[tuple[str, Grid]], fig: go.Figure,
                 table: pd.DataFrame, cost: go.Figure | None = None) -> dict[str, tuple[str, str, Callable[[], bytes | str]]]:
    """The Export panel's downloads: label → (file name, MIME type, a function building the bytes)."""
    query = to_query(settings)
    link = "?" + urlencode(query)
    notes = [f"{row['optimizer']}: final {row['metric']} {row['mean']:.4g} (std over cells {row['std over cells']:.3g}"
             f", best cell {row['best cell']:.4g}, diverged {row['diverged']})" for row in table.to_dict("records")]
    return {
        "Grids (.npz + .json, zip)": ("sam-viz-sweep.zip", "application/zip", lambda: scene.sweep_zip(grids)),
        "Robustness table (CSV)": ("sam-viz-robustness.csv", "text/csv", lambda: table.to_csv(index=False)),
        "Every cell (CSV)": ("sam-viz-sweep-cells.csv", "text/csv",
                             lambda: scene.sweep_cells(grids).to_csv(index=False)),
        "HTML report of this view": ("sam-viz-radius-sensitivity.html", "text/html",
                                     lambda: html_report("Radius sensitivity", [fig] + ([cost] if cost else []),
                                                         query, link, notes)),
    }


def _export(settings: Settings, grids: Sequence[tuple[str, Grid]], fig: go.Figure, table: pd.DataFrame,
            cost: go.Figure) -> None:
    with st.expander("Export", icon=":material/ios_share:"):
        # deferred: each file is built only when its button is pressed
        for k, (label, (name, mime, build)) in enumerate(export_files(settings, grids, fig, table, cost).items()):
            st.download_button(label, build, file_name=name, mime=mime, key=f"sweep_export_{k}",
                               icon=":material/download:", on_click="ignore")
        st.caption(f"Share this view: append `?{urlencode(to_query(settings))}` to the page's address (the URL bar "
                   "already holds it).")
