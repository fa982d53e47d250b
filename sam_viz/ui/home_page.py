"""Home: what the app is for, the engine's device and the preset gallery."""

from __future__ import annotations

import streamlit as st
import torch

from ..optim import OPTIMIZERS
from ..presets import PRESETS
from .sidebar import PAGE_FILES, page_frame


def render_home() -> None:
    page_frame("Home")
    st.title("sam-viz: see how sharpness-aware optimizers behave")
    st.write(
        "Sharpness-aware minimization (SAM) and its relatives take each step with the gradient at a nearby worse "
        "point, θ + e, to steer training towards flat minima. sam-viz trains small models with SGD, Adam and "
        f"{len(OPTIMIZERS) - 2} SAM-family methods from one start and shows where each probed, how large and how noisy its perturbation "
        "was, how sharp the minimum it found is, and how sensitive it is to the radius ρ and the learning rate. "
        "Pick a preset below or set up an experiment in the sidebar; every view is a shareable link."
    )
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    st.caption(f"Engine device: **{device}** · torch {torch.__version__}")
    st.page_link(PAGE_FILES["Step_anatomy"], label="The anatomy of one SAM step: every arrow of a step, side by side",
                 icon=":material/timeline:")
    st.subheader("Presets")
    cols = st.columns(2)
    for i, preset in enumerate(PRESETS.values()):
        with cols[i % 2].container(border=True):
            st.markdown(f"**{preset.title}**")
            st.write(preset.explanation)
            st.page_link(PAGE_FILES[preset.page], label=f"Open in {preset.page.replace('_', ' ')}", icon=":material/arrow_forward:",
                         query_params={**preset.query, "preset": preset.name})
