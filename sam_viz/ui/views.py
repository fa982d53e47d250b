"""The pages' bodies: each ``render_*`` reads the settings, gets cached engine results and draws the figures."""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Sequence
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch

from .. import plots, scene
from ..data import TASKS
from ..learn import LATEX, WHERE
from ..optim import OPTIMIZERS
from ..presets import PRESETS
from ..records import Run
from ..report import html_report
from ..settings import PLANES, SERIES, SWEEP_METRICS, Settings, cell_settings, from_query, to_query
from . import state
from .sidebar import PAGE_FILES, page_frame, view_option
from .training import await_job, cached, trained_runs

CHART_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


# ------------------------------------------------------------------------------------------------ helpers


def chart(fig: go.Figure, key: str, *, selectable: bool = False):
    """A Plotly chart with alt text, a PNG toolbar button and a CSV of its data underneath."""
    config = {**CHART_CONFIG, "toImageButtonOptions": {**CHART_CONFIG["toImageButtonOptions"], "filename": f"sam-viz-{key}"}}
    kwargs = {"on_select": "rerun", "selection_mode": ("points",)} if selectable else {}
    event = st.plotly_chart(fig, key=key, config=config, alt=plots.describe(fig), **kwargs)
    # deferred: the CSV is built when the button is pressed, not on every rerun
    st.download_button("Data (CSV)", lambda: _figure_csv(fig), file_name=f"sam-viz-{key}.csv", mime="text/csv",
                       key=f"csv_{key}", icon=":material/download:", type="tertiary", on_click="ignore")
    return event


def _figure_csv(fig: go.Figure) -> str:
    frames = plots.figure_to_csv_frames(fig)
    if not frames:
        return ""
    return pd.concat([f.assign(series=name) for name, f in frames.items()], ignore_index=True).to_csv(index=False)


def _runs_key(settings: Settings) -> str:
    return scene.runs_key(settings.configs())


def _view_key(settings: Settings, *names: str) -> str:
    return _runs_key(settings) + json.dumps({n: getattr(settings, n) for n in names}, default=str)


def _surface_scene(settings: Settings, runs: Sequence[Run]) -> scene.SurfaceScene:
    with st.spinner("Computing the loss surface…"):
        return cached("surface", _view_key(settings, "plane", "span", "res", "seed"),
                      lambda: scene.surface_scene(settings, runs, settings.labels))


def _traces(sc: scene.SurfaceScene, runs: Sequence[Run]) -> list[plots.TrajectoryTrace]:
    out = []
    for t, r in zip(sc.trajectories, runs):
        eps = np.interp(t.step, r.step, r.eps_norm) if r.n_steps else None
        out.append(plots.TrajectoryTrace(t.label, t.alpha, t.beta, t.step, t.loss, t.plane_loss, t.off_plane,
                                         t.probe_alpha, t.probe_beta, eps))
    return out


def _run_notes(runs: Sequence[Run], labels: Sequence[str]) -> None:
    for r, label in zip(runs, labels):
        if r.diverged:
            st.warning(f"{label} diverged at step {r.diverged_step} (the loss became NaN or infinite); its path ends there.",
                       icon=":material/warning:")


def _exports(title: str, settings: Settings, runs: Sequence[Run], figures: Sequence[go.Figure], notes: Sequence[str] = ()) -> None:
    """Downloads: the runs (.npz + .json in a zip) and a self-contained HTML report of this view."""
    query = to_query(settings)
    link = "?" + urlencode(query)
    with st.expander("Export", icon=":material/ios_share:"):
        # deferred: the zip and the report (plotly.js embedded, ~5 MB) are built only when asked for
        st.download_button("Runs (.npz + .json, zip)", lambda: _runs_zip(runs), file_name="sam-viz-runs.zip",
                           mime="application/zip", icon=":material/folder_zip:", key=f"zip_{title}", on_click="ignore")
        st.download_button("HTML report of this view", lambda: html_report(title, figures, query, link, notes),
                           file_name=f"sam-viz-{title.lower().replace(' ', '-')}.html", mime="text/html",
                           icon=":material/description:", key=f"html_{title}", on_click="ignore")
        st.caption(f"Share this view: append `{link}` to the page's address (the URL bar already holds it).")


