"""Hessian: λ_max and the trace over training, and the spectrum at a snapshot."""

from __future__ import annotations

import numpy as np
import streamlit as st

from .. import plots, scene
from ..curvature import LANCZOS_PRODUCTS
from ..jobs import REGISTRY
from ..optim import OPTIMIZERS
from . import state
from .common import chart, exports, open_page, runs_key, view_key
from .sidebar import view_option
from .training import await_job, cached, cost_gate, short_key


def render_hessian() -> None:
    opened = open_page("Hessian", "Hessian spectrum")
    if opened is None:
        return
    settings, runs, labels, seed_runs = opened
    c = st.columns(4)
    with c[0]:
        view_option("k", st.slider)
    with c[1]:
        view_option("snap", st.slider, label="Snapshot (-1 = last)", min_value=-1, max_value=len(runs[0].snapshot_step) - 1)
    with c[2]:
        view_option("exact", st.toggle)
    with c[3]:
        view_option("trace", st.toggle)
    settings = state.current()
    # three jobs: moving the snapshot or k recomputes only the spectra, not the curves over training
    key = "curvature:" + view_key(settings, "exact")
    if not _announced(key, settings, runs):
        return
    curvature = await_job(key, lambda p, s: scene.curvature_curves(settings, runs, progress=p, should_stop=s),
                          "λ_max over training (" + ("dense eigendecomposition" if scene.exact_hessian(settings, runs)
                                                    else "Lanczos") + " at each snapshot)", unit="snapshots")
    if curvature is None:
        return
    # each chart is drawn as soon as its job is done: a slow trace or spectrum never hides λ_max
    drawn = _computed(curvature, labels)  # a Stop may leave runs without a single snapshot
    if not drawn:
        return
    fig = plots.curvature_figure([curvature[k].step for k in drawn], [curvature[k].lambda_max for k in drawn],
                                 labels=[labels[k] for k in drawn], errors=[curvature[k].residual for k in drawn],
                                 metric="λ_max",
                                 # 2/η is plain gradient descent's limit: drawn only for momentum-free SGD-type runs
                                 learning_rates=[_gd_limit_lr(runs[k]) for k in drawn],
                                 title="Largest Hessian eigenvalue over training")
    chart(fig, "lambda_max")
    method = "dense eigendecomposition (exact)" if scene.exact_hessian(settings, runs) else "Lanczos with full re-orthogonalisation"
    worst = max(float(np.nanmax(curvature[k].residual)) for k in drawn)
    st.caption(f"Estimator: {method} on the full train set; error bars are Ritz residuals ‖Hq − λq‖ (a true eigenvalue "
               f"lies within them; largest here {worst:.1e}). Dotted lines (momentum-free SGD-type runs): 2/η, gradient "
               "descent's stability limit.")
    figures = [fig]
    curvature_key = key
    if REGISTRY.get(key) is not None and REGISTRY.get(key).stopped and not _go_on_after_stop(key):
        exports("Hessian", settings, runs, figures)
        return
    if settings.trace:
        key = "trace:" + runs_key(settings)
        if not _announced(key, settings, runs, with_trace=True):
            return
        traces = await_job(key, lambda p, s: scene.trace_curves(runs, progress=p, should_stop=s),
                           "tr H over training (Hutch++ at each snapshot)", unit="snapshots")
        if traces is None:
            return
        kept = _computed(traces, labels)
        if kept:
            f = plots.curvature_figure([traces[k].step for k in kept], [traces[k].trace for k in kept],
                                       labels=[labels[k] for k in kept], errors=[traces[k].trace_stderr for k in kept],
                                       metric="tr H", title="Hessian trace over training (Hutch++ ± standard error)")
            chart(f, "trace")
            figures.append(f)
    spectra_key = "spectra:" + view_key(settings, "k", "snap", "exact")
    if scene.exact_hessian(settings, runs) and not _spectra_announced(spectra_key, curvature_key, settings, runs):
        exports("Hessian", settings, runs, figures)
        return
    hs = await_job(spectra_key,
                   lambda p, s: scene.hessian_spectra(settings, runs, progress=p, should_stop=s),
                   "Spectra at the snapshot", unit="runs")
    if hs is None:
        return
    density = list(zip(hs.density_grid, hs.density))
    f = plots.spectrum_figure(hs.spectra, density, labels=labels,
                              title=f"Top-{settings.k} eigenvalues and the spectral density at step {hs.snapshot_step}")
    chart(f, "spectrum")
    figures.append(f)
    st.caption("Spectral density: stochastic Lanczos quadrature of each run (Gaussian-smoothed). "
               f"Model size: {hs.n_params:,} parameters" + (" (the exact mode works up to 5,000)." if not hs.exact else "."))
    exports("Hessian", settings, runs, figures)


def _announced(key: str, settings, runs, with_trace: bool = False) -> bool:
    """The job's cost before it starts (timed products × the products planned), and a go-ahead when it is slow."""
    def plan() -> tuple[float, str, str]:
        est = cached("curvature estimate", key,
                     lambda: scene.curvature_estimate(settings, runs, with_trace=with_trace))
        exact = scene.exact_hessian(settings, runs) and not with_trace
        what = "tr H (Hutch++)" if with_trace else ("the exact λ_max" if exact else "λ_max")
        work = (f"Computing {what} at {est.snapshots:,} snapshots: ~{est.products:,} Hessian-vector products of "
                f"{est.product_seconds * 1e3:.1f} ms")
        hint = (f"Switch off Exact (Lanczos needs about {LANCZOS_PRODUCTS} products a snapshot, not one per "
                "parameter) or compare fewer runs." if exact
                else "Fewer runs, or fewer steps between snapshots, make it faster.")
        return est.seconds, work, hint

    return cost_gate(key, plan)


def _go_on_after_stop(key: str) -> bool:
    """After a Stop of λ_max, the trace and spectra wait for a press: a Stop means "no more computing now"."""
    agreed = st.session_state.setdefault("hessian_go_on", set())
    if key in agreed:
        return True
    st.button("Compute the trace and spectra too", icon=":material/play_arrow:", key=f"go_on_{short_key(key)}",
              on_click=agreed.add, args=(key,),
              help="λ_max was stopped, so the other Hessian jobs did not start.")
    return False


def _spectra_announced(spectra_key: str, curvature_key: str, settings, runs) -> bool:
    """The exact spectra's cost (one dense eigendecomposition per run) before they start, gated as λ_max is."""
    def plan() -> tuple[float, str, str]:
        est = cached("curvature estimate", curvature_key, lambda: scene.curvature_estimate(settings, runs))
        seconds = est.seconds / max(1, est.snapshots) * len(runs)
        work = f"Computing the exact spectra of {len(runs)} run(s) at the snapshot (one dense eigendecomposition each)"
        return seconds, work, "Switch off Exact (Lanczos finds the top eigenvalues in a few products) or compare fewer runs."

    return cost_gate(spectra_key, plan)


def _computed(curves: list, labels: list[str]) -> list[int]:
    """The runs with at least one computed snapshot; a note names the others (a Stop came before them)."""
    kept = [k for k, c in enumerate(curves) if len(c.step)]
    missing = [labels[k] for k in range(len(curves)) if k not in kept]
    if missing:
        st.info(f"Not computed (stopped before their first snapshot): {', '.join(missing)}.",
                icon=":material/info:")
    return kept


def _gd_limit_lr(run) -> float | None:
    lr = run.config.hp.get("lr")
    return lr if OPTIMIZERS[run.config.optimizer].gd_stability_limit(run.config.hp) else None
