"""What every page shares: charts with alt text and CSV, the runs a page draws, its notes and its Export panel."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Sequence
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from .. import plots, scene
from ..data import task_info
from ..evidence import EVIDENCE
from ..presets import PRESETS
from ..records import Run
from ..report import html_report
from ..settings import EXPERIMENT_FIELDS, SERIES, Settings, format_runs, to_query
from . import state
from .sidebar import page_frame, view_option
from .training import await_job, cached, trained_runs

# Streamlit 1.67's chart theme replaces this placeholder colour in a figure's spec by the theme's body-text colour
# (dark on the light theme, light on the dark one; st.context.theme.type is not reliable on the first run). Without
# the replacement it is a near-black navy. Checked in Chromium in both themes (tests/test_figures_e2e.py).
BODY_TEXT = "#000037"
CHART_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


def chart(fig: go.Figure, key: str, *, selectable: bool = False, shared: str | None = None,
          on_select: Callable[[], None] | None = None):
    """A Plotly chart with alt text, a PNG toolbar button and a CSV of its data underneath.

    ``shared``: the view key of a figure from ``shared_figure``, which every visitor of the view is shown: it was
    styled when it was built, so it is drawn as it is (never changed), and its alt text is worked out once too.
    ``selectable``: a click on a point reruns the page (the selection is returned); ``on_select``: instead, a
    click calls this (before the rerun; the selection is in ``st.session_state[key]``), once per new selection.
    """
    config = {**CHART_CONFIG, "toImageButtonOptions": {**CHART_CONFIG["toImageButtonOptions"], "filename": f"sam-viz-{key}"}}
    kwargs = {"on_select": on_select or "rerun", "selection_mode": ("points",)} if selectable or on_select else {}
    if shared is not None:
        event = st.plotly_chart(fig, key=key, config=config, alt=cached("alt", shared, lambda: plots.describe(fig)),
                                **kwargs)
    else:
        # Ticks and axis titles in the theme's body-text colour (Streamlit's faded grey washes out on a projector)
        plots.readable_fonts(fig)  # 14 px ticks on every subplot axis too (builders set the first ones)
        if state.current().present:  # built for this rerun alone, so it may be changed in place
            plots.presenter_fonts(fig)
        with plots.text_color(fig, BODY_TEXT):
            event = st.plotly_chart(fig, key=key, config=config, alt=plots.describe(fig), **kwargs)
    # deferred: the CSV is built when the button is pressed, not on every rerun
    st.download_button("Data (CSV)", lambda: figure_csv(fig), file_name=f"sam-viz-{key}.csv", mime="text/csv",
                       key=f"csv_{key}", icon=":material/download:", type="tertiary", on_click="ignore")
    return event


def shared_figure(key: str, build: Callable[[], go.Figure]) -> go.Figure:
    """The figure ``build()`` makes for the view ``key`` (every input of the figure must be in the key), built once
    per server and shared by every visitor: building a figure is pure Python under the GIL, so thirty visitors of
    one link would otherwise build it thirty times, one after another. It is styled for the screen as it is built
    (projector-sized ticks, text in ``BODY_TEXT``, which reads on the white page of an export too). Draw it with
    ``chart(..., shared=key)``; nobody may change it afterwards. In presenter mode its fonts are projector-sized: the
    mode is part of the cache key, so each mode has its own figure."""
    present = state.current().present

    def styled() -> go.Figure:
        fig = plots.readable_fonts(build())
        if present:
            plots.presenter_fonts(fig)
        plots.set_text_color(fig, BODY_TEXT)
        return fig

    return cached("figure", key + ("\0present" if present else ""), styled)


def figure_csv(fig: go.Figure) -> str:
    frames = plots.figure_to_csv_frames(fig)
    if not frames:
        return ""
    return pd.concat([f.assign(series=name) for name, f in frames.items()], ignore_index=True).to_csv(index=False)


def runs_key(settings: Settings) -> str:
    return scene.runs_key(settings.configs())


def view_key(settings: Settings, *names: str) -> str:
    return runs_key(settings) + json.dumps({n: getattr(settings, n) for n in names}, default=str)


def surface_scene(settings: Settings, runs: Sequence[Run]) -> scene.SurfaceScene | None:
    """The loss surface of the view, as a job (progress, time left, Stop keeps the coarser grid); None while it
    is computed."""
    def work(progress, should_stop):
        return scene.surface_scene(settings, runs, settings.labels, progress=progress, should_stop=should_stop)

    return await_job("surface:" + view_key(settings, "plane", "span", "res", "seed"), work,
                     "Computing the loss surface", unit="grid points")


def path_traces(sc: scene.SurfaceScene, runs: Sequence[Run]) -> list[plots.TrajectoryTrace]:
    out = []
    for t, r in zip(sc.trajectories, runs):
        eps = np.interp(t.step, r.step, r.eps_norm) if r.n_steps else None
        out.append(plots.TrajectoryTrace(t.label, t.alpha, t.beta, t.step, t.loss, t.plane_loss, t.off_plane,
                                         t.probe_alpha, t.probe_beta, eps))
    return out


def run_notes(runs: Sequence[Run], labels: Sequence[str]) -> None:
    for r, label in zip(runs, labels):
        if r.diverged:
            st.warning(f"{label} diverged at step {r.diverged_step} (the loss became NaN or infinite); its path ends "
                       f"there. {divergence_advice(r)}", icon=":material/warning:")


def metric_chart(settings: Settings, runs: Sequence[Run], labels: Sequence[str],
                 seed_runs: Sequence[Sequence[Run]] | None = None) -> go.Figure:
    """A per-step metric the viewer picks (test accuracy by default), drawn for every run."""
    # analytic tasks have no data to classify and no test set: the loss itself is what to watch
    analytic = task_info(settings.task).kind == "analytic"
    metric = view_option("series", st.selectbox, options=[m for m in SERIES if not analytic or not m.startswith("test_")])
    key = view_key(settings, "seeds") + json.dumps({"series": metric, "labels": list(labels)})
    fig = shared_figure(key, lambda: plots.series_figure(runs, metric, labels=labels,
                                                         seed_runs=seeds_or_none(seed_runs)))
    chart(fig, "series", shared=key)
    return fig


def seeds_or_none(seed_runs: Sequence[Sequence[Run]] | None) -> Sequence[Sequence[Run]] | None:
    """Each label's runs over seeds for mean ± std bands, or None with a single seed (plain lines)."""
    return seed_runs if seed_runs and len(seed_runs[0]) > 1 else None