def _runs_zip(runs: Sequence[Run]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for i, r in enumerate(runs):
            npz = io.BytesIO()
            r.save(npz)
            zf.writestr(f"run{i}_{r.config.optimizer}.npz", npz.getvalue())
            zf.writestr(f"run{i}_{r.config.optimizer}.json", json.dumps(r.summary(), indent=2, default=str))
    return buffer.getvalue()


def _open_page(title: str, heading: str) -> tuple[Settings, list[Run], list[str]] | None:
    """The frame, heading and preset note of a page that draws runs, and the runs (None while training)."""
    settings = page_frame(title)
    st.title(heading)
    _preset_banner(settings)
    runs = _need_runs(settings)
    if runs is None:
        return None
    labels = settings.labels[: len(runs)]
    _run_notes(runs, labels)
    return settings, runs, labels


def _need_runs(settings: Settings) -> list[Run] | None:
    runs = trained_runs(settings)
    if runs is None:
        return None
    if not runs or runs[0].n_steps == 0:
        st.info("No step was computed yet. Press Train in the sidebar.")
        return None
    return runs


# ------------------------------------------------------------------------------------------------ home


def render_home() -> None:
    page_frame("Home")
    st.title("sam-viz: see how sharpness-aware optimizers behave")
    st.write(
        "Sharpness-aware minimization (SAM) and its relatives take each step with the gradient at a nearby worse "
        "point, θ + e, to steer training towards flat minima. sam-viz trains small models with SGD, Adam and eight "
        "SAM-family methods from one start and shows where each probed, how large and how noisy its perturbation "
        "was, how sharp the minimum it found is, and how sensitive it is to the radius ρ and the learning rate. "
        "Pick a preset below or set up an experiment in the sidebar; every view is a shareable link."
    )
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    st.caption(f"Engine device: **{device}** · torch {torch.__version__}")
    st.subheader("Presets")
    cols = st.columns(2)
    for i, preset in enumerate(PRESETS.values()):
        with cols[i % 2].container(border=True):
            st.markdown(f"**{preset.title}**")
            st.write(preset.explanation)
            st.page_link(PAGE_FILES[preset.page], label=f"Open in {preset.page.replace('_', ' ')}", icon=":material/arrow_forward:",
                         query_params={**preset.query, "preset": preset.name})


def _preset_banner(settings: Settings) -> None:
    if settings.preset in PRESETS:
        with st.expander(f"Preset: {PRESETS[settings.preset].title}", expanded=True, icon=":material/lightbulb:"):
            st.write(PRESETS[settings.preset].explanation)


# ------------------------------------------------------------------------------------------------ loss surface


def render_surface() -> None:
    opened = _open_page("Loss surface", "Loss surface")
    if opened is None:
        return
    settings, runs, labels = opened
    analytic = TASKS[settings.task].kind == "analytic"
    c = st.columns(5)
    with c[0]:
        if not analytic:
            view_option("plane", st.selectbox, options=PLANES)
    with c[1]:
        if not analytic:
            view_option("span", st.slider, min_value=0.05, max_value=5.0, step=0.05)
    with c[2]:
        view_option("res", st.slider, min_value=11, max_value=81, step=10)
    with c[3]:
        view_option("log", st.toggle)
    with c[4]:
        view_option("view3d", st.toggle)
    settings = state.current()
    sc = _surface_scene(settings, runs)
    traces = _traces(sc, runs)
    if settings.view3d:
        fig = plots.surface_figure(sc.surface, trajectories=traces, kind="surface3d", log_scale=settings.log,
                                   title="Loss surface (3-D)")
    else:
        longest = max(len(t.steps) for t in traces)
        fig = plots.playback_figure(sc.surface, traces, log_scale=settings.log, frame_stride=max(1, math.ceil(longest / 60)),
                                    title="Loss surface: press ▶ to replay training")  # ≤ 60 frames keep the page light
    chart(fig, "surface")
    st.caption(f"{sc.note}. Grid {sc.surface.loss.shape[1]}×{sc.surface.loss.shape[0]}, evaluator `{sc.surface.evaluator}`, "
               f"{sc.surface.seconds:.2f} s. Hover a path for its true loss, the loss at its projection and its "
               "distance from the plane: a contour is a slice, so a point off the plane need not sit on its contour.")
    figures = [fig]
    if not analytic and runs[0].config.task != "digits":
        figures.append(_boundary(settings, runs, labels))
    with st.container():
        view_option("series", st.selectbox, options=SERIES)
        metric = state.current().series
        if analytic and metric in ("test_acc", "test_loss"):  # no test set: the loss itself is what to watch
            metric = "train_loss"
        series = plots.series_figure(runs, metric, labels=labels)
        chart(series, "series")
        figures.append(series)
    _exports("Loss surface", settings, runs, figures, [sc.note])


def _boundary(settings: Settings, runs: Sequence[Run], labels: Sequence[str]) -> go.Figure:
    st.subheader("Decision boundary")
    c1, c2 = st.columns([1, 3])
    which = c1.selectbox("Run", range(len(runs)), format_func=lambda i: labels[i], key="boundary_run")
    n_snaps = len(runs[which].snapshot_step)
    with c2:
        view_option("snap", st.slider, label="Snapshot (-1 = last)", min_value=-1, max_value=n_snaps - 1)
    snap = state.current().snap
    b = cached("boundary", _view_key(settings, "snap") + str(which), lambda: scene.decision_boundary(runs[which], snap))
    fig = plots.decision_boundary_figure(b.xx, b.yy, b.probs, b.x_train, b.y_train,
                                         title=f"{labels[which]} at step {b.step}")
    chart(fig, "boundary")
    return fig


# ------------------------------------------------------------------------------------------------ perturbations


def render_perturbations() -> None:
    opened = _open_page("Perturbations", "Perturbations")
    if opened is None:
        return
    settings, runs, labels = opened
    sc = _surface_scene(settings, runs)
    fig = plots.perturbation_figure(sc.surface, _traces(sc, runs), log_scale=settings.log,
                                    title="Where each step probed: θ_t → θ_t + e_t")
    chart(fig, "perturbations")
    st.caption(f"{sc.note}. Arrows are the perturbations' shadows on the plane; hover a probe for the full ‖e‖.")
    figures = [fig]
    c1, c2 = st.columns(2)
    for col, metric in ((c1, "eps_norm"), (c2, "effective_rho")):
        with col:
            f = plots.series_figure(runs, metric, labels=labels)
            chart(f, metric)
            figures.append(f)
    c1, c2 = st.columns(2)
    with c1:
        f = plots.series_figure(runs, "effective_lr", labels=labels)
        chart(f, "effective_lr")
        figures.append(f)
    with c2:
        f = plots.series_figure(runs, "cos_eps_fullgrad", labels=labels)
        chart(f, "cos_eps_fullgrad")
        figures.append(f)
    f = plots.fsam_decomposition_figure(runs, labels=labels)
    chart(f, "fsam_decomposition")
    figures.append(f)
    with st.expander("How to read these charts", icon=":material/help:"):
        st.markdown(
            "- **‖e_t‖**: how far each step probed. SAM keeps it at ρ; LightSAM-I's is ρ‖s‖/√u_t ≤ ρ and shrinks; "
            "Monge-SAM's is ρ/√(1+‖s‖²).\n"
            "- **Effective radius / learning rate**: ρ and η for SAM; LightSAM-I's ρ/√u_t and η/√v_t; the median over "
            "coordinates for the per-coordinate methods (LightSAM-II/III, AdaSAM).\n"
            "- **cos(e_t, ∇L)**: the share of the perturbation along the full-batch gradient. With full batches SAM's "
            "is 1; F-SAM removes that component, so its cosine falls towards 0 (Li et al., CVPR 2024).\n"
            "- **Decomposition**: ‖e‖·cos is the full-gradient part and ‖e‖·√(1−cos²) the minibatch-noise part.")
    _exports("Perturbations", settings, runs, figures, [sc.note])


# ------------------------------------------------------------------------------------------------ Hessian


def render_hessian() -> None:
    opened = _open_page("Hessian", "Hessian spectrum")
    if opened is None:
        return
    settings, runs, labels = opened
    c = st.columns(4)
    with c[0]:
        view_option("k", st.slider, min_value=1, max_value=20)
    with c[1]:
        view_option("snap", st.slider, label="Snapshot (-1 = last)", min_value=-1, max_value=len(runs[0].snapshot_step) - 1)
    with c[2]:
        view_option("exact", st.toggle)
    with c[3]:
        view_option("trace", st.toggle)
    settings = state.current()
    with st.spinner("Estimating Hessian spectra (Lanczos)…"):
        # three caches: moving the snapshot or k recomputes only the spectra, not the curves over training
        curvature = cached("curvature", _view_key(settings, "exact"), lambda: scene.curvature_curves(settings, runs))
        traces = cached("trace", _runs_key(settings), lambda: scene.trace_curves(runs)) if settings.trace else []
        hs = cached("spectra", _view_key(settings, "k", "snap", "exact"), lambda: scene.hessian_spectra(settings, runs))
    lrs = [r.config.hp.get("lr") for r in runs]
    fig = plots.curvature_figure([c.step for c in curvature], [c.lambda_max for c in curvature], labels=labels,
                                 errors=[c.residual for c in curvature], metric="λ_max",
                                 # 2/η is plain gradient descent's limit: drawn only for momentum-free SGD-type runs
                                 learning_rates=[lr if r.config.optimizer in ("sgd", "sam", "fsam", "asam", "msam")
                                                 and r.config.hp.get("momentum", 0) == 0
                                                 and r.config.hp.get("base", "sgd") == "sgd" else None
                                                 for lr, r in zip(lrs, runs)],
                                 title="Largest Hessian eigenvalue over training")
    chart(fig, "lambda_max")
    method = "dense eigendecomposition (exact)" if hs.exact else "Lanczos with full re-orthogonalisation"
    worst = max(float(np.nanmax(c.residual)) for c in curvature)
    st.caption(f"Estimator: {method} on the full train set; error bars are Ritz residuals ‖Hq − λq‖ (a true eigenvalue "
               f"lies within them; largest here {worst:.1e}). Dotted lines (momentum-free SGD-type runs): 2/η, gradient "
               "descent's stability limit.")
    figures = [fig]
    if traces:
        f = plots.curvature_figure([c.step for c in traces], [c.trace for c in traces], labels=labels,
                                   errors=[c.trace_stderr for c in traces], metric="tr H",
                                   title="Hessian trace over training (Hutch++ ± standard error)")
        chart(f, "trace")
        figures.append(f)
    density = [(hs.density_grid, hs.density)] + [None] * (len(hs.spectra) - 1)  # the first run's SLQ density
    f = plots.spectrum_figure(hs.spectra, density, labels=labels,
                              title=f"Top-{settings.k} eigenvalues and the spectral density at step {hs.snapshot_step}")
    chart(f, "spectrum")
    figures.append(f)
    st.caption("Spectral density: stochastic Lanczos quadrature of the first run (Gaussian-smoothed). "
               f"Model size: {hs.n_params:,} parameters" + (" (the exact mode works up to 5,000)." if not hs.exact else "."))
    _exports("Hessian", settings, runs, figures)


# ------------------------------------------------------------------------------------------------ radius sensitivity


def render_sensitivity() -> None:
    settings = page_frame("Radius sensitivity")
    st.title("Radius sensitivity")
    _preset_banner(settings)
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


# ------------------------------------------------------------------------------------------------ learn


def render_learn() -> None:
    page_frame("Learn")
    st.title("Learn: the update rules")
    st.write("Notation: s_t = ∇L_B(θ_t) is the minibatch gradient at θ_t (the ascent direction), e_t the perturbation, "
             "g_t = ∇L_B(θ_t + e_t) the gradient at the probe; ρ the radius, η the learning rate.")
    for name, info in OPTIMIZERS.items():
        with st.expander(f"{info.label} — {info.description}", expanded=name in ("sam", "lightsam1")):
            st.latex(LATEX[name])
            st.markdown(f"**Paper:** [{info.paper}]({info.paper_url}) · **follows:** {info.reference_code} · "
                        f"**status:** {info.status}")
            st.markdown(f"**Where to see it:** {WHERE[name]}")
            st.dataframe(pd.DataFrame([{"hyperparameter": k, "default": str(s.default),
                                        "range": ", ".join(s.choices) if s.choices else ("true/false" if s.kind == "bool" else f"[{s.low:g}, {s.high:g}]"),
                                        "what it does": s.help} for k, s in info.hparams.items()]), hide_index=True)
