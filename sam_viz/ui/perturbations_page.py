"""Perturbations: where each step probed, how large and how aligned its perturbation was."""

from __future__ import annotations

import streamlit as st

from .. import plots
from .common import chart, exports, metric_chart, open_page, path_traces, seeds_or_none, surface_scene
from .method_views import method_charts


def render_perturbations() -> None:
    opened = open_page("Perturbations", "Perturbations")
    if opened is None:
        return
    settings, runs, labels, seed_runs = opened
    sc = surface_scene(settings, runs)
    if sc is None:
        return
    fig = plots.perturbation_figure(sc.surface, path_traces(sc, runs), log_scale=settings.log,
                                    title="Where each step probed: θ_t → θ_t + e_t")
    chart(fig, "perturbations")
    st.caption(f"{sc.note}. Arrows are the perturbations' shadows on the plane; hover a probe for the full ‖e‖.")
    figures = [fig]
    bands = seeds_or_none(seed_runs)
    c1, c2 = st.columns(2)
    for col, metric in ((c1, "eps_norm"), (c2, "effective_rho")):
        with col:
            f = plots.series_figure(runs, metric, labels=labels, seed_runs=bands)
            chart(f, metric)
            figures.append(f)
    figures.append(metric_chart(settings, runs, labels, seed_runs))  # what the probing does to learning (test accuracy)
    c1, c2 = st.columns(2)
    with c1:
        f = plots.series_figure(runs, "effective_lr", labels=labels, seed_runs=bands)
        chart(f, "effective_lr")
        figures.append(f)
    with c2:
        f = plots.series_figure(runs, "cos_eps_fullgrad", labels=labels, seed_runs=bands)
        chart(f, "cos_eps_fullgrad")
        figures.append(f)
    f = plots.fsam_decomposition_figure(runs, labels=labels, seed_runs=bands)
    chart(f, "fsam_decomposition")
    figures.append(f)
    figures += method_charts(runs, labels, bands)
    with st.expander("How to read these charts", icon=":material/help:"):
        st.markdown(
            "- **‖e_t‖**: how far each step probed. SAM keeps it at ρ; LightSAM-I's is ρ‖s‖/√u_t ≤ ρ and shrinks; "
            "Monge-SAM's is ρ/√(1+‖s‖²).\n"
            "- **Effective radius / learning rate**: ρ and η for SAM; LightSAM-I's ρ/√u_t and η/√v_t; the median over "
            "coordinates for the per-coordinate methods (LightSAM-II/III, AdaSAM).\n"
            "- **cos(e_t, ∇L)**: the share of the perturbation along the full-batch gradient. With full batches SAM's "
            "is 1; F-SAM removes that component, so its cosine falls towards 0 (Li et al., CVPR 2024).\n"
            "- **Decomposition**: ‖e‖·cos is the full-gradient part and ‖e‖·√(1−cos²) the minibatch-noise part.\n"
            "- **Gradient evaluations per step**: the samples in the step's backward passes, in batches: 1 for SGD, "
            "2 for SAM, less where a method backpropagates only some samples. Compare methods at equal cost.\n"
            "- **Method diagnostics**: the series a method records about itself (a mask's density, a learned radius, "
            "per-layer perturbation sizes), for the runs that have them.")
    exports("Perturbations", settings, runs, figures, [sc.note])