def divergence_advice(r: Run) -> str:
    """What to change after a divergence: a smaller step, with the task's stable one where it has one."""
    lr = r.config.hp.get("lr")
    if lr is None:
        return "A smaller learning rate keeps it stable."
    suggested = task_info(r.config.task).suggested_lr
    if suggested is not None and suggested < lr:
        return f"Its learning rate {lr:g} is too large here: {suggested:g} is stable on {r.config.task}."
    return f"Its learning rate {lr:g} is too large here: try {lr / 10:g}."


def exports(title: str, settings: Settings, runs: Sequence[Run], figures: Sequence[go.Figure], notes: Sequence[str] = ()) -> None:
    """Downloads: the runs (.npz + .json in a zip) and a self-contained HTML report of this view."""
    query = to_query(settings)
    link = "?" + urlencode(query)
    with st.expander("Export", icon=":material/ios_share:"):
        # deferred: the zip and the report (plotly.js embedded, ~5 MB) are built only when asked for
        st.download_button("Runs (.npz + .json, zip)", lambda: runs_zip(runs), file_name="sam-viz-runs.zip",
                           mime="application/zip", icon=":material/folder_zip:", key=f"zip_{title}", on_click="ignore")
        base_url = st.context.url  # this page's address without the query: the report's link is then absolute
        st.download_button("HTML report of this view",
                           lambda: html_report(title, figures, query, link, notes, base_url=base_url),
                           file_name=f"sam-viz-{title.lower().replace(' ', '-')}.html", mime="text/html",
                           icon=":material/description:", key=f"html_{title}", on_click="ignore")
        st.download_button("Figures for a paper (PNG + PDF, zip)", lambda: figures_zip(title, figures),
                           file_name=f"sam-viz-{title.lower().replace(' ', '-')}-figures.zip",
                           mime="application/zip", icon=":material/image:", key=f"img_{title}", on_click="ignore",
                           help="Each figure without its Play buttons and slider, showing the whole runs, on "
                                "white. Rendered by the server's Chromium: takes a few seconds per figure.")
        st.caption(f"Share this view: append `{link}` to the page's address (the URL bar already holds it).")


