"""Hessian: λ_max and the trace over training, and the spectrum at a snapshot."""

from __future__ import annotations

import numpy as np
import streamlit as st

from .. import plots, scene
from ..optim import OPTIMIZERS
from . import state
from .common import chart, exports, open_page, runs_key, view_key
from .sidebar import view_option
from .training import await_job


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
    curvature = await_job("curvature:" + view_key(settings, "exact"),
                          lambda p, s: scene.curvature_curves(settings, runs, progress=p, should_stop=s),
                          "λ_max over training (Lanczos at each snapshot)", unit="snapshots")
    if curvature is None:
        return
    traces = []
    if settings.trace:
        traces = await_job("trace:" + runs_key(settings), lambda p, s: scene.trace_curves(runs, progress=p, should_stop=s),
                           "tr H over training (Hutch++ at each snapshot)", unit="snapshots")
        if traces is None:
            return
    hs = await_job("spectra:" + view_key(settings, "k", "snap", "exact"),
                   lambda p, s: scene.hessian_spectra(settings, runs, progress=p, should_stop=s),
                   "Spectra at the snapshot", unit="runs")
    if hs is None:
        return
    lrs = [r.config.hp.get("lr") for r in runs]
    fig = plots.curvature_figure([c.step for c in curvature], [c.lambda_max for c in curvature], labels=labels,
                                 errors=[c.residual for c in curvature], metric="λ_max",
                                 # 2/η is plain gradient descent's limit: drawn only for momentum-free SGD-type runs
                                 learning_rates=[lr if OPTIMIZERS[r.config.optimizer].gd_stability_limit(r.config.hp)
                                                 else None for lr, r in zip(lrs, runs)],
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
    density = list(zip(hs.density_grid, hs.density))
    f = plots.spectrum_figure(hs.spectra, density, labels=labels,
                              title=f"Top-{settings.k} eigenvalues and the spectral density at step {hs.snapshot_step}")
    chart(f, "spectrum")
    figures.append(f)
    st.caption("Spectral density: stochastic Lanczos quadrature of each run (Gaussian-smoothed). "
               f"Model size: {hs.n_params:,} parameters" + (" (the exact mode works up to 5,000)." if not hs.exact else "."))
    exports("Hessian", settings, runs, figures)
