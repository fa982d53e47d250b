"""Learn: each optimizer's update rule, paper and hyperparameters."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ..learn import LATEX, WHERE
from ..optim import OPTIMIZERS
from .sidebar import page_frame


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