def figures_zip(title: str, figures: Sequence[go.Figure]) -> bytes:
    """Every figure of the view as a PNG (2× pixels) and a PDF, in one zip (one browser for all of them)."""
    stem = title.lower().replace(" ", "-")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        try:
            for fmt in ("png", "pdf"):
                for i, image in enumerate(plots.figure_images(figures, fmt)):
                    zf.writestr(f"sam-viz-{stem}-{i + 1}.{fmt}", image)
        except RuntimeError as exc:  # no Chromium on this server: say so inside the download
            zf.writestr("README.txt", f"The figures could not be rendered here: {exc}\n")
    return buffer.getvalue()


def runs_zip(runs: Sequence[Run]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for i, r in enumerate(runs):
            npz = io.BytesIO()
            r.save(npz)
            zf.writestr(f"run{i}_{r.config.optimizer}.npz", npz.getvalue())
            zf.writestr(f"run{i}_{r.config.optimizer}.json", json.dumps(r.summary(), indent=2, default=str))
    return buffer.getvalue()


def open_page(title: str, heading: str) -> tuple[Settings, list[Run], list[str], list[list[Run]]] | None:
    """The frame, heading and preset note of a page that draws runs; then (None while training) the settings, the
    first seed's runs, their labels and, per label, the runs of every seed (for mean ± std)."""
    settings = page_frame(title)
    st.title(heading)
    preset_banner(settings)
    every = need_runs(settings)
    if every is None:
        return None
    n = len(settings.runs)
    runs = every[:n]
    seed_runs = [every[i::n] for i in range(n)]
    labels = settings.labels[: len(runs)]
    seeded = [f"{label} (seed {settings.seed + k})" if settings.seeds > 1 else label
              for k in range(settings.seeds) for label in labels]
    run_notes(every, seeded)
    return settings, runs, labels, seed_runs


def need_runs(settings: Settings) -> list[Run] | None:
    runs = trained_runs(settings)
    if runs is None:
        return None
    if not runs or runs[0].n_steps == 0:
        st.info("No step was computed yet. Press Train in the sidebar.")
        return None
    return runs





def preset_banner(settings: Settings) -> None:
    """The preset's explanation; it stays while its advice is followed, and says which settings now differ."""
    if settings.preset not in PRESETS:
        return
    preset = PRESETS[settings.preset]
    with st.expander(f"Preset: {preset.title}", expanded=True, icon=":material/lightbulb:"):
        st.write(preset.explanation)
        changed = preset_changes(preset.settings(), settings)
        if changed:
            st.caption(":material/edit: Changed since the preset opened: " + ", ".join(changed)
                       + ". The explanation describes the preset's own settings.")
    evidence = EVIDENCE.get(preset.name)
    if evidence is not None:  # the measured table the explanation quotes, with the command that produced it
        with st.expander(evidence.title, expanded=True, icon=":material/table_chart:"):
            st.table(pd.DataFrame(list(evidence.rows), columns=list(evidence.columns)).set_index(evidence.columns[0]))
            st.caption(f"{evidence.setup} Produced by `{evidence.command}`; full output in `{evidence.source}`.")


def preset_changes(preset: Settings, settings: Settings) -> list[str]:
    """``"batch 4 → 128"`` for each experiment setting that differs from the preset's."""
    out = []
    for name in EXPERIMENT_FIELDS:
        old, new = getattr(preset, name), getattr(settings, name)
        if name != "preset" and old != new and not (old != old and new != new):  # NaN start points are equal
            text = format_runs if name == "runs" else str
            out.append(f"{name} {text(old)} → {text(new)}")
    return out
